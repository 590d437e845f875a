from __future__ import annotations

import enum
from pathlib import Path
from typing import Any, Literal

import msgspec
import pytest

from agent.config.load import LineIndex, convert, interpolate, key_path_str, parse_document
from agent.config.units import ByteSize, Duration
from agent.core.errors import ConfigError


class Mode(enum.Enum):
    BULK = "bulk"
    STREAM = "stream"


class Batch(msgspec.Struct, forbid_unknown_fields=True):
    max_bytes: ByteSize = ByteSize(10 * 1024 * 1024)
    max_events: int = 1000
    timeout: Duration = Duration("1s")


class Elasticsearch(msgspec.Struct, tag="elasticsearch", tag_field="type", forbid_unknown_fields=True):
    endpoint: str
    batch: Batch = msgspec.field(default_factory=Batch)
    compression: Literal["none", "gzip", "zstd"] = "none"
    mode: Mode = Mode.BULK


class Kafka(msgspec.Struct, tag="kafka", tag_field="type", forbid_unknown_fields=True):
    brokers: list[str]
    acks: Literal[-1, 0, 1] = 1


class Source(msgspec.Struct, forbid_unknown_fields=True):
    paths: list[str]


class Pipeline(msgspec.Struct, forbid_unknown_fields=True):
    sources: dict[str, Source] = {}
    sinks: dict[str, Elasticsearch | Kafka] = {}
    workers: int = 1
    labels: dict[str, str] = {}
    batches: list[Batch] = []


PIPELINE = """\
workers: 2
sources:
  pods:
    paths:
      - /var/log/pods/*.log
sinks:
  events:
    type: kafka
    brokers: [kafka-0:9092]
  es:
    type: elasticsearch
    endpoint: http://es:9200
    batch:
      max_bytes: {max_bytes}
      timeout: 500ms
    compression: {compression}
labels:
  team: telemetry
  tier: gold
batches: []
"""


def pipeline(**changes: str) -> str:
    return PIPELINE.format(**({"max_bytes": "5MiB", "compression": "gzip"} | changes))


def load(text: str, type_: type[Any] = Pipeline, file: str = "pipeline.yaml") -> Any:
    data, lines = parse_document(text, file=file)
    return convert(data, type_, file=file, lines=lines)


def load_error(text: str, type_: type[Any] = Pipeline) -> str:
    with pytest.raises(ConfigError) as info:
        load(text, type_)
    return str(info.value)


# -- convert ------------------------------------------------------------------------------------------


def test_valid_pipeline() -> None:
    config = load(pipeline())
    assert len(pipeline().splitlines()) == 20
    assert config.workers == 2
    assert config.sinks["es"].batch == Batch(max_bytes=ByteSize("5MiB"), timeout=Duration(0.5))
    assert config.sinks["es"].compression == "gzip"
    assert config.sinks["events"] == Kafka(brokers=["kafka-0:9092"])


def test_bad_size_names_file_line_and_key() -> None:
    assert load_error(pipeline(max_bytes="lots")) == (
        'pipeline.yaml:14: sinks.es.batch.max_bytes: expected a size like "5MiB", got "lots"'
    )


def test_bad_literal_lists_the_choices() -> None:
    assert load_error(pipeline(compression="lz4")) == (
        'pipeline.yaml:16: sinks.es.compression: invalid value "lz4", expected one of: gzip, none, zstd'
    )


def test_unknown_key_points_at_the_key() -> None:
    text = pipeline(max_bytes="1MiB\n      max_byte: 2MiB")
    assert load_error(text) == 'pipeline.yaml:15: sinks.es.batch: unknown key "max_byte"; did you mean "max_bytes"?'


def test_unknown_top_level_key() -> None:
    assert load_error("workers: 1\nworker: 2\n") == 'pipeline.yaml:2: unknown key "worker"; did you mean "workers"?'
    assert load_error("workers: 1\nzzz: 2\n") == 'pipeline.yaml:2: unknown key "zzz"'  # nothing close


