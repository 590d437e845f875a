from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config.registry import BuildContext
from agent.core.batch import Batch, Kind
from agent.observe.stats import ComponentStats
from agent.transforms.redact import RedactConfig, RedactTransform, luhn

KEY = "0123456789abcdef-key"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"


def transform(**kw: Any) -> RedactTransform:
    stats = ComponentStats("r", "transform", "redact")
    config = msgspec.convert({"type": "redact", "inputs": ["x"], **kw}, RedactConfig)
    return RedactTransform(config, BuildContext("r", Path("."), Path("."), stats))


def redact(text: str, **kw: Any) -> str:
    out = transform(**kw).process(Batch([{"message": text}], Kind.LOGS, 10))
    assert out is not None
    return out.events[0]["message"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(("text", "expected"), [
    ("mail jane.doe+x@example.co.uk now", "mail [REDACTED] now"),
    ("card 4111 1111 1111 1111 ok", "card [REDACTED] ok"),
    ("card 4111-1111-1111-1111", "card [REDACTED]"),
    ("card 4111111111111112 fails luhn", "card 4111111111111112 fails luhn"),
    ("epoch ms 1700000000000 is no card", "epoch ms 1700000000000 is no card"),
    ("from 192.168.1.20:8080 and 10.0.0.1", "from [REDACTED]:8080 and [REDACTED]"),
    ("not an ip 999.1.1.1 or 1.2.3", "not an ip 999.1.1.1 or 1.2.3"),
    ("v6 2001:db8::8a2e:370:7334 and ::1 end", "v6 [REDACTED] and [REDACTED] end"),
    ("fe80:0:0:0:204:61ff:fe9d:f156 ::ffff:10.0.0.1 x", "[REDACTED] [REDACTED] x"),
    ("at 12:30:45 std::vector a :: b 00:1a:2b:3c:4d:5e", "at 12:30:45 std::vector a :: b 00:1a:2b:3c:4d:5e"),
    ("Authorization: Bearer abcdefgh12345678", "Authorization: Bearer [REDACTED]"),
    ("GET /?api_key=s3cr3tvalue&x=1", "GET /?api_key=[REDACTED]&x=1"),
    ('{"password": "hunter2!!"}', '{"password": "[REDACTED]"}'),
    ("aws AKIAIOSFODNN7EXAMPLE used", "aws [REDACTED] used"),
    (f"jwt {JWT} end", "jwt [REDACTED] end"),
    ("nothing to see", "nothing to see"),
])
def test_builtin_patterns(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_luhn() -> None:
    assert luhn("4111111111111111") and luhn("378282246310005") and not luhn("4111111111111112")


def test_hash_is_keyed_stable_and_truncated() -> None:
    one = redact("a@b.io and a@b.io and c@d.io", mode="hash", hash_key=KEY)
    again = redact("a@b.io", mode="hash", hash_key=KEY)
    other_key = redact("a@b.io", mode="hash", hash_key=KEY + "2")
    first, _, second, _, third = one.split(" ")
    assert first == second == again and first != third and other_key != first
    assert first.startswith("[email:") and len(first) == len("[email:]") + 16


def test_custom_patterns_with_a_secret_group_and_a_chosen_subset() -> None:
    kw = {"patterns": ["email"], "custom": {"employee": r"EMP-\d{6}", "ssn": r"ssn=(?<secret>\d{3}-\d{2}-\d{4})"}}
    assert redact("EMP-123456 ssn=123-45-6789 10.0.0.1 x@y.io", **kw) == "[REDACTED] ssn=[REDACTED] 10.0.0.1 [REDACTED]"


def test_every_text_value_is_scanned_nested_ones_by_copy() -> None:
    shared = {"client": "10.1.2.3", "n": 5, "list": ["a@b.io", 7]}
    t = transform()
    out = t.process(Batch([{"message": "ok", "http": shared, "count": 4111111111111111}], Kind.LOGS, 10))
    assert out is not None
    assert out.events[0] == {"message": "ok", "http": {"client": "[REDACTED]", "n": 5, "list": ["[REDACTED]", 7]},
                             "count": 4111111111111111}  # non-text values are not scanned
    assert shared == {"client": "10.1.2.3", "n": 5, "list": ["a@b.io", 7]}
    assert t.stats.counters[("redactions", (("pattern", "ipv4"),))] == 1
    assert t.stats.counters[("redactions", (("pattern", "email"),))] == 1


def test_only_the_named_fields_and_missing_or_odd_ones_are_fine() -> None:
    t = transform(fields=["message", "user.email", "gone", "n"])
    shared = {"email": "a@b.io"}
    out = t.process(Batch([{"message": "a@b.io", "user": shared, "other": "a@b.io", "n": 1}, {"user": "text"}],
                          Kind.LOGS, 10))
    assert out is not None
    assert out.events == [{"message": "[REDACTED]", "user": {"email": "[REDACTED]"}, "other": "a@b.io", "n": 1},
                          {"user": "text"}]
    assert shared == {"email": "a@b.io"}


def test_raw_lines_stay_lines_and_are_copied_only_when_changed() -> None:
    line = b"no secrets \xff here"
    out = transform().process(Batch([line, b"ip 10.0.0.1"], Kind.LINES, 10))
    assert out is not None and out.kind is Kind.LINES
    assert out.events[0] is line and out.events[1] == b"ip [REDACTED]"


def test_deep_nesting_is_bounded_and_counted() -> None:
    event: dict[str, Any] = {"v": "10.0.0.1"}
    for _ in range(200):
        event = {"n": event}
    t = transform()
    out = t.process(Batch([event], Kind.LOGS, 10))
    assert out is not None and t.stats.errors[("redact_too_deep", "processing")] == 1


def test_huge_values_and_a_huge_match() -> None:
    big = "x" * 5_000_000 + " a@b.io " + "1" * 2_000_000
    out = redact(big)
    assert out == "x" * 5_000_000 + " [REDACTED] " + "1" * 2_000_000


@pytest.mark.parametrize("bad", [{"mode": "hash"}, {"mode": "hash", "hash_key": "short"},
                                 {"custom": {"x": "(a)\\1"}}, {"custom": {"x": "(?=a)"}}, {"custom": {"email": "a"}},
                                 {"patterns": ["phone"]}, {"patterns": []}, {"fields": ["a..b"]}])
def test_bad_settings_are_config_errors(bad: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"type": "redact", "inputs": ["x"], **bad}, RedactConfig)


@given(st.text(max_size=200))
def test_any_text_is_handled_and_plain_text_kept(text: str) -> None:
    out = redact(text)
    assert isinstance(out, str)
    if not any(c in text for c in "@.:=-") and not any(c.isdigit() for c in text):
        assert out == text


def test_a_custom_pattern_is_not_hidden_by_a_builtin_whose_check_fails_there() -> None:
    # 4111111111111112 looks like a card but fails Luhn: the account pattern must still take it
    kw = {"custom": {"account": r"\b\d{16}\b"}}
    assert redact("acct 4111111111111112 and 1111111111111112", **kw) == "acct [REDACTED] and [REDACTED]"
    assert redact("card 4111111111111111", **kw) == "card [REDACTED]"


def test_a_run_of_colons_gives_no_ipv6_candidate_to_check(monkeypatch: pytest.MonkeyPatch) -> None:
    import agent.transforms.redact as module

    checked: list[str] = []
    monkeypatch.setitem(module.CHECKS, "ipv6", lambda text: checked.append(text) or module._ip(text))
    assert redact(":" * 10_000 + " ::1", patterns=["ipv6"]) == ":" * 10_000 + " [REDACTED]"
    assert checked == ["::1"]  # not one check per "::" of the run (5,000 of them: a hostile line's cost)
