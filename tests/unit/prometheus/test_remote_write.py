"""Remote-write encoding: the WriteRequest bytes, decoded back by an independent decoder, and snappy's block format."""

from __future__ import annotations

import math
import struct

import cramjam
import pytest
from fakes.remote_write import decode_write_request
from hypothesis import given
from hypothesis import strategies as st

from agent.prometheus import STALE_NAN, is_stale
from agent.prometheus.remote_write import Point, compress, encode_groups, encode_labels, encode_write_request, varint

NOW = 1_767_225_600_123  # 2026-01-01, in ms


def test_a_write_request_decodes_to_the_series_and_samples_given() -> None:
    series = [
        ([("__name__", "node_cpu_seconds_total"), ("cpu", "0"), ("job", "node"), ("mode", "idle")],
         [(1234.5, NOW), (1235.5, NOW + 15_000)]),
        ([("__name__", "up"), ("instance", "é:9100"), ("job", "node")], [(1.0, NOW)]),
    ]
    assert decode_write_request(encode_write_request(series)) == series


def test_the_bytes_are_the_protobuf_encoding_field_by_field() -> None:
    """Checked against bytes written out from the .proto by hand, so the decoder is not the only judge."""
    body = encode_write_request([([("__name__", "m")], [(1.0, 5)])])
    label = b"\x0a\x08__name__" + b"\x12\x01m"  # Label{name=1, value=2}
    sample = b"\x09" + struct.pack("<d", 1.0) + b"\x10\x05"  # Sample{double value=1, int64 timestamp=2}
    timeseries = b"\x0a" + bytes([len(label)]) + label + b"\x12" + bytes([len(sample)]) + sample
    assert body == b"\x0a" + bytes([len(timeseries)]) + timeseries


def test_the_stale_marker_survives_encoding_bit_for_bit() -> None:
    body = encode_write_request([([("__name__", "m")], [(STALE_NAN, NOW), (math.nan, NOW + 1)])])
    (_, samples), = decode_write_request(body)
    assert is_stale(samples[0][0])
    assert struct.pack("<d", samples[0][0]) == struct.pack("<Q", 0x7FF0000000000002)
    assert math.isnan(samples[1][0]) and not is_stale(samples[1][0])  # an ordinary NaN stays ordinary


@pytest.mark.parametrize("timestamp", [0, 1, 127, 128, 16383, 16384, NOW, 2**62, -1, -NOW])
def test_timestamps_of_every_varint_length_and_negative_ones_round_trip(timestamp: int) -> None:
    body = encode_write_request([([("__name__", "m")], [(0.5, timestamp)])])
    assert decode_write_request(body)[0][1] == [(0.5, timestamp)]


def test_negative_varints_are_ten_bytes_of_twos_complement() -> None:
    assert varint(-1) == b"\xff" * 9 + b"\x01"
    assert varint(300) == b"\xac\x02"


def test_long_labels_get_multi_byte_lengths() -> None:
    labels = [("__name__", "m"), ("big", "v" * 20_000)]  # over the table of precomputed lengths
    body = encode_groups([(encode_labels(labels), Point(1.0, NOW)), (encode_labels(labels), [Point(2.0, NOW)])])
    assert decode_write_request(body) == [(labels, [(1.0, NOW)]), (labels, [(2.0, NOW)])]


def test_groups_of_one_sample_or_several_are_sorted_by_time_and_share_nothing_by_mistake() -> None:
    a, b = encode_labels([("__name__", "a")]), encode_labels([("__name__", "b")])
    body = encode_groups([(a, Point(1.0, NOW)), (b, [Point(3.0, NOW + 2), Point(2.0, NOW + 1)]),
                          (a, Point(4.0, NOW + 5)), (b, Point(5.0, NOW))])  # a new timestamp after a cached one
    assert decode_write_request(body) == [
        ([("__name__", "a")], [(1.0, NOW)]), ([("__name__", "b")], [(2.0, NOW + 1), (3.0, NOW + 2)]),
        ([("__name__", "a")], [(4.0, NOW + 5)]), ([("__name__", "b")], [(5.0, NOW)])]


def test_compress_writes_the_snappy_block_format_not_the_framed_one() -> None:
    body = encode_write_request([([("__name__", "m"), ("job", "x" * 100)], [(1.0, NOW)])] * 50)
    compressed = compress(body)
    assert bytes(cramjam.snappy.decompress_raw(compressed)) == body
    assert not compressed.startswith(b"\xff\x06\x00\x00sNaPpY")  # the framed format's stream identifier
    assert len(compressed) < len(body)


label_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)


@given(st.lists(st.tuples(st.dictionaries(label_text, label_text, min_size=1, max_size=6),
                          st.lists(st.tuples(st.floats(allow_nan=False), st.integers(-2**63, 2**63 - 1)),
                                   min_size=1, max_size=4)),
                max_size=8))
def test_any_series_round_trip(raw: list[tuple[dict[str, str], list[tuple[float, int]]]]) -> None:
    series = [(sorted(labels.items()), sorted(samples, key=lambda s: s[1])) for labels, samples in raw]
    assert decode_write_request(encode_write_request(series)) == series