def test_missing_key_points_at_the_parent() -> None:
    text = pipeline().replace("    endpoint: http://es:9200\n", "")
    assert load_error(text) == 'pipeline.yaml:10: sinks.es: missing required key "endpoint"'


def test_wrong_type() -> None:
    assert load_error("workers: many\n") == "pipeline.yaml:1: workers: expected an integer, got a string"
    assert load_error("sources: []\n") == "pipeline.yaml:1: sources: expected a mapping, got a list"
    assert load_error("sources:\n  pods:\n    paths: /var/log\n") == (
        "pipeline.yaml:3: sources.pods.paths: expected a list, got a string"
    )


def test_error_in_a_later_dict_entry_names_that_entry() -> None:
    text = "labels:\n  team: telemetry\n  tier: 3\n  zone: eu\n"
    assert load_error(text) == "pipeline.yaml:3: labels.tier: expected a string, got an integer"


def test_error_in_list_item() -> None:
    text = "batches:\n  - max_events: 5\n  - max_events: 5.5\n"
    assert load_error(text) == "pipeline.yaml:3: batches[1].max_events: expected an integer, got a number"


def test_bad_key_type() -> None:
    text = "labels:\n  team: telemetry\n  404: missing\n"
    assert load_error(text) == "pipeline.yaml:3: labels: invalid key 404: expected a string, got an integer"


def test_bad_union_tag_lists_the_tags() -> None:
    text = "sinks:\n  out:\n    type: s3\n"
    assert load_error(text) == (
        'pipeline.yaml:3: sinks.out.type: invalid value "s3", expected one of: elasticsearch, kafka'
    )


def test_bad_enum_and_int_literal() -> None:
    es = "sinks:\n  es:\n    type: elasticsearch\n    endpoint: x\n    mode: turbo\n"
    assert load_error(es) == (
        'pipeline.yaml:5: sinks.es.mode: invalid value "turbo", expected one of: bulk, stream'
    )
    kafka = "sinks:\n  k:\n    type: kafka\n    brokers: [b]\n    acks: 2\n"
    assert load_error(kafka) == "pipeline.yaml:5: sinks.k.acks: invalid value 2, expected one of: -1, 0, 1"


def test_nullable_type_message() -> None:
    class Limits(msgspec.Struct):
        rate: int | None = None

    assert load_error("rate: fast\n", Limits) == (
        "pipeline.yaml:1: rate: expected an integer or null, got a string"
    )


def test_missing_top_level_key_has_no_line() -> None:
    assert load_error("{}\n", Source) == 'pipeline.yaml: missing required key "paths"'


def test_prefix_locates_a_sub_document() -> None:
    data, lines = parse_document(pipeline(max_bytes="lots"), file="pipeline.yaml")
    batch = data["sinks"]["es"]["batch"]
    with pytest.raises(ConfigError) as info:
        convert(batch, Batch, file="pipeline.yaml", lines=lines, prefix=("sinks", "es", "batch"))
    assert info.value.line == 14
    assert info.value.key == "sinks.es.batch.max_bytes"
    assert info.value.message == 'expected a size like "5MiB", got "lots"'


def test_key_path_str() -> None:
    assert key_path_str(("sinks", "es", "batch", 0, "max_bytes")) == "sinks.es.batch[0].max_bytes"
    assert key_path_str([0, "a"]) == "[0].a"
    assert key_path_str(()) == ""


# -- parse_document -----------------------------------------------------------------------------------


