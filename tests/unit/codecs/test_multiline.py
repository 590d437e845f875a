from __future__ import annotations

import re
from typing import Any

import msgspec
import orjson
import pytest

from agent.codecs.container import DockerDecoder
from agent.codecs.lines import line_starts
from agent.codecs.multiline import Multiline, MultilineConfig
from agent.config.units import dec_hook

JAVA = """\
2026-11-22 17:00:00.100 INFO  [main] c.e.OrderService - processing order 42
2026-11-22 17:00:00.123 ERROR [main] c.e.OrderService - order 42 failed
java.lang.IllegalStateException: payment declined
\tat com.example.OrderService.pay(OrderService.java:42)
\tat com.example.OrderService.process(OrderService.java:30)
\tat java.base/java.lang.Thread.run(Thread.java:833)
Caused by: java.io.IOException: connection reset
\tat com.example.PaymentClient.send(PaymentClient.java:88)
\tat com.example.OrderService.pay(OrderService.java:40)
\t... 12 more
\tSuppressed: java.lang.RuntimeException: close failed
\t\tat com.example.PaymentClient.close(PaymentClient.java:99)
\t\t... 13 more
2026-11-22 17:00:00.200 INFO  [main] c.e.OrderService - processing order 43
2026-11-22 17:00:00.300 WARN  [main] c.e.OrderService - slow payment: 2000 ms
"""

PYTHON = """\
2026-11-22 17:00:00,100 INFO app: processing order 42
2026-11-22 17:00:00,123 ERROR app: order 42 failed
Traceback (most recent call last):
  File "/app/orders.py", line 12, in pay
    card = order["card"]
           ~~~~~^^^^^^^^
KeyError: 'card'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/app/orders.py", line 14, in pay
    raise PaymentError("no card")
orders.PaymentError: no card

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/app/main.py", line 5, in <module>
    process(order)
RuntimeError: order 42 failed
2026-11-22 17:00:00,200 INFO app: processing order 43
Error budget: 3 retries left
"""

GO = """\
2026/11/22 17:00:00 serving on :8080
panic: runtime error: invalid memory address or nil pointer dereference
[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x47b8f3]

goroutine 1 [running]:
main.(*Server).handle(0x0, {0x4d2f20, 0xc000012345})
\t/app/server.go:42 +0x13
main.main()
\t/app/main.go:10 +0x25

goroutine 18 [chan receive]:
main.worker[...](0xc0000a0000)
\t/app/worker.go:20 +0x55
created by main.main in goroutine 1
\t/app/main.go:8 +0x3a
exit status 2
2026/11/22 17:00:05 serving on :8080
2026/11/22 17:00:06 GET /healthz 200
"""


def config(**fields: Any) -> MultilineConfig:
    return msgspec.convert(fields, MultilineConfig, dec_hook=dec_hook)


def feed(multiline: Multiline, messages: list[str], stream: str | None = "stdout", start: int = 0,
         now: float = 0.0) -> list[dict]:
    """Feed one event per message (each message one line of the file from ``start``); return what completes."""
    events = []
    for m in messages:
        events.append({"message": m, "offset": start} if stream is None else
                      {"message": m, "stream": stream, "offset": start})
        start += len(m.encode()) + 1
    out: list[dict] = []
    multiline.feed(events, out, now)
    return out


def group_all(cfg: MultilineConfig, text: str) -> list[str]:
    multiline = Multiline(cfg)
    out = feed(multiline, text.splitlines())
    multiline.flush(out)
    return [e["message"] for e in out]


def test_filebeat_start_pattern_example() -> None:
    lines = [
        "2026-11-22 17:00:00 first",
        "  continued",
        "more",
        "2026-11-22 17:00:01 second",
        "2026-11-22 17:00:02 third",
        "  tail",
    ]
    assert group_all(config(start_pattern=r"^\d{4}-\d{2}-\d{2}"), "\n".join(lines)) == [
        "2026-11-22 17:00:00 first\n  continued\nmore",
        "2026-11-22 17:00:01 second",
        "2026-11-22 17:00:02 third\n  tail",
    ]


def test_a_continuation_with_nothing_before_it_starts_a_group() -> None:
    assert group_all(config(start_pattern="^START"), "orphan\nmore\nSTART x\ny") == ["orphan\nmore", "START x\ny"]


def test_negate_false_match_after_joins_matching_lines_to_the_previous_one() -> None:
    cfg = config(start_pattern=r"^\s", negate=False)
    assert group_all(cfg, "a\n b\n c\nd\ne\n f") == ["a\n b\n c", "d", "e\n f"]


