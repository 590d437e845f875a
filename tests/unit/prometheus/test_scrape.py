"""The scrape loop of one target, against fake exporters on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from fakes.exporter import OPENMETRICS, FakeExporter

from agent.config import units
from agent.core.batch import Batch
from agent.core.metric import Sample
from agent.observe.stats import ScrapeStats
from agent.prometheus import is_stale
from agent.prometheus import scrape as scrape_module
from agent.prometheus.config import ScrapeConfig
from agent.prometheus.scrape import ACCEPT, REPORT_NAMES, ScrapeClient, ScrapeLoop, offset
from agent.prometheus.targets import ScrapeTarget

TARGET_LABELS = (("instance", "host:9100"), ("job", "node"))
PAGE = """# HELP node_load1 1m load average.
# TYPE node_load1 gauge
node_load1 0.5
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 100
node_cpu_seconds_total{cpu="0",mode="user"} 20
"""


class Collected:
    """The batches a loop sent."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []

    async def __call__(self, batch: Batch) -> None:
        self.batches.append(batch)

    @property
    def last(self) -> list[Sample]:
        return self.batches[-1].events


def make_loop(url: str, sent: Collected, tmp_path: Path | None = None, *, labels: tuple = TARGET_LABELS,
              interval: float = 0.2, timeout: float = 0.15, external: dict[str, str] | None = None,
              **config: Any) -> ScrapeLoop:
    job = msgspec.convert({"job_name": "node", **config}, ScrapeConfig, dec_hook=units.dec_hook)
    target = ScrapeTarget(key=url + repr(labels), url=url, labels=labels, interval=interval, timeout=timeout, config=job)
    loop = ScrapeLoop(target, ScrapeClient(job, tmp_path or Path(".")), sent, ScrapeStats(), external)
    _OPEN.append(loop)
    return loop


_OPEN: list[ScrapeLoop] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    """Every loop's client is closed after its test, passed or failed."""
    yield
    while _OPEN:
        loop = _OPEN.pop()
        await loop.stop(mark_stale=False)
        await loop.client.close()


def series(samples: list[Sample], with_report: bool = False) -> dict[tuple[str, tuple], Sample]:
    return {(s.name, s.labels): s for s in samples if with_report or s.name not in REPORT_NAMES}


def report(samples: list[Sample]) -> dict[str, float]:
    return {s.name: s.value for s in samples if s.name in REPORT_NAMES}


async def scrape(loop: ScrapeLoop) -> list[Sample]:
    await loop.scrape_once()
    return loop.send.batches[-1].events  # type: ignore[attr-defined]


async def close(*loops: ScrapeLoop) -> None:
    for loop in loops:
        await loop.client.close()


# -- scheduling -----------------------------------------------------------------------------------------------


def test_offsets_spread_targets_inside_the_interval_and_stay_put() -> None:
    now = 1_700_000_000.123
    delays = [offset(f"node/host-{i}:9100", 15.0, now) for i in range(200)]
    assert all(0 <= d <= 15.0 for d in delays)
    slots = {int((now + d) % 15.0) for d in delays}
    assert len(slots) == 15  # every second of the interval has some target: spread, not all at once
    # pinned to absolute time: asked again 4 s later, a target's slot is the same point in the interval
    assert [round((now + 4 + offset(f"node/host-{i}:9100", 15.0, now + 4)) % 15.0, 6) for i in range(20)] == \
        [round((now + d) % 15.0, 6) for d in delays[:20]]


async def test_a_hung_target_does_not_delay_another() -> None:
    async with FakeExporter() as exporter:
        exporter.serve("/hung", PAGE, hang=True)
        exporter.serve("/fast", PAGE)
        hung_sent, fast_sent = Collected(), Collected()
        hung = make_loop(exporter.url("/hung"), hung_sent, interval=5.0, timeout=5.0)
        fast = make_loop(exporter.url("/fast"), fast_sent, interval=0.1, timeout=1.0)
        hung.start()
        fast.start()

        def fast_ups() -> int:
            return sum(report(b.events)["up"] == 1 for b in fast_sent.batches)

        try:
            async with asyncio.timeout(8):  # the hung target's slot comes within its 5 s interval
                while fast_ups() < 3 or not any(p == "/hung" for p, _ in exporter.requests):
                    await asyncio.sleep(0.01)
            assert hung_sent.batches == []  # still waiting for its answer while the other scraped 3 times
        finally:
            await hung.stop(mark_stale=False)
            await fast.stop(mark_stale=False)
            await close(hung, fast)


