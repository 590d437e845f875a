"""Remote-write 1.0 on the wire: the protobuf ``WriteRequest``, encoded by hand, and snappy's block format.

    WriteRequest { repeated TimeSeries timeseries = 1; }
    TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
    Label        { string name = 1; string value = 2; }
    Sample       { double value = 1; int64 timestamp = 2; }

A hand-written encoder, because this is the metrics path's hot loop: a series' label fields are one
``bytes`` (:func:`encode_labels`) that a caller can keep and reuse for every later sample of that
series (the remote-write sink does, with :func:`encode_groups`), and a sample is one ``struct`` call
with the fields around it taken from a small cache keyed by timestamp (a scrape gives many samples
the same one). Values are
packed as little-endian doubles, which keeps a NaN's payload: the stale marker goes out bit for bit.

The caller gives labels sorted by name, unique, with non-empty names and values, ``__name__``
included, and a series' samples in time order: the encoder writes what it is given.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter
from typing import NamedTuple, Protocol

import cramjam

# The headers remote-write 1.0 requires on every request (the User-Agent comes from the HTTP client).
PROTOCOL_HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}

_MASK64 = (1 << 64) - 1
_FRAMINGS_MAX = 4096  # timestamps whose sample framing is cached


def varint(n: int) -> bytes:
    """``n`` as a protobuf base-128 varint (a negative int64 as its 64-bit two's complement: ten bytes)."""
    n &= _MASK64
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = [varint(n) for n in range(1 << 14)]  # every length up to 16 KiB


def _length(n: int) -> bytes:
    return _SMALL[n] if n < 16384 else varint(n)


def _label(name: str, value: str) -> bytes:
    """One ``labels`` field of a TimeSeries: tag, length, then the Label message."""
    n, v = name.encode(), value.encode()
    label = b"\n" + _length(len(n)) + n + b"\x12" + _length(len(v)) + v
    return b"\n" + _length(len(label)) + label


def encode_labels(labels: Iterable[tuple[str, str]]) -> bytes:
    """The label fields of one TimeSeries (``__name__`` among them, sorted by name, unique, non-empty)."""
    return b"".join([_label(name, value) for name, value in labels])


class TimedValue(Protocol):
    """A sample as the encoder reads it (``agent.core.metric.Sample`` is one)."""

    @property
    def value(self) -> float: ...

    @property
    def timestamp_ms(self) -> int: ...


class Point(NamedTuple):
    """A bare (value, timestamp) sample."""

    value: float
    timestamp_ms: int


# timestamp -> (struct of one samples field, its tag and length and the value's tag, the timestamp field)
_framings: dict[int, tuple[struct.Struct, bytes, bytes]] = {}
_by_time = attrgetter("timestamp_ms")
_FIELD_HEADS = [b"\n" + length for length in _SMALL]  # a timeseries field's tag and length


def _framing(timestamp_ms: int) -> tuple[struct.Struct, bytes, bytes]:
    framing = _framings.get(timestamp_ms)
    if framing is None:
        if len(_framings) >= _FRAMINGS_MAX:
            _framings.clear()
        stamp = b"\x10" + varint(timestamp_ms)
        framing = (struct.Struct(f"<3sd{len(stamp)}s"), b"\x12" + _length(9 + len(stamp)) + b"\t", stamp)
        _framings[timestamp_ms] = framing
    return framing


def encode_groups(groups: Iterable[tuple[bytes, TimedValue | list[TimedValue]]]) -> bytes:
    """A WriteRequest of one TimeSeries per group: its label fields (:func:`encode_labels`) and its samples,
    one sample or a list of them (sorted here by time, in place).

    The usual group is one sample with the timestamp of the one before (a scrape's samples share it):
    that costs a ``struct`` call and a few list slots, no bytes concatenated.
    """
    parts: list[bytes] = []
    extend = parts.extend
    heads = _FIELD_HEADS
    last = None
    pack: Callable[..., bytes] = struct.pack
    head, stamp, size = b"", b"", 0
    for fields, group in groups:
        if type(group) is list:
            group.sort(key=_by_time)
            body = fields + b"".join([_one(s.value, s.timestamp_ms) for s in group])
            extend((_head(len(body)), body))
            continue
        timestamp_ms = group.timestamp_ms  # type: ignore[union-attr]
        if timestamp_ms != last:
            last = timestamp_ms
            framing = _framing(timestamp_ms)
            pack, head, stamp, size = framing[0].pack, framing[1], framing[2], framing[0].size
        n = len(fields) + size
        extend((heads[n] if n < 16384 else _head(n), fields, pack(head, group.value, stamp)))  # type: ignore[union-attr]
    return b"".join(parts)


def _head(n: int) -> bytes:
    return _FIELD_HEADS[n] if n < 16384 else b"\n" + varint(n)


def _one(value: float, timestamp_ms: int) -> bytes:
    framing = _framing(timestamp_ms)
    return framing[0].pack(framing[1], value, framing[2])


def encode_write_request(series: list[tuple[Sequence[tuple[str, str]], Sequence[tuple[float, int]]]]) -> bytes:
    """A WriteRequest of ``series``: (labels, samples) pairs, as the module docstring requires them."""
    groups: list[tuple[bytes, TimedValue | list[TimedValue]]] = [
        (encode_labels(labels), [Point(value, timestamp_ms) for value, timestamp_ms in samples])
        for labels, samples in series]
    return encode_groups(groups)


def compress(body: bytes) -> bytes:
    """``body`` in snappy's block format (remote-write forbids the framed format)."""
    return bytes(cramjam.snappy.compress_raw(body))
