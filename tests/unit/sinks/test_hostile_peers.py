"""The hostile peer suite: every HTTP sink, run in a real topology against a peer that misbehaves, then behaves.

Each case checks that the sink's task lives on (the topology ends with 0), that every event
arrives, and that nothing was acknowledged that the peer did not accept: the feed's events are all
acknowledged only when the run ends, so an event acknowledged without being accepted would be missing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from components import feed
from fakes.hostile import ACCEPTING_2XX, BULK_ONLY, DATADOG_ONLY, GENERIC, HostilePeer
from helpers import pipeline

from agent.core.batch import Batch, Kind
from agent.core.metric import Sample
from agent.observe.stats import StatsRegistry
from agent.topology.running import Topology

EVENTS = 20
TIMINGS = "request: {timeout: 500ms, retry_initial_backoff: 10ms, retry_max_backoff: 50ms}"
SINKS = {
    "elasticsearch": "{{type: elasticsearch, inputs: [feed], endpoints: [\"{url}\"], index: hostile, "
                     "compression: gzip, {common}}}",
    "http": "{{type: http, inputs: [feed], uri: \"{url}/ingest\", encoding: ndjson, {common}}}",
    "datadog_logs": "{{type: datadog_logs, inputs: [feed], api_key: k, endpoint: \"{url}\", {common}}}",
    "datadog_metrics": "{{type: datadog_metrics, inputs: [feed], api_key: k, endpoint: \"{url}\", hostname: node1, "
                       "compression: zstd, {common}}}",
}
CASES = ([(sink, case) for sink in SINKS for case in GENERIC]
         + [("elasticsearch", case) for case in BULK_ONLY]
         + [(sink, case) for sink in ("datadog_logs", "datadog_metrics") for case in DATADOG_ONLY])
# what an Elasticsearch sink counts for answers it cannot trust (other cases: request_failed, throttled...)
ES_ERROR_TYPES = {"non_json_200": "invalid_response", "wrong_content_type": "invalid_response",
                  "truncated_json": "invalid_response", "items_short": "item_count_mismatch",
                  "items_long": "item_count_mismatch", "unknown_item_status": "partial_failure",
                  "errors_false_with_failed_items": "partial_failure"}


def batches(sink: str) -> list[Batch]:
    if sink == "datadog_metrics":
        now = int(time.time() * 1000)
        samples: list[Any] = [Sample.of("hostile", (("n", str(n)),), float(n), now, "gauge") for n in range(EVENTS)]
        return [Batch(samples[i:i + 10], Kind.METRICS, 1000) for i in range(0, EVENTS, 10)]
    events: list[Any] = [{"message": f"m{n}", "n": n} for n in range(EVENTS)]
    return [Batch(events[i:i + 10], Kind.LOGS, 1000) for i in range(0, EVENTS, 10)]


def config(sink: str, peer: HostilePeer) -> str:
    data_type = "metrics" if sink == "datadog_metrics" else "logs"
    common = f"healthcheck: false, batch: {{max_events: 10, timeout: 20ms}}, {TIMINGS}"
    return f"""
sources:
  feed: {{type: test_feed, name: {feed(batches(sink))}, data_type: {data_type}}}
sinks:
  out: {SINKS[sink].format(url=peer.url, common=common)}
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("sink", "case"), CASES, ids=[f"{s}-{c}" for s, c in CASES])
async def test_a_hostile_peer_neither_stops_the_sink_nor_gets_acknowledged_what_it_refused(
        sink: str, case: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with HostilePeer(case, times=2, reset_after=0.5) as peer:
        topo = Topology(pipeline(config(sink, peer), tmp_path), StatsRegistry())
        assert await asyncio.wait_for(topo.run(), 30) == 0  # the sink lived on; the feed was fully acknowledged
        answers = list(peer.answers)
    assert sorted(peer.accepted) == list(range(EVENTS))
    assert topo.nodes["feed"].stats.gauges["committed_events"] == EVENTS
    stats = topo.nodes["out"].stats
    if sink == "elasticsearch" or case not in ACCEPTING_2XX:  # each refusal was counted and retried
        assert sum(stats.errors.values()) >= 2 and stats.retries >= 2
    if sink == "elasticsearch" and case in ES_ERROR_TYPES:
        assert stats.errors[(ES_ERROR_TYPES[case], "sending")] >= 1
    assert max(len(r.getMessage()) + len(str(r.__dict__)) for r in caplog.records) < 20_000  # no 10 MB lines
    if case == "rate_limit_reset":  # X-RateLimit-Reset is a floor, as Retry-After is
        limited = [at for what, at in answers if what == "rate_limit_reset"]
        later = [at for what, at in answers if what == "ok"]
        assert min(later) - min(limited) >= 0.45
