"""A page that repeats the last one but for its values is read in passes over the whole page
(:class:`agent.prometheus.scrape._Repeat`): whatever the next page is, the loop must send exactly what a full
parse gives. Each case runs the same pages through a loop with the shortcut and one without."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import units
from agent.core.batch import Batch
from agent.observe.stats import ScrapeStats
from agent.prometheus import STALE_NAN
from agent.prometheus import scrape as scrape_module
from agent.prometheus.config import ScrapeConfig
from agent.prometheus.scrape import ScrapeLoop
from agent.prometheus.targets import ScrapeTarget

NODE_PAGE = (Path(__file__).parent / "data" / "node_exporter.prom").read_text()
TEXT = "text/plain; version=0.0.4"
OM = "application/openmetrics-text; version=1.0.0"
BASE = """# HELP node_load1 1m load average.
# TYPE node_load1 gauge
node_load1 0.5
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 100
node_cpu_seconds_total{cpu="0",mode="user"} 20

http_requests_total{path="/a b",code="200"} 3
"""


class PageClient:
    """Stands in for the HTTP client: every fetch answers the page set last."""

    def __init__(self) -> None:
        self.page, self.content_type = b"", TEXT

    async def fetch(self, url: str, seconds: float) -> tuple[bytes, str]:
        return self.page, self.content_type

    async def close(self) -> None:
        return None


def make_loop(**config: Any) -> ScrapeLoop:
    job = msgspec.convert({"job_name": "node", **config}, ScrapeConfig, dec_hook=units.dec_hook)
    labels = (("instance", "host:9100"), ("job", "node"))
    target = ScrapeTarget(key="t", url="http://127.0.0.1:1/metrics", labels=labels, interval=1.0, timeout=1.0,
                          config=job)
    sent: list[Batch] = []

    async def send(batch: Batch) -> None:
        sent.append(batch)

    loop = ScrapeLoop(target, PageClient(), send, ScrapeStats())  # type: ignore[arg-type]
    loop.sent = sent  # type: ignore[attr-defined]
    return loop


class NoShapes(ScrapeLoop):
    """The loop without the shortcut: every page parsed in full."""

    def _remember_shape(self, *args: Any) -> None:
        self._repeat = None


def without_shortcut(**config: Any) -> ScrapeLoop:
    loop = make_loop(**config)
    loop.__class__ = NoShapes
    return loop


async def outcome(loop: ScrapeLoop, page: str, content_type: str) -> list[tuple[Any, ...]]:
    """What one scrape sends: each sample's series, value (by its bits: NaNs differ) and whether it has the
    scrape's time; the scrape's duration left out."""
    loop.client.page, loop.client.content_type = page.encode(), content_type  # type: ignore[attr-defined]
    await loop.scrape_once()
    samples = loop.sent[-1].events  # type: ignore[attr-defined]
    now = samples[-1].timestamp_ms  # the report series carry the scrape's time
    return [(s.series, struct.pack("<d", s.value), s.timestamp_ms == now) for s in samples
            if s.name != "scrape_duration_seconds"]


def same_outcomes(pages: list[str], content_type: str | list[str] = TEXT, **config: Any) -> list[Any]:
    """Each page scraped by a loop with the shortcut and one without (with its content type, or each with the
    one at its place in a list): they send the same."""
    types = [content_type] * len(pages) if isinstance(content_type, str) else content_type

    async def run() -> list[Any]:
        fast, full = make_loop(**config), without_shortcut(**config)
        got = []
        for number, (page, content_type) in enumerate(zip(pages, types, strict=True)):
            expected = await outcome(full, page, content_type)
            assert await outcome(fast, page, content_type) == expected, f"page {number}: {page!r}"
            got.append(expected)
        return got

    return asyncio.run(run())


def report(samples: list[tuple[Any, ...]], name: str) -> float:
    return next(struct.unpack("<d", value)[0] for series, value, _ in samples if series.name == name)


def is_stale_marker(sample: tuple[Any, ...]) -> bool:
    return sample[1] == struct.pack("<d", STALE_NAN)


def test_a_repeated_page_is_not_parsed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = make_loop()
    loop.process(NODE_PAGE.encode(), TEXT, 1)

    def parse(*_: Any) -> None:
        raise AssertionError("parsed in full")

    monkeypatch.setattr(scrape_module, "parse_exposition", parse)
    changed = NODE_PAGE.replace("node_load1 0.", "node_load1 7.")
    samples, scraped, kept, added = loop.process(changed.encode(), TEXT, 2)
    assert (scraped, kept, added) == (len(samples), len(samples), 0)
    assert scraped == sum(1 for line in NODE_PAGE.splitlines() if line and not line.startswith("#"))
    load = [s for s in samples if s.name == "node_load1"]
    assert len(load) == 1 and 7 <= load[0].value < 8 and load[0].timestamp_ms == 2


def test_targets_with_the_same_comments_keep_one_copy_of_them() -> None:
    first, second = make_loop(), make_loop()
    first.process(NODE_PAGE.encode(), TEXT, 1)
    second.process(NODE_PAGE.replace("node_load1 0.", "node_load1 7.").encode(), TEXT, 1)
    assert first._repeat is not None and second._repeat is not None
    assert first._repeat.shape.comments is second._repeat.shape.comments


def test_the_node_exporter_page_with_new_values_gives_what_a_full_parse_gives() -> None:
    changed = "\n".join(line if line.startswith("#") or not line else line.rpartition(" ")[0] + " 42"
                        for line in NODE_PAGE.split("\n"))
    same_outcomes([NODE_PAGE, changed, NODE_PAGE, changed])


@pytest.mark.parametrize("second", [
    BASE.replace("0.5", "0.75"),  # values only
    BASE.replace("0.5", "NaN").replace(" 20", " +Inf").replace(" 3\n", " -inf\n"),
    BASE.replace("0.5", "nan"),  # spelt as Go's ParseFloat accepts it
    BASE.replace("0.5", "infinity"),
    BASE.replace("0.5", "-nan"),  # Python reads it, the format has no such value
    BASE.replace("0.5", "1e999"),  # an infinity not spelt as one
    BASE.replace("0.5", "1_000"),  # Python reads it, Prometheus does not
    BASE.replace("0.5", "\uff11"),  # a full-width digit: float() reads it
    BASE.replace("0.5", "0x10"),
    BASE.replace(" 0.5", " "),  # no value
    BASE.replace("0.5", "0.5 1700000000000"),  # a timestamp now
    BASE.replace("0.5", "0.5\t"),
    BASE.replace("\n", "\r\n"),
    BASE.replace("0.5", " 0.5"),  # two spaces
    BASE.replace("gauge", "counter"),  # a TYPE changed
    BASE.replace("# HELP node_load1 1m load average.", "# HELP node_load1 5m load average."),
    BASE.replace("# TYPE node_load1 gauge", "# TYPE node_load1 nonsense"),  # a TYPE now malformed
    BASE.replace("\n\n", "\n"),  # a blank line gone
    BASE.replace('mode="idle"', 'mode="iowait"'),  # a series renamed
    BASE.replace('node_cpu_seconds_total{cpu="0",mode="user"} 20\n', ""),  # a series gone
    BASE + "node_new 1\n",  # a series added
    BASE.replace("node_load1 0.5\n", "") + "node_load1 0.5\n",  # lines moved
    BASE.replace("node_load1 0.5", "# node_load1 0.5"),  # a sample now a comment
    BASE.replace('{path="/a b",code="200"} 3', '{path="/a b",code="200"} 3 4'),
    "",
    "node_load1 0.5",  # everything else gone, no line end
])
def test_whatever_the_next_page_the_loop_sends_what_a_full_parse_gives(second: str) -> None:
    same_outcomes([BASE, second, BASE, second, second])


@pytest.mark.parametrize("second", [
    "a 1\nb 2\n# EOF\n",
    "a 1\nb 2\n# EOF",  # the line end after # EOF is optional
    "a 1\nb 2\n",  # no # EOF
    "a 1\nb 2\n# EOF\nc 3\n",  # data after it
    "a 1\n# EOF\nb 2\n",
])
def test_openmetrics_pages(second: str) -> None:
    same_outcomes(["a 5\nb 6\n# EOF\n", second, second], OM)


def test_a_page_in_the_other_format_is_parsed_as_such() -> None:
    """"# foo" is a comment in text 0.0.4 and an error in OpenMetrics, where the same lines (the EOF aside)
    would otherwise have the text page's shape."""
    got = same_outcomes(["# foo\na 1", "# foo\na 2\n# EOF", "# foo\na 3"], [TEXT, OM, TEXT])
    assert [report(samples, "up") for samples in got] == [1, 0, 1]


