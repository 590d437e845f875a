"""`agent bench`: every scenario runs end to end on a small count and reports sane figures.

No timing thresholds here: only that all events arrive and the rates are positive.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from agent.bench import run_scenario
from agent.bench.peers import BulkReceiver, RemoteWriteReceiver, ScrapeTargets
from agent.bench.peers.elasticsearch import BulkCounter
from agent.bench.peers.lines import LINE_BYTES, build_lines, numbered_lines
from agent.bench.peers.load import _OrderCheck
from agent.bench.peers.remote_write import DecodeError, iter_series
from agent.bench.peers.targets import Targets
from agent.bench.scenarios import SCENARIOS, BenchError
from agent.bench.scenarios import common as bench_common
from agent.bench.scenarios import elasticsearch as bench_es
from agent.bench.scenarios import metrics as bench_metrics
from agent.bench.scenarios import tail as bench_tail
from agent.bench.scenarios.elasticsearch import ES_BATCH_EVENTS
from agent.bench.scenarios.kafka_source import run_span
from agent.bench.scenarios.tail import JAVA_SINGLES, TAIL_FILES
from agent.codecs.multiline import PRESETS

EVENTS = 20_000
FIELDS = {"scenario", "events", "bytes", "wall_s", "events_per_s", "mib_per_s", "cpu_s", "cpu_user_s",
          "cpu_sys_s", "cpu_s_per_million_events", "peak_rss_mib"}
TAIL_FIELDS = {"lines", "cpu_s_per_million_lines", "raw_read_wall_s", "raw_read_cpu_s", "raw_read_mib_per_s"}
ES_FIELDS = {"lines", "requests", "bulk_body_bytes", "bulk_wire_bytes", "receiver_cpu_s",
             "receiver_cpu_s_per_million_events", "distinct_ids"}
EXTRA_FIELDS = {"tail_docker_to_blackhole": TAIL_FIELDS, "tail_docker_multiline_to_blackhole": TAIL_FIELDS,
                "file_to_tcp": {"writer_wall_s"}, "tail_parse_to_elasticsearch": ES_FIELDS,
                "tail_parse_to_elasticsearch_gzip": ES_FIELDS,
                "tail_kubernetes_to_blackhole": {"lines", "pods", "api_requests", "metadata_misses",
                                                 "metadata_misses_by_reason"},
                "generate_to_kafka": {"record_bytes", "partitions", "compression", "wire_bytes", "broker_cpu_s",
                                      "broker_cpu_s_per_million_events"},
                "kafka_to_blackhole": {"broker_cpu_s", "partitions"},
                "kafka_aggregators_scale": {"partitions", "one_member_events_per_s", "one_member_cpu_s",
                                            "one_member_broker_cpu_s", "two_members_events_per_s", "scale",
                                            "two_members_shares", "two_members_cpu_s", "two_members_start_skew_s",
                                            "two_members_attempts", "two_members_broker_cpu_s"},
                "scrape_page_to_remote_write": {"samples_per_scrape", "scraped_per_scrape", "requests",
                                                "request_wire_bytes", "samples_per_s"}}
PAGE_SAMPLES = 1490 - 125  # the node-exporter page less the go_* and node_scrape_collector_* series dropped


def _java_records(lines: int) -> int:
    """Records in ``lines`` Java lines spread over the files: each cycle is 50 records in 63 lines."""
    cycle = JAVA_SINGLES + 14
    share, extra = divmod(lines, TAIL_FILES)
    return sum(sum(1 for j in range(share + (k < extra)) if j % cycle <= JAVA_SINGLES) for k in range(TAIL_FILES))


def _expected_events(name: str) -> int:
    if name == "scrape_page_to_remote_write":  # whole pages
        return -(-EVENTS // PAGE_SAMPLES) * PAGE_SAMPLES
    return _java_records(EVENTS) if name == "tail_docker_multiline_to_blackhole" else EVENTS


def _agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", "bench", *args],
                          capture_output=True, text=True, timeout=60, check=False)


METRICS_SCENARIOS = {"scrape_page_to_remote_write", "scrape_500_targets_to_remote_write"}  # tested below
LOG_SCENARIOS = [name for name in SCENARIOS if name not in METRICS_SCENARIOS]


@pytest.mark.parametrize("name", LOG_SCENARIOS)
def test_scenario_delivers_every_event(name: str) -> None:
    seen: list[int] = []
    result = run_scenario(name, EVENTS, seen.append)
    assert result.scenario == name
    assert result.events == _expected_events(name)
    assert result.bytes > EVENTS
    assert result.wall_s > 0 and result.events_per_s > 0 and result.mib_per_s > 0
    assert result.cpu_s >= 0 and result.peak_rss_mib > 0
    assert seen and seen[-1] == EVENTS  # progress ends on the sink's final count (tail multiline: lines read)
    assert set(result.extra) == EXTRA_FIELDS.get(name, set())
    if name.startswith("tcp_") or name == "file_to_tcp":
        assert result.bytes == EVENTS * LINE_BYTES
    if name.startswith("tail_"):
        assert result.extra["lines"] == EVENTS
        assert 250 * EVENTS < result.bytes < 400 * EVENTS  # Docker json-file lines of a few hundred bytes
    if name.startswith("tail_docker"):
        assert result.extra["raw_read_wall_s"] > 0 and result.extra["raw_read_mib_per_s"] > 0
    if name.startswith("tail_parse_to_elasticsearch"):
        extra = result.extra
        assert extra["distinct_ids"] == EVENTS  # id auto: one _id per file and offset, none twice
        assert extra["requests"] >= EVENTS // ES_BATCH_EVENTS  # a partition cut by the 1 s timeout adds one
        assert extra["bulk_body_bytes"] > result.bytes and extra["receiver_cpu_s"] > 0
        if name.endswith("_gzip"):
            assert extra["bulk_wire_bytes"] < extra["bulk_body_bytes"] // 4
        else:
            assert extra["bulk_wire_bytes"] == extra["bulk_body_bytes"]


def test_multiline_scenario_splits_records_as_the_java_preset_does() -> None:
    """The generated Java lines: a line starts a record exactly when the java preset does not continue it."""
    lines, starts = bench_tail._java_pool(random.Random(1), 1.8e9, 0, cycles=3)
    assert len(lines) == 3 * (JAVA_SINGLES + 14) and sum(starts) == 3 * (JAVA_SINGLES + 1)
    continuation = re.compile(PRESETS["java"]).search
    messages = [orjson.loads(line)["log"] for line in lines]
    assert all(message.endswith("\n") for message in messages)
    assert [continuation(message[:-1]) is None for message in messages] == starts
    assert sum(1 for message in messages if message.startswith("\tat ")) == 3 * 10
    assert 150 < sum(map(len, lines)) / len(lines) < 400


def test_tail_files_have_kubelet_names() -> None:
    from agent.sources.tail.files import kubernetes_fields

    paths = bench_tail._container_log_paths(Path("/var/log/containers"), 6)
    fields = [kubernetes_fields(str(path)) for path in paths]
    assert all(f is not None and len(f["container_id"]) == 64 for f in fields)
    assert len({str(path) for path in paths}) == 6


def test_cli_json_runs_every_scenario() -> None:
    """Each scenario by name but the 500 targets (a minute of wall; run small below), fields as documented."""
    for name in [*LOG_SCENARIOS, "scrape_page_to_remote_write"]:
        proc = _agent(name, "--events", str(EVENTS), "--json")
        assert proc.returncode == 0, proc.stderr
        (row,) = [json.loads(line) for line in proc.stdout.splitlines()]
        assert row["scenario"] == name
        assert set(row) == FIELDS | EXTRA_FIELDS.get(name, set())
        assert row["events"] == _expected_events(name)
        assert row["events_per_s"] > 0 and row["mib_per_s"] > 0 and row["wall_s"] > 0


def test_cli_list_and_unknown_scenario() -> None:
    listed = _agent("--list")
    assert listed.returncode == 0
    assert [line.split()[0] for line in listed.stdout.splitlines()] == list(SCENARIOS)
    unknown = _agent("no_such_scenario")
    assert unknown.returncode == 2
    assert "unknown scenario" in unknown.stderr and unknown.stdout == ""


def test_load_generator_lines_are_exact() -> None:
    data = build_lines(1000)
    lines = data.split(b"\n")
    assert lines.pop() == b""
    assert len(lines) == 1000 and all(len(line) == LINE_BYTES - 1 for line in lines)


def test_numbered_lines_and_order_check() -> None:
    data = numbered_lines(0, 3000)
    lines = data.split(b"\n")
    assert lines.pop() == b""
    assert [int(line[:12]) for line in lines] == list(range(3000))
    assert all(len(line) == LINE_BYTES - 1 for line in lines)
    check = _OrderCheck(LINE_BYTES)
    for start in range(0, len(data), 1000):  # chunks that cut lines anywhere
        check.feed(data[start:start + 1000])
    assert (check.out_of_order, check.next, check.pending) == (0, 3000, b"")
    swapped = _OrderCheck(LINE_BYTES)
    swapped.feed(numbered_lines(0, 10) + numbered_lines(11, 1) + numbered_lines(10, 1) + numbered_lines(12, 5))
    assert swapped.out_of_order == 3  # 11 after 9, 10 after 11, 12 after 10
    lost = _OrderCheck(LINE_BYTES)
    lost.feed(numbered_lines(0, 10) + numbered_lines(11, 5))
    assert lost.out_of_order == 1


async def test_stalled_scenario_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_common, "STALL_TIMEOUT", 0.05)
    agent = asyncio.create_task(asyncio.sleep(10, result=0))
    try:
        with pytest.raises(BenchError, match=r"no progress.*source received 7"):
            await bench_common._wait_until(lambda: False, lambda: 7, agent, lambda: "source received 7")
    finally:
        agent.cancel()


# -- the minimal Elasticsearch (`bulk` peer) -------------------------------------------------------------------


def _bulk_lines(*rows: dict[str, object]) -> bytes:
    return b"".join(orjson.dumps(row) + b"\n" for row in rows)


def test_bulk_counter_answers_one_item_per_action_in_order() -> None:
    counter = BulkCounter()
    body = _bulk_lines({"index": {"_index": "logs", "_id": "a"}}, {"@timestamp": "t", "n": 1},
                       {"create": {"_index": "logs"}}, {"@timestamp": "t", "n": 2},
                       {"index": {"_id": "b", "routing": "r"}}, {"n": 3},
                       {"delete": {"_index": "logs", "_id": "a"}},
                       {"delete": {"_index": "logs", "_id": "nope"}})
    status, response = counter.bulk(body, "default")
    assert status == 200
    decoded = orjson.loads(response)
    assert decoded["errors"] is False and isinstance(decoded["took"], int)
    items = [(op, r["_index"], r["_id"], r["status"], r["result"], r["_seq_no"])
             for item in decoded["items"] for op, r in item.items()]
    generated = items[1][2]
    assert items == [("index", "logs", "a", 201, "created", 0), ("create", "logs", generated, 201, "created", 1),
                     ("index", "default", "b", 201, "created", 2), ("delete", "logs", "a", 200, "deleted", 3),
                     ("delete", "logs", "nope", 404, "not_found", 4)]
    counts = counter.counts()
    assert (counts["documents"], counts["actions"], counts["distinct_ids"], counts["generated_ids"]) == (3, 5, 2, 1)
    assert counts["indices"] == {"logs": 1, "default": 1}
    assert counts["documents_without_timestamp"] == 1 and counts["bad_documents"] == 0
    assert counts["sample"] == {"@timestamp": "t", "n": 1}


def test_bulk_counter_counts_ids_per_index_and_refuses_malformed_bodies() -> None:
    counter = BulkCounter()
    for _ in range(2):  # the same ids again: documents counted, distinct ids not
        assert counter.bulk(_bulk_lines({"index": {"_index": "x", "_id": "1"}}, {"@timestamp": 1},
                                        {"index": {"_index": "y", "_id": "1"}}, {"@timestamp": 1}), None)[0] == 200
    assert (counter.documents, counter.counts()["distinct_ids"]) == (4, 2)
    assert counter.bulk(b"not json\n{}\n", None)[0] == 400
    assert counter.bulk(_bulk_lines({"index": {"_id": "2"}}, {}), None)[0] == 400  # no index anywhere
    assert counter.bulk(_bulk_lines({"index": {"_index": "x"}}), None)[0] == 400  # no document line
    assert counter.bulk(_bulk_lines({"index": {"_index": "x"}}) + b"[1]\n", None)[0] == 200
    assert counter.bad_documents == 1


async def test_bulk_peer_speaks_http_like_elasticsearch() -> None:
    import gzip

    async with await BulkReceiver.start(3) as es, aiohttp.ClientSession() as session:
        base = f"http://127.0.0.1:{es.port}"
        async with session.get(f"{base}/") as response:
            assert response.status == 200 and response.headers["X-Elastic-Product"] == "Elasticsearch"
            assert (await response.json())["version"]["number"].startswith("8.")
        plain = _bulk_lines({"index": {"_index": "a", "_id": "1"}}, {"@timestamp": "t"})
        async with session.post(f"{base}/_bulk", data=plain,
                                headers={"Content-Type": "application/x-ndjson"}) as response:
            assert response.status == 200
            assert [item["index"]["_id"] for item in (await response.json())["items"]] == ["1"]
        zipped = gzip.compress(_bulk_lines({"index": {"_id": "2"}}, {"@timestamp": "t"},
                                           {"index": {"_id": "3"}}, {"@timestamp": "t"}))
        async with session.post(f"{base}/b/_bulk?refresh=false", data=zipped,
                                headers={"Content-Encoding": "gzip"}) as response:
            items = (await response.json())["items"]
            assert [(i["index"]["_index"], i["index"]["_id"]) for i in items] == [("b", "2"), ("b", "3")]
        async with session.get(f"{base}/_cat/indices") as response:
            assert response.status == 404
        done = await es.read(wait_s=5.0)
        assert done["done"] and done["documents"] == 3 and done["distinct_ids"] == 3
        final = await es.final()
        assert final["encodings"] == {"identity": 1, "gzip": 1} and final["requests"] == 2
        assert final["wire_bytes"] == len(plain) + len(zipped) and final["body_bytes"] > final["wire_bytes"]


def test_elasticsearch_scenario_check_catches_lost_and_duplicated_documents() -> None:
    good = {"documents": 10, "actions": 10, "distinct_ids": 10, "generated_ids": 0, "bad_documents": 0,
            "documents_without_timestamp": 0, "encodings": {"identity": 3},
            "indices": {time.strftime(bench_es.ES_INDEX, time.gmtime()): 10},
            "sample": {**dict.fromkeys(bench_es._PARSED_FIELDS, 1), "message": "request handled"}}
    assert bench_es._check_bulk("s", 10, good, "none") == []
    duplicated = {**good, "distinct_ids": 9}
    assert "9 distinct _id" in " ".join(bench_es._check_bulk("s", 10, duplicated, "none"))
    assert bench_es._check_bulk("s", 11, good, "none")  # one lost
    assert bench_es._check_bulk("s", 10, good, "gzip")  # not compressed
    unparsed = {**good, "sample": {"message": '{"level":"info"}'}}
    assert "parsed app record" in " ".join(bench_es._check_bulk("s", 10, unparsed, "none"))


# -- the metrics scenarios and their peers ---------------------------------------------------------------------


def test_scrape_page_scenario_encodes_every_sample_as_relabelled() -> None:
    seen: list[int] = []
    result = run_scenario("scrape_page_to_remote_write", EVENTS, seen.append)
    rounds = -(-EVENTS // PAGE_SAMPLES)
    assert result.events == rounds * PAGE_SAMPLES and seen[-1] == result.events
    assert result.extra["scraped_per_scrape"] == 1490 and result.extra["samples_per_scrape"] == PAGE_SAMPLES
    assert result.bytes == rounds * len(bench_metrics.load_page())
    assert result.extra["requests"] >= result.events // 2000 and 0 < result.extra["request_wire_bytes"] < result.bytes


@pytest.mark.parametrize(("fault", "message"), [("lose_a_sample", "decodes to"), ("skip_relabelling", "not relabelled"),
                                                ("wrong_value", "differ from the page")])
def test_scrape_page_scenario_fails_on_wrong_requests(monkeypatch: pytest.MonkeyPatch, fault: str,
                                                      message: str) -> None:
    """A broken encoder or relabelling must fail the run instead of giving a rate."""
    from agent.core.metric import Sample
    from agent.sinks.prometheus_remote_write import PrometheusRemoteWriteSink

    encode = PrometheusRemoteWriteSink.encode

    def broken(self: PrometheusRemoteWriteSink, request: Any) -> bytes:
        if fault == "lose_a_sample":
            request = type(request)(request.kind, request.key, request.events[1:], [], 0)
        elif fault == "wrong_value":
            s = request.events[0]
            request = type(request)(request.kind, request.key,
                                    [Sample.of(s.name, s.labels, s.value + 1, s.timestamp_ms, s.kind),
                                     *request.events[1:]], [], 0)
        return encode(self, request)

    if fault == "skip_relabelling":
        monkeypatch.setattr(bench_metrics, "METRIC_RELABEL", bench_metrics.METRIC_RELABEL[:1])
    else:
        monkeypatch.setattr(PrometheusRemoteWriteSink, "encode", broken)
    with pytest.raises(BenchError, match=message):
        run_scenario("scrape_page_to_remote_write", 5000)


def test_scrape_targets_scenario_delivers_every_scrape_exactly() -> None:
    seen: list[int] = []
    result = asyncio.run(bench_metrics.scrape_targets_to_remote_write(
        "small", 1, seen.append, targets=8, series=40, interval=1.0, batch_send_deadline="100ms"))
    extra = result.extra
    assert extra["intervals"] == 2 and 8 <= extra["scrapes"] <= 16
    assert result.events == extra["scrapes"] * 45 and seen[-1] == result.events  # 40 series + 5 report series
    assert 0 < extra["steady_cpu_s"] and 0.9 < extra["steady_wall_s"] < 1.5 and extra["steady_cpu_fraction"] > 0
    assert extra["requests"] > 0 and result.bytes > 0 and result.peak_rss_mib > 0


def test_scrape_targets_check_catches_lost_stale_and_failed_scrapes() -> None:
    served = {"scrapes": 10, "min_scrapes": 1}
    good = {"samples": 450, "up": 10, "up_not_one": 0, "stale": 0, "refused": 0}
    assert bench_metrics._check_delivery(good, served, 450, 2) == []
    assert "decoded 449" in " ".join(bench_metrics._check_delivery({**good, "samples": 449}, served, 450, 2))
    assert bench_metrics._check_delivery({**good, "up_not_one": 1}, served, 450, 2)
    assert bench_metrics._check_delivery({**good, "stale": 3}, served, 450, 2)
    assert "scraped 1 times" in " ".join(bench_metrics._check_delivery(good, served, 450, 3))


def test_write_request_reader_reads_what_the_encoder_writes() -> None:
    from agent.prometheus import STALE_NAN
    from agent.prometheus.remote_write import encode_write_request

    series = [([("__name__", "up"), ("job", "é")], [(1.0, -5), (0.0, 1_700_000_000_000)]),
              ([("__name__", "x")], [(STALE_NAN, 3)])]
    decoded = list(iter_series(encode_write_request(series)))
    assert [labels for labels, _ in decoded] == [labels for labels, _ in series]
    assert decoded[0][1] == [(1.0, -5), (0.0, 1_700_000_000_000)]
    assert struct.pack("<d", decoded[1][1][0][0]) == struct.pack("<d", STALE_NAN)
    with pytest.raises(DecodeError):
        list(iter_series(b"\n\x05ab"))


def test_target_pages_change_at_every_scrape_and_parse() -> None:
    from agent.prometheus.exposition import parse_exposition

    targets = Targets(2, 1000)
    first, second, other = targets.page(0), targets.page(0), targets.page(1)
    pages = [parse_exposition(page, False) for page in (first, second, other)]
    assert [len(p.samples) for p in pages] == [1000, 1000, 1000]
    assert len({(name, labels) for name, labels, _, _ in pages[0].samples}) == 1000
    assert all(a[2] != b[2] for a, b in zip(pages[0].samples, pages[1].samples, strict=True))
    assert set(pages[0].types.values()) == {"counter", "gauge"}
    assert targets.counts()["scrapes"] == 3 and targets.counts()["min_scrapes"] == 1


async def test_metrics_peers_count_writes_and_freeze_scrapes() -> None:
    import cramjam

    from agent.prometheus.remote_write import PROTOCOL_HEADERS, encode_write_request

    body = cramjam.snappy.compress_raw(encode_write_request([([("__name__", "up")], [(1.0, 1), (0.0, 2)])]))
    timeout = aiohttp.ClientTimeout(total=2.0)
    async with await RemoteWriteReceiver.start() as rw, await ScrapeTargets.start(3, 10) as exporters, \
            aiohttp.ClientSession(timeout=timeout) as session:
        url = f"http://127.0.0.1:{rw.port}/api/v1/write"
        async with session.post(url, data=bytes(body), headers=PROTOCOL_HEADERS) as response:
            assert response.status == 200
        async with session.post(url, data=b"\xff garbage", headers=PROTOCOL_HEADERS) as response:
            assert response.status == 400
        counts = await rw.ask()
        assert (counts["requests"], counts["samples"], counts["up"], counts["up_not_one"], counts["refused"]) == \
            (1, 2, 2, 1, 1)
        assert len(exporters.ports) == 3
        metrics = f"http://127.0.0.1:{exporters.ports[2]}/metrics"
        async with session.get(metrics) as response:
            assert response.status == 200 and response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert (await response.read()).count(b"\n") == 10 + 2 * 10  # HELP and TYPE of each of 10 families
        frozen = await exporters.ask(b"freeze")
        assert frozen["scrapes"] == 1 and frozen["min_scrapes"] == 0 and frozen["frozen"]
        with pytest.raises(asyncio.TimeoutError):
            async with session.get(metrics, timeout=aiohttp.ClientTimeout(total=0.3)):
                pass
        assert (await exporters.final())["scrapes"] == 1
        assert (await rw.final())["samples"] == 2


def test_run_span_places_each_edge_on_the_pace_around_it() -> None:
    # 0 until 1.0 s, then 1,000 records/s until 1.5 s, then 3,000/s: 4,000 reached at 1.5 + 3,500 / 3,000 s
    def count(t: float) -> int:
        return round(min(4000, max(0.0, 1000 * (t - 1) if t < 1.5 else 500 + 3000 * (t - 1.5))))
    reads = [(t, count(t)) for t in (0.2, 0.9, 1.13, 1.3, 1.45, 2.0, 2.3, 2.55, 2.9, 3.1)]
    start, end = run_span(reads, 4000)
    assert start == pytest.approx(1.0) and end == pytest.approx(1.5 + 3500 / 3000)
    # reads of one count inside: the nearest read with another count sets the pace
    reads = [(0.5, 0), (1, 100), (1.2, 100), (2, 500), (2.2, 700), (2.4, 700), (3.2, 1000)]
    assert run_span(reads, 1000) == pytest.approx((1 - 100 / 400, 2.4 + 300 / 500))
    # a pace that would put an edge past the reads around it: the edge is that read
    assert run_span([(0.5, 0), (1, 50), (2, 60), (3, 100)], 100) == (0.5, 3)
    # fewer than two different counts inside the run: the reads around it (the last at 0, else the first with a
    # count; the first at the total)
    assert run_span([(0, 0), (0.5, 0), (1, 50), (2, 100)], 100) == (0.5, 2)
    assert run_span([(0, 0), (1, 100), (2, 100)], 100) == (0, 1)
    assert run_span([(1, 50), (1.5, 50), (2, 100)], 100) == (1, 2)
