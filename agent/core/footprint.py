"""What events cost in memory, as the ``byte_size`` of their batch accounts for it.

Buffers are sized in bytes (``buffer.max_bytes``, ``memory_limit``), so a batch's ``byte_size`` tracks the
memory its events hold, not the bytes they were read from: a decoded Docker event holds about 2.2 times its
line, a parsed one 3.8 times. Counting every object of every event (``sys.getsizeof`` walks) would cost more
than the decode itself, so the estimate is made per batch from what is known anyway: the bytes read, the
number of events, and the number of keys ``parse`` merged in (nested objects are not walked).

The constants come from ``benchmarks/memory_per_event.py`` (tracemalloc, 100k events of each kind,
CPython 3.11, 64-bit; ``benchmarks/RESULTS.md``, "Memory per buffered event"): a Docker event decoded from
a ~338 B line holds 734 B (the line's text plus ~395 B: the dict, ``time``, ``stream``, ``offset``, its list
slot); other shapes measured 365-423 B above their line. ``parse`` adds 50-75 B per key it merges (the value
object and the dict's entry, less the text it was parsed from), and a dict of its own (~150 B) when it
parses a raw line. ``tests/unit/core/test_footprint.py`` holds the estimate within 30 % of tracemalloc's
figure, so a change that makes events heavier has to update these.
"""

from __future__ import annotations

DECODED_EVENT_BYTES = 400  # per event decoded from a line: the dict and the values beside the message
PARSED_DICT_BYTES = 150  # per event parse builds from a raw line: its dict
PARSED_KEY_BYTES = 64  # per key parse merges into an event


def decoded_bytes(raw_bytes: int, events: int) -> int:
    """The memory of ``events`` dict events decoded from ``raw_bytes`` of lines."""
    return raw_bytes + events * DECODED_EVENT_BYTES


def parsed_bytes(byte_size: int, events: int, keys: int, from_lines: bool) -> int:
    """The memory of a batch of ``byte_size`` once parse merged ``keys`` keys into its ``events`` events
    (``from_lines``: the batch held raw lines, each now a dict of its own)."""
    return byte_size + keys * PARSED_KEY_BYTES + (events * PARSED_DICT_BYTES if from_lines else 0)