async def test_a_hang_fails_the_scrape_at_its_timeout() -> None:
    async with FakeExporter() as exporter:
        exporter.serve("/metrics", PAGE, hang=True)
        loop = make_loop(exporter.url(), Collected(), timeout=0.1)
        samples = await scrape(loop)
        assert report(samples)["up"] == 0
        assert series(samples) == {}
        assert loop.stats.failures[("node", "host:9100", "timeout")] == 1
        assert loop.stats.health[("node", "host:9100")] == "down"
        await close(loop)


# -- the request and the page ---------------------------------------------------------------------------------


async def test_request_headers_and_gzip() -> None:
    async with FakeExporter() as exporter:
        exporter.serve("/metrics", PAGE, gzip=True)
        loop = make_loop(exporter.url(), Collected(), timeout=0.25)
        samples = await scrape(loop)
        assert report(samples)["up"] == 1
        assert series(samples)[("node_load1", TARGET_LABELS)].value == 0.5
        headers = exporter.requests[0][1]
        assert headers["accept"] == ACCEPT
        assert headers["accept-encoding"] == "gzip"
        assert headers["user-agent"].startswith("agent/")
        assert headers["x-prometheus-scrape-timeout-seconds"] == "0.25"
        await close(loop)


async def test_the_content_type_picks_text_or_openmetrics() -> None:
    # the same line means ms in the text format and seconds in OpenMetrics
    page = "# TYPE a gauge\na 1 1700000000\n# EOF\n"
    async with FakeExporter() as exporter:
        exporter.serve("/text", page)
        exporter.serve("/om", page, content_type=OPENMETRICS)
        text = make_loop(exporter.url("/text"), Collected())
        om = make_loop(exporter.url("/om"), Collected())
        assert series(await scrape(text))[("a", TARGET_LABELS)].timestamp_ms == 1_700_000_000
        assert series(await scrape(om))[("a", TARGET_LABELS)].timestamp_ms == 1_700_000_000_000
        await close(text, om)


async def test_samples_are_labelled_sorted_and_typed() -> None:
    async with FakeExporter() as exporter:
        exporter.serve("/metrics", PAGE)
        loop = make_loop(exporter.url(), Collected(), external={"cluster": "eu", "job": "not-this"})
        got = series(await scrape(loop))
        cpu = got[("node_cpu_seconds_total", (("cluster", "eu"), ("cpu", "0"), ("instance", "host:9100"),
                                              ("job", "node"), ("mode", "idle")))]
        assert cpu.value == 100 and cpu.kind == "counter"
        assert got[("node_load1", (("cluster", "eu"), *TARGET_LABELS))].kind == "gauge"
        await close(loop)


# -- faults -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("page", "reason"), [
    ({"body": "not a metric page {{{\n"}, "parse"),
    ({"body": PAGE, "status": 500}, "http_status"),
    ({"body": PAGE, "reset": True}, "connection"),
    ({"body": b"\x1f\x8b\x08\x00garbage", "content_type": "text/plain"}, "parse"),
])
async def test_a_misbehaving_target_fails_its_scrape_only(page: dict, reason: str) -> None:
    async with FakeExporter() as exporter:
        exporter.serve("/metrics", **page)
        exporter.serve("/good", PAGE)
        bad, good = make_loop(exporter.url(), Collected()), make_loop(exporter.url("/good"), Collected())
        samples = await scrape(bad)
        assert report(samples)["up"] == 0 and series(samples) == {}
        assert bad.stats.failures[("node", "host:9100", reason)] == 1
        assert report(await scrape(good))["up"] == 1
        await close(bad, good)


async def test_a_refused_connection_fails_the_scrape(free_port: int) -> None:
    loop = make_loop(f"http://127.0.0.1:{free_port}/metrics", Collected())
    assert report(await scrape(loop))["up"] == 0
    assert loop.stats.failures[("node", "host:9100", "connection")] == 1
    await close(loop)


