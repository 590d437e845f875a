"""A comparison with a bare word in capitals (``level == ERROR``) compiles, as a field named ERROR, and never
holds: ``agent validate`` (and start-up) warn about it, on the condition's own line."""

from __future__ import annotations

import pytest

from agent.config.pipeline import load_texts
from agent.expr import condition_warnings


@pytest.mark.parametrize(("text", "words"), [
    ("level == ERROR", ["ERROR"]),
    ('level in ["ERROR"] or status == HTTP_500', ["HTTP_500"]),
    ("not (level != FATAL) and (a == b or c starts_with WARN)", ["FATAL", "WARN"]),
    ('level == "ERROR"', []),  # the text, as meant
    ("level == expected_level", []),  # two fields compared: fine
    ("level == Error", []),  # not a word in capitals
    ("x == A", []),  # one letter: more likely a field
    ("ERROR == level", []),  # only the right side is read as the value compared with
    ("level == ", []),  # does not compile: the config error says it
    (None, []),
])
def test_a_bare_word_in_capitals_compared_with_is_pointed_out(text: str | None, words: list[str]) -> None:
    found = condition_warnings(text)
    assert len(found) == len(words)
    for message, word in zip(found, words, strict=True):
        assert f"a field named {word}" in message and f'write "{word}" in quotes' in message


PIPELINE = """\
sources:
  in: {type: stdin}
transforms:
  f: {type: filter, inputs: [in], condition: 'level == ERROR'}
  r:
    type: route
    inputs: [f]
    routes:
      audit: 'type == "audit"'
      errors: 'status == HTTP_500'
  s: {type: sample, inputs: [r.audit], rate: 2, exclude: 'level == DEBUG'}
  t: {type: throttle, inputs: [s], threshold: 5, exclude: 'level == WARN'}
  m:
    type: log_to_metric
    inputs: [r.errors]
    metrics:
      - {name: a_total, type: counter}
      - {name: b_total, type: counter, condition: 'level == FATAL'}
sinks:
  out: {type: console, inputs: [t, r._unmatched]}
  mo: {type: blackhole, inputs: [m]}
"""


def test_each_stage_that_takes_a_condition_warns_on_that_conditions_line() -> None:
    warnings = load_texts([(PIPELINE, "p.yaml")]).warnings
    located = {w.split(": ", 2)[0] + ": " + w.split(": ", 2)[1]: w for w in warnings}
    assert sorted(located) == ["p.yaml:10: transforms.r.routes.errors", "p.yaml:11: transforms.s.exclude",
                               "p.yaml:12: transforms.t.exclude", "p.yaml:18: transforms.m.metrics[1].condition",
                               "p.yaml:4: transforms.f.condition"]
    assert "a field named HTTP_500" in located["p.yaml:10: transforms.r.routes.errors"]