def test_relabelling_that_drops_series_and_the_sample_limit() -> None:
    drop = [{"source_labels": ["mode"], "regex": "user", "action": "drop"}]
    pages = [BASE, BASE.replace("0.5", "0.9"), BASE + "x 1\ny 2\n", BASE, BASE.replace("100", "101")]
    got = same_outcomes(pages, metric_relabel_configs=drop, sample_limit=3)
    assert report(got[1], "scrape_samples_post_metric_relabeling") == 3  # 3 of 4 kept
    assert report(got[2], "up") == 0  # 5 kept: over the limit
    assert not any(dict(series.labels).get("mode") == "user" for series, _, _ in got[1])


def test_after_a_failed_scrape_a_repeated_page_is_again_what_later_staleness_starts_from() -> None:
    gone = BASE.replace('node_cpu_seconds_total{cpu="0",mode="user"} 20\n', "")
    got = same_outcomes([BASE, "garbage{", BASE.replace("0.5", "0.6"), gone])
    assert report(got[1], "up") == 0
    assert sum(map(is_stale_marker, got[3])) == 1


_VALUES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["NaN", "+Inf", "-Inf", "nan", "1_0", "", "1e5", "-0", "0x1", ".5", "5.", "1 2", "\u0661", "-nan", "1e999"]),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_VALUES, min_size=4, max_size=4), st.sampled_from([TEXT, OM]))
def test_any_values_give_what_a_full_parse_gives(values: list[str], content_type: str) -> None:
    lines = ["# TYPE a gauge", "a {}", 'b{x="1"} {}', 'b{x="2"} {}', "c {}"]
    template = "\n".join(lines) + "\n" + ("# EOF\n" if content_type == OM else "")
    base = template.replace("{}", "1", 1).replace("{}", "2", 1).replace("{}", "3", 1).replace("{}", "4", 1)
    page = template
    for value in values:
        page = page.replace("{}", value, 1)
    same_outcomes([base, page, base], content_type)