def test_match_before_completes_a_group_with_the_next_other_line() -> None:
    cfg = config(start_pattern=r"\\$", negate=False, match="before")
    multiline = Multiline(cfg)
    out = feed(multiline, ["one \\", "two \\", "three", "single", "four \\"])
    assert [e["message"] for e in out] == ["one \\\ntwo \\\nthree", "single"]
    assert multiline.safe_offset(10_000) == len("one \\\ntwo \\\nthree\nsingle\n")
    multiline.flush(out)
    assert out[-1]["message"] == "four \\"


def test_match_before_with_negate() -> None:
    cfg = config(start_pattern=r";$", match="before")  # lines not ending in ";" continue up to one that does
    assert group_all(cfg, "select *\nfrom t\nwhere x;\nvacuum;") == ["select *\nfrom t\nwhere x;", "vacuum;"]


@pytest.mark.parametrize(("preset", "text", "sizes"), [
    ("java", JAVA, [1, 12, 1, 1]),
    ("python", PYTHON, [1, 20, 1, 1]),
    ("go", GO, [1, 15, 1, 1]),
])
def test_preset_makes_one_event_of_a_stack_trace(preset: str, text: str, sizes: list[int]) -> None:
    lines = text.splitlines()
    groups = group_all(config(preset=preset), text)
    assert [len(g.split("\n")) for g in groups] == sizes
    assert "\n".join(groups) == "\n".join(lines)


@pytest.mark.parametrize("preset", ["java", "python", "go"])
@pytest.mark.parametrize("line", [
    "2026-11-22 17:00:00 INFO started",
    '{"level":"error","msg":"failed"}',
    "GET /index.html 200",
    "ERROR something broke",
])
def test_preset_keeps_ordinary_lines_apart(preset: str, line: str) -> None:
    assert group_all(config(preset=preset), f"{line}\n{line}") == [line, line]


def test_presets_ignore_negate_and_match() -> None:
    cfg = config(preset="java", negate=True, match="before")
    assert group_all(cfg, JAVA) == group_all(config(preset="java"), JAVA)


def test_groups_are_kept_per_stream() -> None:
    multiline = Multiline(config(preset="java"))
    events = [
        {"message": "out error", "stream": "stdout", "offset": 0},
        {"message": "err line", "stream": "stderr", "offset": 10},
        {"message": "\tat a.B.c(B.java:1)", "stream": "stdout", "offset": 20},
        {"message": "\tat x.Y.z(Y.java:2)", "stream": "stderr", "offset": 30},
        {"message": "out next", "stream": "stdout", "offset": 40},
    ]
    out: list[dict] = []
    multiline.feed(events, out, 0.0)
    assert out == [{"message": "out error\n\tat a.B.c(B.java:1)", "stream": "stdout", "offset": 0}]
    assert multiline.safe_offset(50) == 10
    multiline.flush(out)
    assert [e["message"] for e in out[1:]] == ["err line\n\tat x.Y.z(Y.java:2)", "out next"]


def test_events_without_stream_share_one_group() -> None:
    multiline = Multiline(config(preset="python"))
    out = feed(multiline, ["ERROR x", "Traceback (most recent call last):", "ValueError: y", "next"], stream=None)
    assert out == [{"message": "ERROR x\nTraceback (most recent call last):\nValueError: y", "offset": 0}]


def test_group_keeps_the_first_events_fields() -> None:
    multiline = Multiline(config(preset="go"))
    events = [{"message": "panic: boom", "stream": "stderr", "time": "t1", "file": "f", "offset": 0},
              {"message": "goroutine 1 [running]:", "stream": "stderr", "time": "t2", "file": "f", "offset": 12}]
    out: list[dict] = []
    multiline.feed(events, out, 0.0)
    multiline.flush(out)
    assert out == [{"message": "panic: boom\ngoroutine 1 [running]:", "stream": "stderr", "time": "t1", "file": "f",
                    "offset": 0}]


def test_max_lines_truncates_and_drops_the_rest_of_the_group() -> None:
    multiline = Multiline(config(start_pattern="^S", max_lines=3))
    out = feed(multiline, ["S1", "a", "b", "c", "d", "S2", "e", "S3"])
    multiline.flush(out)
    assert [(e["message"], e.get("truncated")) for e in out] == [("S1\na\nb", True), ("S2\ne", None), ("S3", None)]
    assert multiline.truncated == 1


def test_max_bytes_truncates_to_exactly_max_bytes() -> None:
    multiline = Multiline(config(start_pattern="^S", max_bytes="20B"))
    out = feed(multiline, ["S-first", "continued", "some more text", "more", "S-next"])
    assert [(e["message"], e.get("truncated")) for e in out] == [("S-first\ncontinued\nso", True)]
    assert len(out[0]["message"]) == 20
    assert multiline.truncated == 1