def test_line_index() -> None:
    _, lines = parse_document(pipeline(), file="pipeline.yaml")
    assert lines.line_for(("sinks", "es", "batch", "max_bytes")) == 14
    assert lines.line_for(("sources", "pods", "paths", 0)) == 5
    assert lines.line_for(("sinks", "es", "batch", "max_events")) == 13
    assert lines.line_for(("nope", "deeper")) is None
    assert lines.line_for(()) is None
    assert LineIndex({("a",): 3}).line_for(["a", 0, "b"]) == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("workers: 1\nsinks: {a: b: c}\n", "pipeline.yaml:2: invalid YAML: "),
        ("workers: 1\nlabels:\n  a: 'open\n", "pipeline.yaml:4: invalid YAML: "),
        ("labels:\n  - a\n - b\n", "pipeline.yaml:3: invalid YAML: "),
        ("workers: 1\n---\nworkers: 2\n", "pipeline.yaml:2: invalid YAML: "),
        ("workers: 1\nlabels: \x07\n", "pipeline.yaml:2: invalid YAML: "),
    ],
)
def test_yaml_syntax_error_line(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_document(text, file="pipeline.yaml")
    assert str(info.value).startswith(expected)


def test_yaml_syntax_error_message() -> None:
    with pytest.raises(ConfigError) as info:
        parse_document("a: 1\nb: c: d\n", file="p.yaml")
    assert str(info.value) == "p.yaml:2: invalid YAML: mapping values are not allowed in this context"


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "~\n", "---\n"])
def test_empty_document(text: str) -> None:
    data, lines = parse_document(text, file="p.yaml")
    assert data == {}
    assert lines.line_for(("a",)) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [("- a\n- b\n", "got a list"), ("just text\n", "got a string"), ("\n\n42\n", "got an integer")],
)
def test_top_level_must_be_a_mapping(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_document(text, file="p.yaml")
    line = text.count("\n", 0, len(text) - len(text.lstrip("\n"))) + 1
    assert str(info.value) == f"p.yaml:{line}: expected a mapping at the top level, {message}"


def test_json_input() -> None:
    text = '{\n  "workers": 3,\n  "sinks": {\n    "es": {"type": "elasticsearch", "endpoint": 9200}\n  }\n}\n'
    data, lines = parse_document(text, file="pipeline.json")
    assert data["workers"] == 3
    assert lines.line_for(("sinks", "es", "endpoint")) == 4
    with pytest.raises(ConfigError) as info:
        convert(data, Pipeline, file="pipeline.json", lines=lines)
    assert str(info.value) == "pipeline.json:4: sinks.es.endpoint: expected a string, got an integer"


def test_merge_keys_and_anchors() -> None:
    text = "base: &base\n  max_events: 5\nbatches:\n  - <<: *base\n    timeout: 2s\n"
    data, lines = parse_document(text, file="p.yaml")
    assert data["batches"] == [{"max_events": 5, "timeout": "2s"}]
    assert lines.line_for(("batches", 0, "timeout")) == 5


def test_a_duplicate_key_names_both_lines() -> None:
    text = "sinks:\n  es: {endpoint: a, endpoint: b}\n  events:\n    brokers: []\n  es:\n    endpoint: c\n"
    errors: list[ConfigError] = []
    data, _ = parse_document(text, file="p.yaml", errors=errors)
    assert [str(e) for e in errors] == [
        'p.yaml:2: sinks.es.endpoint: "endpoint" is defined twice, at lines 2 and 2 (YAML would keep only the last)',
        'p.yaml:5: sinks.es: "es" is defined twice, at lines 2 and 5 (YAML would keep only the last)',
    ]
    assert data["sinks"]["es"] == {"endpoint": "c"}  # still parsed, so that other errors are found too
    with pytest.raises(ConfigError, match=r'p\.yaml:2: sinks\.es\.endpoint: "endpoint" is defined twice'):
        parse_document(text, file="p.yaml")


def test_overriding_a_merged_key_is_not_a_duplicate() -> None:
    text = "base: &base {max_events: 5, timeout: 1s}\nbatch:\n  <<: *base\n  timeout: 2s\n"
    assert parse_document(text, file="p.yaml")[0]["batch"] == {"max_events": 5, "timeout": "2s"}
    with pytest.raises(ConfigError, match="lines 1 and 1"):
        parse_document("- {a: 1, b: 2, a: 3}\n", file="p.yaml")


def test_an_unknown_key_in_a_tagged_union_suggests_a_field_of_that_member() -> None:
    text = pipeline().replace("brokers: [kafka-0:9092]", "brokers: [kafka-0:9092]\n    ack: 1")
    assert load_error(text) == 'pipeline.yaml:10: sinks.events: unknown key "ack"; did you mean "acks"?'


# -- interpolate --------------------------------------------------------------------------------------

ENV = {"HOST": "es.internal", "EMPTY": "", "PORT": "9200"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("endpoint: http://${HOST}:${PORT}", "endpoint: http://es.internal:9200"),
        ("host: ${HOST:-localhost}", "host: es.internal"),
        ("host: ${UNSET:-localhost}", "host: localhost"),
        ("host: ${EMPTY:-localhost}", "host: localhost"),
        ("host: ${UNSET:-}", "host: "),
        ("host: ${EMPTY}", "host: "),
        ("template: $${HOST} and $${UNSET}", "template: ${HOST} and ${UNSET}"),
        ("price: $5 {HOST} $HOST", "price: $5 {HOST} $HOST"),
    ],
)
def test_interpolate(text: str, expected: str) -> None:
    assert interpolate(text, file="pipeline.yaml", env=ENV) == expected