# -- limits -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("limit", "reason"), [
    ({"sample_limit": 2}, "sample_limit"),
    ({"label_limit": 4}, "label_limit"),  # __name__, cpu, instance, job, mode: 5
    ({"label_name_length_limit": 4}, "label_name_length_limit"),  # instance
    ({"label_value_length_limit": 21}, "label_value_length_limit"),  # node_cpu_seconds_total
    ({"body_size_limit": "100B"}, "body_size_limit"),
])
async def test_a_limit_exceeded_fails_the_scrape(limit: dict, reason: str) -> None:
    async with FakeExporter() as exporter:
        exporter.serve("/metrics", PAGE)
        loop = make_loop(exporter.url(), Collected(), **limit)
        samples = await scrape(loop)
        assert report(samples)["up"] == 0
        assert series(samples) == {}
        assert loop.stats.failures[("node", "host:9100", reason)] == 1
        await close(loop)


async def test_limits_that_hold_let_the_scrape_through() -> None:
    async with FakeExporter() as exporter:
        exporter.serve("/metrics", PAGE)
        loop = make_loop(exporter.url(), Collected(), sample_limit=3, label_limit=5, label_name_length_limit=8,
                         label_value_length_limit=22, body_size_limit=f"{len(PAGE) + 1}B")
        assert report(await scrape(loop))["up"] == 1
        await close(loop)


async def test_the_sample_limit_counts_after_metric_relabelling() -> None:
    async with FakeExporter() as exporter:
        exporter.serve("/metrics", PAGE)
        drop_cpu = [{"source_labels": ["__name__"], "regex": "node_cpu.*", "action": "drop"}]
        loop = make_loop(exporter.url(), Collected(), sample_limit=1, metric_relabel_configs=drop_cpu)
        assert report(await scrape(loop))["up"] == 1
        await close(loop)


async def test_the_body_size_limit_holds_on_the_gunzipped_size() -> None:
    bomb = "# TYPE big gauge\n" + "".join(f'big{{i="{i}"}} 1\n' for i in range(20_000))
    async with FakeExporter() as exporter:
        exporter.serve("/metrics", bomb, gzip=True)
        assert len(gzip.compress(bomb.encode())) < 64 * 1024
        loop = make_loop(exporter.url(), Collected(), body_size_limit="64KiB")
        samples = await scrape(loop)
        assert report(samples)["up"] == 0
        assert loop.stats.failures[("node", "host:9100", "body_size_limit")] == 1
        await close(loop)


async def test_a_job_without_body_size_limit_still_stops_a_gzip_bomb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scrape_module, "DEFAULT_BODY_SIZE_LIMIT", 64 * 1024)  # 64 MiB in the product
    bomb = "# TYPE big gauge\n" + "".join(f'big{{i="{i}"}} 1\n' for i in range(20_000))
    async with FakeExporter() as exporter:
        exporter.serve("/metrics", bomb, gzip=True)
        loop = make_loop(exporter.url(), Collected())  # body_size_limit unset
        assert report(await scrape(loop))["up"] == 0
        assert loop.stats.failures[("node", "host:9100", "body_size_limit")] == 1
        unlimited = make_loop(exporter.url(), Collected(), body_size_limit=0)  # 0: none, as in Prometheus
        assert report(await scrape(unlimited))["up"] == 1
        await close(loop)
        await close(unlimited)


async def test_a_large_page_is_parsed_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    monkeypatch.setattr(scrape_module, "LARGE_PAGE", 1000)
    threads: list[int] = []
    process = ScrapeLoop.process

    def recording(self: ScrapeLoop, *args: Any) -> Any:
        threads.append(threading.get_ident())
        return process(self, *args)

    monkeypatch.setattr(ScrapeLoop, "process", recording)
    page = "# TYPE g gauge\n" + "".join(f'g{{i="{i}"}} {i}\n' for i in range(100))
    async with FakeExporter() as exporter:
        exporter.serve("/metrics", page)
        loop = make_loop(exporter.url(), Collected())
        samples = await scrape(loop)
        assert report(samples)["up"] == 1 and len(series(samples)) == 100
        exporter.serve("/metrics", page[:500])
        samples = await scrape(loop)  # a small page: on the loop itself
        await close(loop)
    assert threads[0] != threading.get_ident() and threads[1] == threading.get_ident()


# -- labels and timestamps ----------------------------------------------------------------------------------------


CLASH = 'm{job="app",instance="",exported_job="x"} 1\n'


async def test_honor_labels_false_renames_a_clashing_scraped_label() -> None:
    async with FakeExporter() as exporter:
        exporter.serve("/metrics", CLASH)
        loop = make_loop(exporter.url(), Collected())
        ((_, labels),) = series(await scrape(loop))
        assert labels == (("exported_exported_job", "app"), ("exported_job", "x"), ("instance", "host:9100"),
                          ("job", "node"))
        await close(loop)