def test_max_bytes_counts_utf8_bytes_and_never_splits_a_character() -> None:
    multiline = Multiline(config(start_pattern="^S", max_bytes=11))
    out = feed(multiline, ["S", "ééééé", "x"])
    multiline.flush(out)
    assert out[0]["message"] == "S\néééé" and len(out[0]["message"].encode()) == 10
    assert out[0]["truncated"] is True


def test_timeout_flushes_an_idle_group() -> None:
    multiline = Multiline(config(start_pattern="^S", timeout="500ms"))
    assert feed(multiline, ["S1", "a"], now=10.0) == []
    assert feed(multiline, ["b"], start=6, now=10.4) == []
    out: list[dict] = []
    multiline.flush_expired(10.8, out)
    assert out == []  # the last line joined 0.4 s ago
    multiline.flush_expired(10.91, out)
    assert out == [{"message": "S1\na\nb", "stream": "stdout", "offset": 0}]
    assert multiline.safe_offset(8) == 8
    assert feed(multiline, ["c", "S2"], start=8, now=11.0) == [{"message": "c", "stream": "stdout", "offset": 8}]


def test_timeout_is_per_group() -> None:
    multiline = Multiline(config(preset="java", timeout=1))
    feed(multiline, ["out"], "stdout", now=0.0)
    feed(multiline, ["err"], "stderr", start=4, now=0.8)
    out: list[dict] = []
    multiline.flush_expired(1.5, out)
    assert out == [{"message": "out", "stream": "stdout", "offset": 0}]
    assert multiline.safe_offset(100) == 4


def test_safe_offset_with_a_held_group() -> None:
    multiline = Multiline(config(start_pattern=r"^\d"))
    assert multiline.safe_offset(123) == 123
    out = feed(multiline, ["1 a", " b", "2 c", " d"], start=1000)
    assert [e["message"] for e in out] == ["1 a\n b"]
    assert multiline.safe_offset(2000) == 1000 + len("1 a\n b\n")
    assert multiline.safe_offset(1001) == 1001
    multiline.flush(out)
    assert multiline.safe_offset(2000) == 2000


def test_after_docker_reassembly() -> None:
    decoder = DockerDecoder({"file": "f"}, 1 << 20)
    multiline = Multiline(config(preset="java"))
    logs = [line + "\n" for line in JAVA.splitlines()]
    logs[3:4] = [logs[3][:10], logs[3][10:]]  # a line split in two pieces
    lines = [orjson.dumps({"log": log, "stream": "stdout", "time": f"2026-11-22T17:00:{i:02d}Z"}) for i, log in enumerate(logs)]
    events: list[dict] = []
    safe = decoder.decode(lines, line_starts(lines, 0), events)
    out: list[dict] = []
    multiline.feed(events, out, 0.0)
    java = JAVA.splitlines()
    assert [e["message"] for e in out] == [java[0], "\n".join(java[1:13]), java[13]]
    assert out[1]["time"] == "2026-11-22T17:00:01Z"
    assert multiline.safe_offset(safe) == sum(len(line) + 1 for line in lines[:-1])


@pytest.mark.parametrize(("fields", "error"), [
    ({}, "exactly one of preset and start_pattern"),
    ({"preset": "java", "start_pattern": "x"}, "exactly one of preset and start_pattern"),
    ({"start_pattern": "(unclosed"}, "start_pattern '(unclosed' is not a valid regex: missing ), unterminated"),
    ({"preset": "cobol"}, "Invalid enum value 'cobol' - at `$.preset`"),
    ({"preset": "go", "max_lines": 0}, "max_lines must be at least 1"),
    ({"preset": "go", "max_bytes": "0B"}, "max_bytes must be at least 1"),
    ({"preset": "go", "timeout": "soon"}, 'expected a duration like "500ms"'),
    ({"preset": "go", "pattern": "x"}, "unknown field `pattern`"),
])
def test_config_errors(fields: dict[str, Any], error: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=re.escape(error)):
        config(**fields)


def test_config_defaults_and_units() -> None:
    cfg = config(start_pattern="^x", timeout="250ms", max_bytes="1KiB")
    assert (cfg.negate, cfg.match, cfg.timeout, cfg.max_lines, cfg.max_bytes) == (True, "after", 0.25, 500, 1024)
    assert MultilineConfig(preset="go").timeout == 1.0
    assert msgspec.to_builtins(cfg)["max_bytes"] == 1024


def test_a_group_with_a_line_the_splitter_cut_says_truncated() -> None:
    multiline = Multiline(config(preset="java"))
    events = [{"message": m, "offset": i} for i, m in enumerate(["ERROR failed", "\tat a.B(B.java:1)", "\tat c.D(", "next"])]
    events[2]["truncated"] = True
    out: list[dict] = []
    multiline.feed(events, out, 0.0)
    multiline.flush(out)
    assert [(e["message"].count("\n"), e.get("truncated", False)) for e in out] == [(2, True), (0, False)]