_SERIES = ["a", "a", 'b{x="1"}', 'b{x="1 2"}', 'b{x="} 1"}', 'b{x="é"}', 'b{x="1",}', 'b{x="\\"1"}', "h_bucket{le=\"+Inf\"}",
           "h_sum", "h_count", "c_total", 'c_created{x="1"}']
_COMMENTS = ["# TYPE h histogram", "# TYPE c counter", "# HELP a help 1", "# foo", "", "# EOF", "# UNIT a x"]
_SPELLINGS = ["1", "0.5", "NaN", "+Inf", "-inf", "-0", "1_0", "\u0661", "-nan", "1e999", "", "1 2", "1\t", " 1", "0x1"]


@st.composite
def _page_pairs(draw: st.DrawFn) -> tuple[str, str, str]:
    """A page of well-formed lines (a few comments, series some of them twice), and the same page with some
    values spelt otherwise and now and then one line otherwise changed."""
    content_type = draw(st.sampled_from([TEXT, OM]))
    lines = draw(st.lists(st.one_of(st.sampled_from(_COMMENTS), st.sampled_from(_SERIES)), max_size=8))
    lines = [line if line[:1] in ("#", "") else f"{line} {i}" for i, line in enumerate(lines)]
    values = draw(st.lists(st.sampled_from(_SPELLINGS), min_size=len(lines), max_size=len(lines)))
    mutated = [line if line[:1] in ("#", "") or draw(st.booleans()) else f"{line.rpartition(' ')[0]} {value}"
               for line, value in zip(lines, values, strict=True)]
    if mutated and draw(st.integers(0, 3)) == 0:
        i = draw(st.integers(0, len(mutated) - 1))
        mutated[i] = draw(st.sampled_from([" ", "", "# x", "a 1", mutated[i] + " ", mutated[i] + " 7"]))
    end = "\n# EOF\n" if content_type == OM else "\n"
    return "\n".join(lines) + end, "\n".join(mutated) + end, content_type


@settings(max_examples=200, deadline=None)
@given(_page_pairs(), st.sampled_from([{}, {"metric_relabel_configs": [{"source_labels": ["x"], "regex": "1",
                                                                          "action": "drop"}]}]))
def test_any_page_and_its_change_give_what_a_full_parse_gives(pair: tuple[str, str, str], config: Any) -> None:
    base, mutated, content_type = pair
    same_outcomes([base, mutated, base, mutated, "garbage{", mutated, ""], content_type, **config)