async def test_honor_labels_true_keeps_the_scraped_label() -> None:
    async with FakeExporter() as exporter:
        exporter.serve("/metrics", CLASH)
        loop = make_loop(exporter.url(), Collected(), honor_labels=True)
        ((_, labels),) = series(await scrape(loop))
        # an empty scraped value is no label, so the target's instance fills it
        assert labels == (("exported_job", "x"), ("instance", "host:9100"), ("job", "app"))
        await close(loop)


@pytest.mark.parametrize("honor", [True, False])
async def test_honor_timestamps(honor: bool) -> None:
    async with FakeExporter() as exporter:
        exporter.serve("/metrics", "a 1 1600000000000\nb 2\n")
        loop = make_loop(exporter.url(), Collected(), honor_timestamps=honor)
        samples = await scrape(loop)
        got = series(samples)
        now_ms = samples[-1].timestamp_ms  # the report series carry the scrape's time
        assert got[("b", TARGET_LABELS)].timestamp_ms == now_ms
        assert got[("a", TARGET_LABELS)].timestamp_ms == (1_600_000_000_000 if honor else now_ms)
        await close(loop)


async def test_metric_relabelling_drops_and_rewrites_once_per_series() -> None:
    async with FakeExporter() as exporter:
        exporter.serve("/metrics", PAGE)
        rules = [{"source_labels": ["mode"], "regex": "user", "action": "drop"},
                 {"source_labels": ["__name__"], "regex": "node_(.*)", "target_label": "__name__",
                  "replacement": "host_$1"}]
        loop = make_loop(exporter.url(), Collected(), metric_relabel_configs=rules)
        loop.relabeler = counting = CountingRelabeler(loop.relabeler)  # type: ignore[assignment]
        for _ in range(3):
            samples = await scrape(loop)
        assert {name for name, _ in series(samples)} == {"host_load1", "host_cpu_seconds_total"}
        assert len(series(samples)) == 2
        assert report(samples)["scrape_samples_scraped"] == 3
        assert report(samples)["scrape_samples_post_metric_relabeling"] == 2
        assert series(samples)[("host_load1", TARGET_LABELS)].kind == "gauge"  # the page's type of node_load1
        assert counting.calls == 3  # three series, relabelled on the first scrape only
        await close(loop)


class CountingRelabeler:
    def __init__(self, inner: Any) -> None:
        self.inner, self.calls = inner, 0

    def __bool__(self) -> bool:
        return bool(self.inner)

    def apply(self, labels: dict[str, str]) -> dict[str, str] | None:
        self.calls += 1
        return self.inner.apply(labels)


# -- report series and staleness ----------------------------------------------------------------------------------


async def test_report_series() -> None:
    async with FakeExporter() as exporter:
        exporter.serve("/metrics", PAGE)
        loop = make_loop(exporter.url(), Collected())
        first = await scrape(loop)
        assert {s.labels for s in first if s.name in REPORT_NAMES} == {TARGET_LABELS}
        values = report(first)
        assert values["up"] == 1
        assert values["scrape_samples_scraped"] == values["scrape_samples_post_metric_relabeling"] == 3
        assert values["scrape_series_added"] == 3
        assert 0 < values["scrape_duration_seconds"] < 0.15
        assert report(await scrape(loop))["scrape_series_added"] == 0
        exporter.serve("/metrics", PAGE + "node_new 1\n")
        assert report(await scrape(loop))["scrape_series_added"] == 1
        await close(loop)


async def test_a_series_gone_from_the_page_is_marked_stale() -> None:
    async with FakeExporter() as exporter:
        exporter.serve("/metrics", PAGE)
        loop = make_loop(exporter.url(), Collected())
        await scrape(loop)
        exporter.serve("/metrics", PAGE.replace('node_cpu_seconds_total{cpu="0",mode="user"} 20\n', ""))
        samples = await scrape(loop)
        stale = [s for s in samples if is_stale(s.value)]
        assert [(s.name, dict(s.labels)["mode"]) for s in stale] == [("node_cpu_seconds_total", "user")]
        assert stale[0].timestamp_ms == samples[-1].timestamp_ms  # at this scrape's time
        assert stale[0].kind == "counter"
        assert not any(is_stale(s.value) for s in await scrape(loop))  # once
        await close(loop)


