"""Checking whole pipelines: every error at once, in order, located and redacted."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config.pipeline import check_files, check_texts, load_files, load_texts
from agent.core.errors import ConfigErrors

GOOD = """\
sources:
  gen: {type: generate, format: docker}
transforms:
  parsed: {type: parse, inputs: [gen]}
sinks:
  out: {type: blackhole, inputs: [parsed]}
"""


def errors_of(text: str, file: str = "p.yaml") -> list[str]:
    _, errors = check_texts([(text, file)])
    return [str(error) for error in errors]


def test_a_component_id_defined_twice_in_one_file_is_an_error_naming_both_lines() -> None:
    text = GOOD + "  out: {type: console, inputs: [gen]}\n"
    assert errors_of(text) == [
        'p.yaml:7: sinks.out: "out" is defined twice, at lines 6 and 7 (YAML would keep only the last)']
    with pytest.raises(ConfigErrors):
        load_texts([(text, "p.yaml")])


def test_a_component_id_used_in_two_files_names_the_first_line() -> None:
    _, errors = check_texts([(GOOD, "a.yaml"), ("sinks:\n  other: {type: blackhole, inputs: [gen]}\n"
                                                 "  out: {type: blackhole, inputs: [gen]}\n", "b.yaml")])
    assert [str(e) for e in errors] == ['b.yaml:3: sinks.out: component id "out" is already used at a.yaml:6']


def test_every_kind_of_error_is_reported_together_in_file_and_line_order() -> None:
    text = """\
sources:
  gen: {type: generate, format: docker, rat: 3}
transforms:
  parsed: {type: parse, inputs: [gen, loop]}
  loop: {type: parse, inputs: [parsed]}
  broken: {type: parse}
sinks:
  out: {type: blackhol, inputs: [parsd]}
shutdown_timeout: soon
"""
    errors = errors_of(text)
    assert errors == [
        'p.yaml:2: sources.gen: unknown key "rat"; did you mean "rate"?',
        "p.yaml:4: transforms.parsed.inputs: inputs form a cycle: parsed -> loop -> parsed",
        'p.yaml:6: transforms.broken: missing required key "inputs"',
        'p.yaml:8: sinks.out.type: unknown sink type "blackhol"; did you mean "blackhole"? (known: '
        + errors[3].partition("(known: ")[2],
        'p.yaml:8: sinks.out.inputs[0]: unknown input "parsd"; did you mean "parsed"?',
        'p.yaml:9: shutdown_timeout: expected a duration like "500ms" or "1m", got "soon"',
    ]


def test_an_unknown_input_suggests_the_closest_id_and_an_invalid_one_is_not_unknown() -> None:
    text = GOOD.replace("inputs: [parsed]", "inputs: [parsd]") + "  bad: {type: console, inputs: [gen], x: 1}\n" \
        + "  tail: {type: console, inputs: [bad]}\n"
    assert errors_of(text) == ['p.yaml:6: sinks.out.inputs[0]: unknown input "parsd"; did you mean "parsed"?',
                               'p.yaml:7: sinks.bad: unknown key "x"',
                               'p.yaml:8: sinks.tail.inputs[0]: input "bad" is a sink, which has no output']


def test_a_config_file_that_is_not_utf8_is_a_config_error_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(GOOD.replace("format: docker", "format: d\xf6cker").encode("latin-1"))
    with pytest.raises(ConfigErrors) as info:
        load_files([str(path)])
    assert [str(e) for e in info.value.errors] == [
        f"{path}:2: not UTF-8 text: byte 0xf6 cannot be decoded (save the file as UTF-8)"]


def test_an_api_on_every_interface_without_a_token_is_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    open_api = "api: {address: '0.0.0.0:2020'}\n" + GOOD
    pipeline, errors = check_texts([(open_api, "p.yaml")])
    assert not errors and "api.auth_token is not set" in pipeline.warnings[0]
    monkeypatch.setenv("AGENT_TEST_API_TOKEN", "tok-1234")
    with_token = "api: {address: '0.0.0.0:2020', auth_token: '${AGENT_TEST_API_TOKEN}'}\n" + GOOD
    pipeline, errors = check_texts([(with_token, "p.yaml")])
    assert not errors and pipeline.warnings == [] and pipeline.root.api.auth_token == "tok-1234"
    pipeline, _ = check_texts([("api: {address: '[::1]:2020'}\n" + GOOD, "p.yaml")])
    assert pipeline.warnings == []


def test_a_literal_api_token_is_redacted_from_errors(tmp_path: Path) -> None:
    text = "api: {auth_token: hunter2-secret}\n" + GOOD.replace("inputs: [parsed]", "inputs: [hunter2-secret]")
    _, errors = check_files([str(tmp_path / "missing.yaml")])
    assert "cannot read config" in str(errors[0])
    _, errors = check_texts([(text, "p.yaml")])
    assert errors and all("hunter2-secret" not in str(e) for e in errors)


def test_a_component_that_fails_to_decode_still_has_its_inputs_checked() -> None:
    text = GOOD.replace("out: {type: blackhole, inputs: [parsed]}",
                        "out:\n    type: console\n    encodng: text\n    inputs: [parsed, nosuch, parsed]") \
        + "  flow: {type: console, x: 1, inputs: [out]}\n"
    assert errors_of(text) == [
        'p.yaml:8: sinks.out: unknown key "encodng"; did you mean "encoding"?',
        'p.yaml:9: sinks.out.inputs[1]: unknown input "nosuch"',
        'p.yaml:9: sinks.out.inputs[2]: input "parsed" is listed twice',
        'p.yaml:10: sinks.flow: unknown key "x"',
        'p.yaml:10: sinks.flow.inputs[0]: input "out" is a sink, which has no output',
    ]


@pytest.mark.parametrize(("text", "line"), [("sinks:\n  out:\n", 4), ("sinks: {out: }\n", 3),
                                            ("sinks:\n  out: {}\n", 4)])
def test_an_empty_component_says_it_needs_a_type(text: str, line: int) -> None:
    assert errors_of("sources:\n  gen: {type: generate}\n" + text) == [
        f'p.yaml:{line}: sinks.out: a component needs at least "type:"']


def test_every_unset_variable_is_reported_with_its_key(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AGENT_TEST_UNSET_1", "AGENT_TEST_UNSET_2", "AGENT_TEST_UNSET_3"):
        monkeypatch.delenv(name, raising=False)
    text = "api:\n  auth_token: ${AGENT_TEST_UNSET_1}\nshutdown_timeout: ${AGENT_TEST_UNSET_3}\n" + GOOD + """\
  dd:
    type: console
    encoding: ${AGENT_TEST_UNSET_2}
    inputs: [parsed, nosuch]
  after: {type: console, inputs: [dd]}
  bad: {type: console, inputs: ['${not a var}']}
"""
    assert errors_of(text) == [
        'p.yaml:2: api.auth_token: environment variable "AGENT_TEST_UNSET_1" is not set',
        'p.yaml:3: shutdown_timeout: environment variable "AGENT_TEST_UNSET_3" is not set',
        'p.yaml:12: sinks.dd.encoding: environment variable "AGENT_TEST_UNSET_2" is not set',
        'p.yaml:13: sinks.dd.inputs[1]: unknown input "nosuch"',
        'p.yaml:14: sinks.after.inputs[0]: input "dd" is a sink, which has no output',
        'p.yaml:15: sinks.bad.inputs[0]: invalid reference "${not a var}" (write "$${" for a literal "${")',
    ]
    with pytest.raises(ConfigErrors):
        load_texts([(text, "p.yaml")])
