"""The `filter` stage: condition, drop_if, Fluent Bit's grep shorthand, and what a drop does to acks."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config.pipeline import load_texts
from agent.config.registry import BuildContext
from agent.core.ack import Ack, AckStatus
from agent.core.batch import Batch, Kind
from agent.core.errors import ConfigErrors
from agent.observe.stats import ComponentStats
from agent.transforms.filter import FilterConfig, FilterTransform


def make(**kw: object) -> FilterTransform:
    stats = ComponentStats("f", "transform", "filter")
    return FilterTransform(FilterConfig(inputs=["x"], **kw), BuildContext("f", Path("."), Path("."), stats))  # type: ignore[arg-type]


def run(t: FilterTransform, events: list[object], kind: Kind = Kind.LOGS) -> tuple[list[object] | None, list[AckStatus]]:
    seen: list[AckStatus] = []
    out = t.process(Batch(list(events), kind, 100 * len(events), [Ack(seen.append)]))
    return (None if out is None else out.events), seen


EVENTS = [{"level": "ERROR", "n": 1}, {"level": "INFO", "n": 2}, {"level": "ERROR", "n": 3}, {"n": 4}]


def test_condition_keeps_the_events_it_holds_for_and_counts_the_rest_as_filtered() -> None:
    t = make(condition='level == "ERROR"')
    kept, seen = run(t, EVENTS)
    assert kept == [EVENTS[0], EVENTS[2]]
    assert t.stats.discarded["filtered"] == 2
    assert seen == []  # the batch goes on, acks and all


def test_drop_if_drops_the_events_it_holds_for() -> None:
    t = make(drop_if='level == "ERROR"')
    kept, _ = run(t, EVENTS)
    assert kept == [EVENTS[1], EVENTS[3]]
    assert t.stats.discarded["filtered"] == 2


def test_a_batch_dropped_whole_is_released_as_delivered() -> None:
    t = make(condition='level == "DEBUG"')
    kept, seen = run(t, EVENTS)
    assert kept is None
    assert seen == [AckStatus.DELIVERED]
    assert t.stats.discarded["filtered"] == 4


def test_a_partly_filtered_batch_accounts_for_fewer_bytes() -> None:
    out = make(condition="n > 2").process(Batch(list(EVENTS), Kind.LOGS, 400))
    assert out is not None and out.byte_size == 200


GREP_EVENTS = [
    {"log": "aaa", "x": "1"}, {"log": "aab", "x": "2"}, {"log": "bbb", "x": "1"},
    {"log": "abc", "x": "1"}, {"x": "1"}, {"log": 5, "x": "1"},
]


def test_grep_legacy_order_is_fluent_bits_first_regex_rule_decides() -> None:
    # what the Fluent Bit 4.2.8 binary does in its default (legacy) mode, checked on it: a matching regex
    # keeps at once, a regex that does not match drops, an exclude that matches drops, an undecided event stays
    events = GREP_EVENTS
    kept, _ = run(make(regex={"log": "^a"}), events)
    assert kept == [events[0], events[1], events[3]]  # a missing or non-text field matches nothing
    kept, _ = run(make(exclude={"log": "c$", "x": "2"}), events)
    assert kept == [events[0], events[2], events[4], events[5]]  # any exclude rule that matches drops
    kept, _ = run(make(regex={"x": "1"}, exclude={"log": "^b"}), events)
    assert kept == [events[0], events[3], events[4], events[5]]  # the maps: exclude rules first, then regex
    # in a list, the order is the user's (a rule after a regex rule is a config error: it never runs)
    kept, _ = run(make(rules=[{"exclude": {"log": "^b"}}, {"regex": {"x": "1"}}]), events)
    assert kept == [events[0], events[3], events[4], events[5]]


def test_grep_and_or_combine_the_rules_of_one_kind() -> None:
    events = GREP_EVENTS
    kept, _ = run(make(regex={"log": "^a", "x": "^1$"}, logical_op="and"), events)
    assert kept == [events[0], events[3]]
    kept, _ = run(make(regex={"log": "^b", "x": "^2$"}, logical_op="or"), events)
    assert kept == [events[1], events[2]]
    kept, _ = run(make(exclude={"log": "^a", "x": "^1$"}, logical_op="and"), events)
    assert kept == [events[1], events[2], events[4], events[5]]  # dropped only when every rule matches
    kept, _ = run(make(exclude={"log": "^b", "x": "^2$"}, logical_op="or"), events)
    assert kept == [events[0], events[3], events[4], events[5]]


def test_grep_reads_nested_fields_and_fluent_bit_named_groups() -> None:
    events = [{"kubernetes": {"labels": {"app": "web-1"}}}, {"kubernetes": {"labels": {"app": "db"}}}]
    kept, _ = run(make(regex={"kubernetes.labels.app": r"^(?<name>web)-\d+$"}), events)
    assert kept == [events[0]]


def test_raw_lines_are_tested_as_their_message_and_pass_on_as_bytes() -> None:
    t = make(regex={"message": "ERROR"})
    out = t.process(Batch([b"ERROR one", b"INFO two", b"\xff ERROR"], Kind.LINES, 30))
    assert out is not None and out.kind is Kind.LINES
    assert out.events == [b"ERROR one", b"\xff ERROR"]
    json_lines = make(condition='level == "ERROR"').process(
        Batch([b'{"level":"ERROR"}', b'{"level":"INFO"}', b"[1]"], Kind.JSON_LINES, 40))
    assert json_lines is not None and json_lines.events == [b'{"level":"ERROR"}']
    steps = make(condition='level == "ERROR" and n > 1').process(  # one step per operand, views kept in step
        Batch([b'{"level":"ERROR","n":1}', b'{"level":"INFO","n":2}', b'{"level":"ERROR","n":3}'], Kind.JSON_LINES, 60))
    assert steps is not None and steps.events == [b'{"level":"ERROR","n":3}']


def test_a_catastrophic_backtracking_pattern_finishes_at_once() -> None:
    t = make(regex={"message": "^(a+)+$"})
    kept, _ = run(t, [{"message": "a" * 5000 + "!"}, {"message": "a" * 50}])
    assert kept == [{"message": "a" * 50}]


@pytest.mark.parametrize(("body", "expected"), [
    ('condition: "a == 1", drop_if: "b == 2"',
     'exactly one of "condition", "drop_if", or the grep rules "regex", "exclude" and "rules" (got condition, '
     'drop_if)'),
    ('regex: {a: x, b: y}', "regex.b: never evaluated: in the legacy order (Fluent Bit's) the first regex rule "
     "(regex.a) decides; set logical_op: and"),
    ('rules: [{regex: {a: x}}, {exclude: {b: y}}]', "rules[1].exclude.b: never evaluated"),
    ('regex: {a: x}, exclude: {b: y}, logical_op: or', "logical_op and / or takes regex rules or exclude rules"),
    ('rules: [{keep: {a: x}}]', "rules[0]"),
    ("regex: {}", "(got none)"),
    ('condition: "level == "', "column 10: expected a field or a value"),
    ('regex: {log: "(a)\\\\1"}', "regex.log: regex '(a)\\\\1': backreference \\1 is not supported"),
    ('exclude: {log: "(?=x)"}', "exclude.log: regex '(?=x)': lookahead"),
])
def test_config_errors_name_the_component_and_what_is_wrong(body: str, expected: str) -> None:
    import agent.transforms.filter  # noqa: F401 - registers the type

    text = f"""
sources:
  gen: {{type: generate, count: 1}}
transforms:
  f: {{type: filter, inputs: [gen], {body}}}
sinks:
  out: {{type: blackhole, inputs: [f]}}
"""
    with pytest.raises(ConfigErrors) as caught:
        load_texts([(text, "p.yaml")])
    message = str(caught.value)
    assert "p.yaml:5: transforms.f" in message  # the component, or the key the check names, on line 5
    assert expected in message


@pytest.mark.parametrize(("key", "line"), [("condition", 8), ("drop_if", 8)])
def test_a_condition_error_names_the_key_and_its_line_not_the_components(key: str, line: int) -> None:
    import agent.transforms.filter  # noqa: F401 - registers the type

    text = f"""
sources:
  gen: {{type: generate, count: 1}}
transforms:
  f:
    type: filter
    inputs: [gen]
    {key}: 'level == "ERROR" and and status > 3'
sinks:
  out: {{type: blackhole, inputs: [f]}}
"""
    with pytest.raises(ConfigErrors) as caught:
        load_texts([(text, "p.yaml")])
    assert f"p.yaml:{line}: transforms.f.{key}: column 22: expected a field or a value, got 'and'" in str(caught.value)