def test_interpolate_uses_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_TEST_TOKEN", "s3cret")
    assert interpolate("token: ${AGENT_TEST_TOKEN}", file="p.yaml") == "token: s3cret"


def test_missing_variable_names_its_line() -> None:
    text = "".join(f"key{n}: value\n" for n in range(1, 7)) + "api_key: ${DD_API_KEY}\n"
    with pytest.raises(ConfigError) as info:
        interpolate(text, file="conf/pipeline.yaml", env=ENV)
    assert str(info.value) == 'conf/pipeline.yaml:7: environment variable "DD_API_KEY" is not set'


def test_invalid_reference() -> None:
    with pytest.raises(ConfigError) as info:
        interpolate("a: 1\nb: ${not a var}\n", file="p.yaml", env=ENV)
    assert str(info.value) == 'p.yaml:2: invalid reference "${not a var}" (write "$${" for a literal "${")'


def test_file_reference_is_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "token").write_text("s3cret\n")
    config = tmp_path / "pipeline.yaml"
    assert interpolate("token: ${file:secrets/token}", file=str(config), env={}) == "token: s3cret"
    absolute = tmp_path / "secrets" / "token"
    assert interpolate(f"token: ${{file:{absolute}}}", file="elsewhere/p.yaml", env={}) == "token: s3cret"


def test_unreadable_file_reference(tmp_path: Path) -> None:
    config = str(tmp_path / "pipeline.yaml")
    with pytest.raises(ConfigError) as info:
        interpolate("a: 1\n\ntoken: ${file:missing.txt}\n", file=config, env={})
    assert str(info.value) == f'{config}:3: cannot read file "missing.txt": No such file or directory'


def test_interpolation_keeps_line_numbers() -> None:
    text = pipeline(max_bytes="${SIZE}")
    interpolated = interpolate(text, file="pipeline.yaml", env={"SIZE": "lots"})
    assert load_error(interpolated) == (
        'pipeline.yaml:14: sinks.es.batch.max_bytes: expected a size like "5MiB", got "lots"'
    )


def test_interpolate_can_collect_every_bad_reference_and_key_at_locates_it() -> None:
    errors: list[ConfigError] = []
    text = "a: ${UNSET_ONE}\nb:\n  c: x-${UNSET_TWO}\n  d: |\n    ${bad ref}\n"
    assert interpolate(text, file="p.yaml", env=ENV, errors=errors) == \
        "a: unresolved\nb:\n  c: x-unresolved\n  d: |\n    unresolved\n"
    assert [(e.line, e.message) for e in errors] == [
        (1, 'environment variable "UNSET_ONE" is not set'), (3, 'environment variable "UNSET_TWO" is not set'),
        (5, 'invalid reference "${bad ref}" (write "$${" for a literal "${")')]
    _, lines = parse_document(text, file="p.yaml")
    assert [lines.key_at(line) for line in (1, 2, 3, 5)] == [("a",), ("b",), ("b", "c"), ("b", "d")]
