from __future__ import annotations

import math
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config.units import ByteSize, Duration, dec_hook, parse_duration, parse_size, schema_hook


class Batch(msgspec.Struct, forbid_unknown_fields=True):
    max_bytes: ByteSize = ByteSize(10 * 1024 * 1024)
    timeout: Duration = Duration("1s")
    limit: ByteSize | None = None


def to_batch(data: Any) -> Batch:
    return msgspec.convert(data, Batch, strict=True, dec_hook=dec_hook)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (512, 512),
        (2048.0, 2048),
        ("512", 512),
        ("512B", 512),
        ("64KiB", 64 * 1024),
        ("5MiB", 5 * 1024**2),
        ("1GiB", 1024**3),
        ("2TiB", 2 * 1024**4),
        ("10MB", 10_000_000),
        ("100 kB", 100_000),
        ("100KB", 100_000),
        ("1.5KiB", 1536),
        ("8Mi", 8 * 1024**2),
        (" 5mib ", 5 * 1024**2),
    ],
)
def test_parse_size(value: object, expected: int) -> None:
    assert parse_size(value) == expected
    assert type(parse_size(value)) is int


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("lots", '"lots"'),
        ("", '""'),
        ("5 MiBs", '"5 MiBs"'),
        ("-1KiB", '"-1KiB"'),
        (-1, "-1"),
        (1.5, "1.5"),
        (True, "True"),
        (None, "None"),
        ([], "[]"),
        ("9" * 5000, '"' + "9" * 5000 + '"'),
    ],
)
def test_parse_size_rejects(value: object, shown: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_size(value)
    assert str(info.value) == f'expected a size like "5MiB", got {shown}'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0.0),
        (3, 3.0),
        (2.5, 2.5),
        ("30", 30.0),
        ("500ms", 0.5),
        ("1s", 1.0),
        ("1.5s", 1.5),
        ("1m", 60.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1m30s", 90.0),
        ("1h 30m", 5400.0),
        ("250us", 0.00025),
        ("250µs", 0.00025),
        ("10ns", 1e-8),
    ],
)
def test_parse_duration(value: object, expected: float) -> None:
    assert parse_duration(value) == pytest.approx(expected)
    assert type(parse_duration(value)) is float


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("soon", '"soon"'),
        ("", '""'),
        ("1m30", '"1m30"'),
        ("-1s", '"-1s"'),
        ("1y", '"1y"'),
        (-1, "-1"),
        (math.inf, "inf"),
        (math.nan, "nan"),
        (10**400, repr(10**400)),
        (False, "False"),
        ("1" * 400 + "s", '"' + "1" * 400 + 's"'),
    ],
)
def test_parse_duration_rejects(value: object, shown: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(value)
    assert str(info.value) == f'expected a duration like "500ms" or "1m", got {shown}'


def test_markers_construct_plain_numbers() -> None:
    assert ByteSize("5MiB") == 5 * 1024**2
    assert type(ByteSize(1024)) is int
    assert type(Duration("500ms")) is float
    assert isinstance(5, ByteSize)
    assert not isinstance(-5, ByteSize)
    assert not isinstance(True, ByteSize)
    assert isinstance(0.5, Duration)
    assert not isinstance(math.inf, Duration)


@pytest.mark.parametrize(("value", "expected"), [("5MiB", 5 * 1024**2), (1024, 1024), ("1KB", 1000)])
def test_struct_field_accepts_sizes(value: object, expected: int) -> None:
    batch = to_batch({"max_bytes": value, "timeout": "250ms", "limit": "1KiB"})
    assert batch.max_bytes == expected
    assert type(batch.max_bytes) is int
    assert batch.max_bytes + 1 == expected + 1
    assert (batch.timeout, batch.limit) == (0.25, 1024)


def test_struct_field_defaults_and_encoding() -> None:
    batch = to_batch({})
    assert (batch.max_bytes, batch.timeout, batch.limit) == (10 * 1024 * 1024, 1.0, None)
    encoded = msgspec.json.encode(batch)
    assert msgspec.json.decode(encoded) == {"max_bytes": 10485760, "timeout": 1.0, "limit": None}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"max_bytes": "lots"}, 'expected a size like "5MiB", got "lots" - at `$.max_bytes`'),
        ({"limit": -3}, 'expected a size like "5MiB", got -3 - at `$.limit`'),
        ({"timeout": "soon"}, 'expected a duration like "500ms" or "1m", got "soon" - at `$.timeout`'),
    ],
)
def test_struct_field_rejects(data: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError) as info:
        to_batch(data)
    assert str(info.value) == message


def test_json_decode_uses_hook() -> None:
    batch = msgspec.json.decode(b'{"max_bytes": "2KiB"}', type=Batch, dec_hook=dec_hook)
    assert batch.max_bytes == 2048


def test_hooks_refuse_other_types() -> None:
    with pytest.raises(NotImplementedError):
        dec_hook(complex, "1j")
    with pytest.raises(NotImplementedError):
        schema_hook(complex)


def test_json_schema() -> None:
    schema = msgspec.json.schema(Batch, schema_hook=schema_hook)
    properties = schema["$defs"]["Batch"]["properties"]
    assert properties["max_bytes"]["default"] == 10485760
    assert properties["max_bytes"]["anyOf"] == [{"type": "integer", "minimum": 0}, {"type": "string"}]
    assert properties["timeout"]["anyOf"][0] == {"type": "number", "minimum": 0}
    assert "500ms" in properties["timeout"]["description"]


@given(st.text())
def test_parse_size_only_raises_value_error(text: str) -> None:
    try:
        size = parse_size(text)
    except ValueError as exc:
        assert str(exc).startswith('expected a size like "5MiB", got ')
    else:
        assert type(size) is int and size >= 0


@given(st.text())
def test_parse_duration_only_raises_value_error(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        assert str(exc).startswith('expected a duration like "500ms" or "1m", got ')
    else:
        assert 0 <= seconds < math.inf


@given(st.from_regex(r"[0-9]{1,6}(\.[0-9]{1,3})?\s?(B|KiB|MiB|kB|MB)?", fullmatch=True))
def test_parse_size_accepts_well_formed(text: str) -> None:
    assert parse_size(text) >= 0
