"""Prometheus protocol code shared by the scrape source and the metrics sinks.

Exposition parsing, relabelling, the Prometheus config schema and remote-write encoding live in the
modules of this package. Here: Prometheus's stale marker, the NaN a series gets when it ends.
"""

from __future__ import annotations

import struct

_STALE_BITS = 0x7FF0000000000002
STALE_NAN: float = struct.unpack("<d", struct.pack("<Q", _STALE_BITS))[0]


def is_stale(value: float) -> bool:
    """Whether ``value`` is the stale marker (compared by its bits: every NaN is unequal to every other)."""
    return value != value and struct.pack("<d", value) == struct.pack("<Q", _STALE_BITS)
