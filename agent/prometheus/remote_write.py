"""Remote-write 1.0 on the wire: the protobuf ``WriteRequest``, encoded by hand, and snappy's block format.

    WriteRequest { repeated TimeSeries timeseries = 1; }
    TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
    Label        { string name = 1; string value = 2; }
    Sample       { double value = 1; int64 timestamp = 2; }

A hand-written encoder, because this is the metrics path's hot loop: a series' label fields are one
``bytes`` (:func:`encode_labels`) that a caller can keep and reuse for every later sample of that
series (the remote-write sink does), and a sample is one ``struct`` call with the fields around it
taken from a small cache keyed by timestamp (a scrape gives many samples the same one). Values are
packed as little-endian doubles, which keeps a NaN's payload: the stale marker goes out bit for bit.

The caller gives labels sorted by name, unique, with non-empty names and values, ``__name__``
included, and a series' samples in time order: the encoder writes what it is given.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

import cramjam

# The headers remote-write 1.0 requires on every request (the User-Agent comes from the HTTP client).
PROTOCOL_HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}

_MASK64 = (1 << 64) - 1
_TAILS_MAX = 4096  # timestamps whose sample framing is cached


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


# timestamp -> (struct of one samples field, its tag and length and the value's tag, the timestamp field)
_tails: dict[int, tuple[struct.Struct, bytes, bytes]] = {}


def _tail(timestamp_ms: int) -> tuple[struct.Struct, bytes, bytes]:
    if len(_tails) >= _TAILS_MAX:
        _tails.clear()
    stamp = b"\x10" + varint(timestamp_ms)
    framing = (struct.Struct(f"<3sd{len(stamp)}s"), b"\x12" + _length(9 + len(stamp)) + b"\t", stamp)
    _tails[timestamp_ms] = framing
    return framing


def encode_sample(value: float, timestamp_ms: int) -> bytes:
    """One ``samples`` field of a TimeSeries."""
    framing = _tails.get(timestamp_ms) or _tail(timestamp_ms)
    return framing[0].pack(framing[1], value, framing[2])


def encode_series(label_fields: bytes, samples: Sequence[tuple[float, int]]) -> bytes:
    """One ``timeseries`` field of a WriteRequest: labels from :func:`encode_labels`, samples in time order."""
    if len(samples) == 1:
        value, timestamp_ms = samples[0]
        sample = encode_sample(value, timestamp_ms)
        return b"\n" + _length(len(label_fields) + len(sample)) + label_fields + sample
    fields = [encode_sample(value, timestamp_ms) for value, timestamp_ms in samples]
    body = label_fields + b"".join(fields)
    return b"\n" + _length(len(body)) + body


def encode_write_request(series: list[tuple[Sequence[tuple[str, str]], Sequence[tuple[float, int]]]]) -> bytes:
    """A WriteRequest of ``series``: (labels, samples) pairs, as the module docstring requires them."""
    return b"".join([encode_series(encode_labels(labels), samples) for labels, samples in series])


def compress(body: bytes) -> bytes:
    """``body`` in snappy's block format (remote-write forbids the framed format)."""
    return bytes(cramjam.snappy.compress_raw(body))
