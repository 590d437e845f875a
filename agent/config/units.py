"""Human-friendly sizes (``5MiB``) and durations (``500ms``) for config structs.

``ByteSize`` and ``Duration`` are annotation markers: declare ``max_bytes: ByteSize = ByteSize("10MiB")``
and convert with ``msgspec.convert(..., dec_hook=dec_hook)``.

How it works, and why (msgspec 0.22):

* msgspec treats an ``int``/``float`` subclass as a custom type, so it calls ``dec_hook`` for every value
  of such a field (strings and numbers alike) and wraps the hook's ``ValueError`` into a
  ``ValidationError`` that carries the field's path.
* msgspec checks the hook's result with ``isinstance(result, ByteSize)``, yet it cannot encode
  ``int``/``float`` subclass instances at all (``msgspec.json.encode``, ``to_builtins`` and the
  ``default`` of ``msgspec.json.schema`` all raise ``TypeError``).

So no instance of these classes is ever created: calling ``ByteSize(...)`` parses its argument and
returns a plain ``int`` (``Duration(...)`` a plain ``float``), and a metaclass makes any valid plain
value pass the ``isinstance`` check. Field values and defaults are therefore ordinary numbers that
every encoder handles, while type checkers see ``ByteSize`` as an ``int`` (``Duration`` as a ``float``).
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any, cast

_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_SIZE = re.compile(rf"(?P<number>{_NUMBER})\s*(?P<unit>[A-Za-z]*)")
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    **{prefix: 1000**power for power, prefix in enumerate("kmgt", start=1)},
    **{f"{prefix}b": 1000**power for power, prefix in enumerate("kmgt", start=1)},
    **{f"{prefix}i": 1024**power for power, prefix in enumerate("kmgt", start=1)},
    **{f"{prefix}ib": 1024**power for power, prefix in enumerate("kmgt", start=1)},
}
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_DURATION_PART = rf"(?P<number>{_NUMBER})\s*(?P<unit>ns|us|µs|ms|s|m|h|d)\s*"
_DURATION = re.compile(rf"(?:{_DURATION_PART})+")
_DURATION_PARTS = re.compile(_DURATION_PART)
_BARE_NUMBER = re.compile(_NUMBER)
_MAX_SECONDS = 2**1000  # larger ints overflow float()


def _show(value: object) -> str:
    """Render a config value for an error message: strings in double quotes."""
    return f'"{value}"' if isinstance(value, str) else repr(value)


def parse_size(value: object) -> int:
    """Parse a byte count: an int, or a string like ``512``, ``64KiB``, ``10MB`` or ``1.5 KiB``.

    Binary units (KiB, MiB, GiB, TiB) are powers of 1024, decimal ones (kB, MB, GB, TB) powers of
    1000; units are case-insensitive and the ``B`` is optional. Raises ``ValueError`` otherwise.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, float) and math.isfinite(value) and value >= 0 and value.is_integer():
        return int(value)
    if isinstance(value, str) and (match := _SIZE.fullmatch(value.strip())):
        multiplier = _SIZE_UNITS.get(match["unit"].lower())
        if multiplier is not None:
            try:
                return round(Fraction(match["number"]) * multiplier)
            except ValueError:  # more digits than int() accepts
                pass
    raise ValueError(f'expected a size like "5MiB", got {_show(value)}')


def parse_duration(value: object) -> float:
    """Parse a duration in seconds: a number, or a string like ``500ms``, ``1.5s``, ``1m30s`` or ``2h``.

    Units are ns, us (or µs), ms, s, m, h and d; a bare number means seconds. Raises ``ValueError``
    otherwise.
    """
    seconds = math.nan
    if isinstance(value, int | float) and not isinstance(value, bool) and abs(value) <= _MAX_SECONDS:
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_duration_text(value.strip())
    if not 0 <= seconds < math.inf:
        raise ValueError(f'expected a duration like "500ms" or "1m", got {_show(value)}')
    return seconds


def _parse_duration_text(text: str) -> float:
    """Seconds in ``text``, or NaN if it is not a duration."""
    if _BARE_NUMBER.fullmatch(text):
        return float(text)
    if not _DURATION.fullmatch(text):
        return math.nan
    return sum(float(m["number"]) * _DURATION_UNITS[m["unit"]] for m in _DURATION_PARTS.finditer(text))


class _UnitMeta(type):
    """Makes valid plain numbers count as instances of a unit marker (see the module docstring)."""

    def __instancecheck__(cls, obj: object) -> bool:
        base = cls.__mro__[1]  # int for ByteSize, float for Duration
        return isinstance(obj, int | float) and type(obj) is base and 0 <= obj < math.inf


class ByteSize(int, metaclass=_UnitMeta):
    """A size in bytes; ``ByteSize("5MiB")`` returns the plain ``int`` 5242880."""

    def __new__(cls, value: object) -> ByteSize:
        return cast(ByteSize, parse_size(value))


class Duration(float, metaclass=_UnitMeta):
    """A duration in seconds; ``Duration("500ms")`` returns the plain ``float`` 0.5."""

    def __new__(cls, value: object) -> Duration:
        return cast(Duration, parse_duration(value))


def dec_hook(type_: type, obj: Any) -> Any:
    """``msgspec.convert`` hook: parse values of ``ByteSize`` and ``Duration`` fields."""
    if type_ is ByteSize:
        return ByteSize(obj)
    if type_ is Duration:
        return Duration(obj)
    raise NotImplementedError(f"no config decoder for {type_!r}")


def schema_hook(type_: type) -> dict[str, Any]:
    """``msgspec.json.schema`` hook describing ``ByteSize`` and ``Duration`` fields."""
    if type_ is ByteSize:
        number, description = "integer", 'a size in bytes, or a string like "5MiB" or "10MB"'
    elif type_ is Duration:
        number, description = "number", 'seconds, or a string like "500ms", "1m30s" or "2h"'
    else:
        raise NotImplementedError(f"no JSON schema for {type_!r}")
    return {"anyOf": [{"type": number, "minimum": 0}, {"type": "string"}], "description": description}