async def test_a_series_back_under_another_type_is_not_marked_stale() -> None:
    """A series is the same series whatever the type it came with (here another metric, typed, relabelled
    to its name): no stale marker beside its new sample."""
    async with FakeExporter() as exporter:
        rename = [{"source_labels": ["__name__"], "regex": "renamed", "target_label": "__name__",
                   "replacement": "load"}]
        exporter.serve("/metrics", "load 0.5\ngone 1\n")
        loop = make_loop(exporter.url(), Collected(), metric_relabel_configs=rename)
        await scrape(loop)
        exporter.serve("/metrics", "# TYPE renamed gauge\nrenamed 0.7\n")
        samples = series(await scrape(loop)).values()
        assert [(s.name, s.value, s.kind) for s in samples if s.name == "load"] == [("load", 0.7, "gauge")]
        assert [s.name for s in samples if is_stale(s.value)] == ["gone"]
        await close(loop)


async def test_a_failed_scrape_marks_every_series_of_the_last_one_stale() -> None:
    async with FakeExporter() as exporter:
        exporter.serve("/metrics", PAGE)
        loop = make_loop(exporter.url(), Collected())
        await scrape(loop)
        exporter.serve("/metrics", PAGE, status=503)
        samples = await scrape(loop)
        assert report(samples)["up"] == 0
        assert {n for n, _ in series(samples)} == {"node_load1", "node_cpu_seconds_total"}
        assert all(is_stale(s.value) for s in series(samples).values()) and len(series(samples)) == 3
        assert series(await scrape(loop)) == {}  # not again
        exporter.serve("/metrics", PAGE)
        assert len(series(await scrape(loop))) == 3
        await close(loop)


async def test_samples_with_their_own_timestamps_are_not_marked_stale() -> None:
    async with FakeExporter() as exporter:
        exporter.serve("/metrics", "a 1 1600000000000\nb 2\n")
        loop = make_loop(exporter.url(), Collected())
        await scrape(loop)
        exporter.serve("/metrics", "")
        assert [s.name for s in await scrape(loop) if is_stale(s.value)] == ["b"]  # as Prometheus does
        await close(loop)


@pytest.mark.parametrize("went_away", [True, False])
async def test_a_target_that_goes_away_ends_its_series_but_not_at_shutdown(went_away: bool) -> None:
    async with FakeExporter() as exporter:
        exporter.serve("/metrics", PAGE)
        sent = Collected()
        loop = make_loop(exporter.url(), sent, interval=0.1, timeout=0.1)
        loop.start()
        async with asyncio.timeout(5):
            while not sent.batches:
                await asyncio.sleep(0.01)
        await loop.stop(mark_stale=went_away)
        last = sent.last
        if went_away:
            assert all(is_stale(s.value) for s in last)
            assert {s.name for s in last} == {"node_load1", "node_cpu_seconds_total", *REPORT_NAMES}
            assert len(last) == 3 + len(REPORT_NAMES)
        else:
            assert not any(is_stale(s.value) for b in sent.batches for s in b.events)
        assert ("node", "host:9100") not in loop.stats.health
        await close(loop)


# -- auth ---------------------------------------------------------------------------------------------------------


async def test_basic_auth_password_file_is_read_at_each_scrape(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("first\n")
    async with FakeExporter() as exporter:
        exporter.serve("/metrics", PAGE)
        loop = make_loop(exporter.url(), Collected(), tmp_path,
                         basic_auth={"username": "u", "password_file": "pw"})
        await scrape(loop)
        (tmp_path / "pw").write_text("second")
        await scrape(loop)
        assert [h["authorization"] for _, h in exporter.requests] == ["Basic dTpmaXJzdA==", "Basic dTpzZWNvbmQ="]
        (tmp_path / "pw").unlink()
        assert report(await scrape(loop))["up"] == 0
        assert loop.stats.failures[("node", "host:9100", "auth")] == 1
        await close(loop)


async def test_bearer_token_file(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cret\n")
    async with FakeExporter() as exporter:
        exporter.serve("/metrics", PAGE)
        loop = make_loop(exporter.url(), Collected(), tmp_path, bearer_token_file="token")
        await scrape(loop)
        assert exporter.requests[0][1]["authorization"] == "Bearer s3cret"
        await close(loop)

