"""Relabelling as Prometheus does it (``relabel_configs``, ``metric_relabel_configs``, ``write_relabel_configs``).

The semantics are those of Prometheus's ``model/relabel/relabel.go``: the defaults (``separator: ;``,
``regex: (.*)``, ``replacement: $1``, ``action: replace``), regexes anchored at both ends with ``.``
matching newlines too (``^(?s:regex)$``), replacements expanded as Go's ``Regexp.Expand`` does, an empty
result deleting a label, and label names checked with the classic rule ``[a-zA-Z_][a-zA-Z0-9_]*``.

Regexes are RE2 as Go reads them, compiled by ``google-re2``. Where the C++ RE2 behind that binding accepts
something Go rejects, the rule is refused: ``\\C`` (one byte, which can split a UTF-8 character) and group
names outside ``[A-Za-z0-9_]``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Annotated

import msgspec
import re2

from agent.core.regex import utf8

ACTIONS = ("replace", "keep", "drop", "keepequal", "dropequal", "hashmod", "labelmap", "labeldrop", "labelkeep",
           "lowercase", "uppercase")
# Read in any case, as relabel.go's Action.UnmarshalYAML lower-cases it ("Keep", "LabelDrop" are valid).
Action = Annotated[str, msgspec.Meta(extra_json_schema={"enum": list(ACTIONS)})]

_DEFAULT_REGEX = "(.*)"
_DEFAULT_REPLACEMENT = "$1"
_DEFAULT_SEPARATOR = ";"
_CACHE_SIZE = 4096  # per rule: results by input value (metric and label names repeat); cleared when full

_QUIET = re2.Options()
_QUIET.log_errors = False  # the reason goes into our ValueError, not to stderr
# relabel.go's relabelTargetLegacy: a label name that may contain $1, ${1}, $name, ${name}.
_TARGET_TEMPLATE = re2.compile(r"(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+", _QUIET)
_GROUP_NAME = re2.compile(r"[A-Za-z0-9_]+", _QUIET)


def is_label_name(name: str) -> bool:
    """Whether ``name`` is a valid Prometheus label name (``[a-zA-Z_][a-zA-Z0-9_]*``)."""
    return name.isascii() and name.isidentifier()  # an ASCII identifier is exactly that


class RelabelConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One relabelling rule, with Prometheus's keys, defaults and checks (``Config.Validate`` in relabel.go).

    ``regex: null`` (or an empty ``regex:``) is the empty regex, as in Prometheus, which matches only ``""``.
    """

    source_labels: list[str] = msgspec.field(default_factory=list)
    """Labels whose values, joined by separator, the regex is matched against."""
    separator: str = _DEFAULT_SEPARATOR
    """What joins the source labels' values."""
    regex: str | None = _DEFAULT_REGEX
    """RE2 regex anchored at both ends, matched against the joined values."""
    modulus: int | None = None
    """hashmod: the modulus of the hash written to target_label."""
    target_label: str | None = None
    """Label written by replace, hashmod, lowercase, uppercase, keepequal and dropequal."""
    replacement: str = _DEFAULT_REPLACEMENT
    """What replace writes; $1, ${1} and $name refer to the regex's groups."""
    action: Action = "replace"
    """replace, keep, drop, keepequal, dropequal, hashmod, labelmap, labeldrop, labelkeep, lowercase or uppercase (any
    case).
    """

    def __post_init__(self) -> None:
        if self.action.lower() not in ACTIONS:
            raise ValueError(f"unknown relabel action {self.action!r}, expected one of: {', '.join(sorted(ACTIONS))}")
        self.action = self.action.lower()
        if self.regex is None:
            self.regex = ""
        compile_regex(self.regex)
        for name in self.source_labels:
            if not is_label_name(name):
                raise ValueError(f"{name!r} in source_labels is not a valid label name")
        _validate(self)


def _validate(c: RelabelConfig) -> None:
    action, target = c.action, c.target_label or ""
    if c.modulus is not None and c.modulus < 0:
        raise ValueError(f"modulus must not be negative, got {c.modulus}")
    if action == "hashmod" and not c.modulus:
        raise ValueError("relabel configuration for hashmod requires non-zero modulus")
    if action in ("replace", "hashmod", "lowercase", "uppercase", "keepequal", "dropequal") and not target:
        raise ValueError(f"relabel configuration for {action} action requires 'target_label' value")
    if action == "replace" and not (_TARGET_TEMPLATE.fullmatch(target) if "$" in target else is_label_name(target)):
        raise ValueError(f"{target!r} is invalid 'target_label' for {action} action")
    if action in ("lowercase", "uppercase", "keepequal", "dropequal", "hashmod") and not is_label_name(target):
        raise ValueError(f"{target!r} is invalid 'target_label' for {action} action")
    if action in ("lowercase", "uppercase", "keepequal", "dropequal") and c.replacement != _DEFAULT_REPLACEMENT:
        raise ValueError(f"'replacement' can not be set for {action} action")
    if action == "labelmap" and not _TARGET_TEMPLATE.fullmatch(c.replacement):
        raise ValueError(f"{c.replacement!r} is invalid 'replacement' for {action} action")
    if action in ("keepequal", "dropequal") and (
        c.regex != _DEFAULT_REGEX or c.modulus or c.separator != _DEFAULT_SEPARATOR
    ):
        raise ValueError(f"{action} action requires only 'source_labels' and 'target_label', and no other fields")
    if action in ("labeldrop", "labelkeep") and (
        c.source_labels or target or c.modulus or c.separator != _DEFAULT_SEPARATOR
        or c.replacement != _DEFAULT_REPLACEMENT
    ):
        raise ValueError(f"{action} action requires only 'regex', and no other fields")


def compile_regex(regex: str) -> re2._Regexp:
    """``regex`` anchored as Prometheus anchors it (``^(?s:regex)$``), or ValueError saying why RE2 refused it."""
    _refuse_go_incompatible(regex)
    try:
        compiled = re2.compile(f"^(?s:{regex})$", _QUIET)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else exc
        raise ValueError(f"regex {regex!r} is not a valid RE2 regex: {reason}") from None
    for name in compiled.groupindex:
        if not _GROUP_NAME.fullmatch(name):
            raise ValueError(f"regex {regex!r}: group name {name!r} is not allowed in Go (only [A-Za-z0-9_])")
    return compiled


_NO_CAPTURE = re2.Options()
_NO_CAPTURE.log_errors = False
_NO_CAPTURE.never_capture = True  # a yes/no match: RE2 can skip submatch tracking
_BOTH = re2._Anchor.ANCHOR_BOTH


class _Regex:
    """A rule's regex, compiled as Prometheus compiles it and matched through google-re2's C++ object.

    The binding's Python ``match`` spends ~3-4 us a call mapping byte offsets back to str offsets; calling
    ``RE2.Match`` with the UTF-8 bytes costs ~0.6 us. ``groups`` and ``groupindex`` are as in ``re``.
    """

    __slots__ = ("_match", "groupindex", "groups")

    def __init__(self, regex: str, *, capture: bool) -> None:
        compiled = compile_regex(regex)
        self.groups: int = compiled.groups
        self.groupindex: dict[str, int] = dict(compiled.groupindex)
        if not capture:
            compiled = re2.compile(f"^(?s:{regex})$", _NO_CAPTURE)
        self._match = compiled._regexp.Match

    def test(self, text: str) -> bool:
        data = utf8(text)
        return self._match(_BOTH, data, 0, len(data))[0][0] >= 0

    def submatches(self, text: str) -> tuple[str | None, ...] | None:
        """Group 0 and every group's text (None where a group took no part), or None: no match."""
        data = utf8(text)
        spans = self._match(_BOTH, data, 0, len(data))
        if spans[0][0] < 0:
            return None
        if len(data) == len(text):  # ASCII: byte offsets are str offsets
            return tuple(None if start < 0 else text[start:end] for start, end in spans)
        return tuple(None if start < 0 else data[start:end].decode("utf-8", "surrogatepass") for start, end in spans)


def _raw_bytes(text: str) -> bytes:
    """The bytes Go would hash: a decoder's surrogate escapes turned back into the bytes they stand for."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return text.encode("utf-8", "surrogatepass")


def _refuse_go_incompatible(regex: str) -> None:
    """``\\C`` outside ``\\Q...\\E``: C++ RE2 reads it as one byte, Go refuses it."""
    i, end = 0, len(regex)
    while i < end:
        if regex[i] != "\\":
            i += 1
            continue
        nxt = regex[i + 1:i + 2]
        if nxt == "C":
            raise ValueError(f"regex {regex!r} is not a valid RE2 regex: invalid escape sequence: \\C")
        if nxt == "Q":
            stop = regex.find("\\E", i + 2)
            i = end if stop < 0 else stop + 2
            continue
        i += 2


# Replacement templates: Go's Regexp.Expand.

Template = tuple[str | int, ...]  # literal text, or the index of a group


def parse_template(template: str, regex: _Regex) -> Template:
    """``template`` as Go's ``Regexp.Expand`` reads it against ``regex``.

    ``$name`` takes the longest run of letters, digits and ``_`` (so ``$1x`` is the group named ``1x``);
    ``${name}`` is braced; ``$$`` is ``$``; a number is a group index (no leading zeros); a group that does
    not exist expands to nothing; a ``$`` that starts none of these is kept as it is.
    """
    parts: list[str | int] = []
    text: list[str] = []
    i, end = 0, len(template)
    while i < end:
        dollar = template.find("$", i)
        if dollar < 0:
            text.append(template[i:])
            break
        text.append(template[i:dollar])
        i = dollar + 1
        if template[i:i + 1] == "$":
            text.append("$")
            i += 1
            continue
        name, rest = _template_name(template, i)
        if name is None:
            text.append("$")
            continue
        i = rest
        index = _group_index(name, regex)
        if index is not None:
            parts.append("".join(text))
            text.clear()
            parts.append(index)
    parts.append("".join(text))
    return tuple(p for p in parts if p != "")


def _template_name(template: str, start: int) -> tuple[str | None, int]:
    """The name after a ``$`` at ``start`` and where the template goes on (Go's ``extract``); None if malformed."""
    brace = template[start:start + 1] == "{"
    i = start + 1 if brace else start
    first = i
    while i < len(template) and (template[i].isalpha() or template[i].isdecimal() or template[i] == "_"):
        i += 1
    if i == first:
        return None, start
    name = template[first:i]
    if brace:
        if template[i:i + 1] != "}":
            return None, start
        i += 1
    return name, i


def _group_index(name: str, regex: _Regex) -> int | None:
    if name.isascii() and name.isdigit() and not (name[0] == "0" and len(name) > 1) and len(name) <= 9:
        index = int(name)
        return index if index <= regex.groups else None
    return regex.groupindex.get(name)


def expand(template: Template, groups: tuple[str | None, ...]) -> str:
    """The template with each group index replaced by that group's text (``""`` if it did not take part)."""
    if len(template) == 1:  # "$1", "${2}", a constant: the usual replacements
        only = template[0]
        return only if isinstance(only, str) else (groups[only] or "")
    return "".join([p if isinstance(p, str) else (groups[p] or "") for p in template])


# Go's strings.ToLower / ToUpper map rune by rune (simple case mapping); Python's str.lower/upper use full
# mappings ("ß".upper() == "SS") and context (final sigma). ASCII, the usual case, is the same in both.

def _go_lower(text: str) -> str:
    if text.isascii():
        return text.lower()
    return "".join(_lower_rune(c) for c in text)


def _lower_rune(c: str) -> str:
    low = c.lower()
    return low if len(low) == 1 else "i" if c == "\u0130" else c


def _go_upper(text: str) -> str:
    if text.isascii():
        return text.upper()
    return "".join(_upper_rune(c) for c in text)


def _upper_rune(c: str) -> str:
    up = c.upper()
    if len(up) == 1:
        return up
    title = c.title()  # the simple mapping where one exists (U+1F80 -> U+1F88), else the rune unchanged
    return title if len(title) == 1 else c


# The engine.

Labels = dict[str, str]
Step = Callable[[Labels, "set[str] | None"], bool]  # False: the label set is dropped


def _set(out: Labels, added: set[str] | None, name: str, value: str) -> None:
    """labels.Builder.Set: an empty value deletes. With ``added`` (ordered mode), a label set for the first
    time moves to the end, so iterating ``out`` visits labels in the order Go's ``Builder.Range`` does."""
    if not value:
        out.pop(name, None)
        if added is not None:
            added.discard(name)
        return
    if added is not None and name not in added:
        out.pop(name, None)
        added.add(name)
    out[name] = value


def _joiner(c: RelabelConfig) -> Callable[[Labels], str]:
    names, sep = tuple(c.source_labels), c.separator
    if not names:
        return lambda labels: ""
    if len(names) == 1:
        only = names[0]
        return lambda labels: labels.get(only, "")
    return lambda labels: sep.join([labels.get(n, "") for n in names])


def _single_source(c: RelabelConfig) -> str | None:
    """The one source label when there is exactly one (the common case, read without a join call)."""
    return c.source_labels[0] if len(c.source_labels) == 1 else None


def _matcher(regex_text: str) -> Callable[[str], bool]:
    """A cached full-match test: the same metric and label names come back sample after sample."""
    regex = _Regex(regex_text, capture=False)
    cache: dict[str, bool] = {}

    def matches(value: str) -> bool:
        hit = cache.get(value)
        if hit is None:
            hit = regex.test(value)
            if len(cache) >= _CACHE_SIZE:
                cache.clear()
            cache[value] = hit
        return hit

    return matches


def _filter_step(c: RelabelConfig) -> Step:
    join, only = _joiner(c), _single_source(c)
    if c.action in ("keep", "drop"):
        regex, keep_on_match = _Regex(c.regex or "", capture=False), c.action == "keep"
        cache: dict[str, bool] = {}  # value -> whether the label set goes on (inlined: this runs per sample)

        def keep_or_drop(labels: Labels, added: set[str] | None) -> bool:
            value = labels.get(only, "") if only is not None else join(labels)
            hit = cache.get(value)
            if hit is None:
                hit = regex.test(value) is keep_on_match
                if len(cache) >= _CACHE_SIZE:
                    cache.clear()
                cache[value] = hit
            return hit

        return keep_or_drop
    target, keep_on_equal = c.target_label or "", c.action == "keepequal"
    return lambda labels, added: (labels.get(target, "") == join(labels)) is keep_on_equal


def _replace_step(c: RelabelConfig) -> Step:
    join, only = _joiner(c), _single_source(c)
    regex_text = c.regex or ""
    regex = _Regex(regex_text, capture=True)
    target_tpl = parse_template(c.target_label or "", regex)
    value_tpl = parse_template(c.replacement, regex)
    matches_all = regex_text == _DEFAULT_REGEX  # anchored (?s:(.*)): every value, group 1 the whole of it
    cache: dict[str, tuple[str, str] | None] = {}

    def compute(value: str) -> tuple[str, str] | None:
        groups = (value, value) if matches_all else regex.submatches(value)
        if groups is None:
            return None
        name = expand(target_tpl, groups)
        return (name, expand(value_tpl, groups)) if is_label_name(name) else None

    def step(labels: Labels, added: set[str] | None) -> bool:
        value = labels.get(only, "") if only is not None else join(labels)
        try:
            hit = cache[value]
        except KeyError:
            hit = compute(value)
            if len(cache) >= _CACHE_SIZE:
                cache.clear()
            cache[value] = hit
        if hit is not None:
            _set(labels, added, hit[0], hit[1])
        return True

    return step


def _value_step(c: RelabelConfig) -> Step:
    """hashmod, lowercase, uppercase: a function of the joined source values into target_label."""
    join, target = _joiner(c), c.target_label or ""
    convert = {"lowercase": _go_lower, "uppercase": _go_upper}.get(c.action) or _hashmod(c.modulus or 1)

    def step(labels: Labels, added: set[str] | None) -> bool:
        _set(labels, added, target, convert(join(labels)))
        return True

    return step


def _hashmod(modulus: int) -> Callable[[str], str]:
    def hashmod(value: str) -> str:
        digest = hashlib.md5(_raw_bytes(value), usedforsecurity=False).digest()
        return str(int.from_bytes(digest[8:], "big") % modulus)  # Go: BigEndian.Uint64(sum[8:]) % modulus

    return hashmod


def _name_step(c: RelabelConfig) -> Step:
    """labelmap, labeldrop, labelkeep: the regex is matched against each label NAME."""
    if c.action in ("labeldrop", "labelkeep"):
        matches, drop_on_match = _matcher(c.regex or ""), c.action == "labeldrop"

        def drop(labels: Labels, added: set[str] | None) -> bool:
            for name in [n for n in labels if matches(n) is drop_on_match]:
                _set(labels, added, name, "")
            return True

        return drop
    regex = _Regex(c.regex or "", capture=True)
    template = parse_template(c.replacement, regex)
    cache: dict[str, str | None] = {}  # label name -> the name it is copied to (None: no match)

    def mapped(name: str) -> str | None:
        try:
            return cache[name]
        except KeyError:
            groups = regex.submatches(name)
            hit = None if groups is None else expand(template, groups)
            if len(cache) >= _CACHE_SIZE:
                cache.clear()
            cache[name] = hit
        return hit

    def labelmap(labels: Labels, added: set[str] | None) -> bool:
        for name, value in list(labels.items()):
            new = mapped(name)
            if new is not None:
                _set(labels, added, new, value)  # Go sets it unchecked, as relabel.go does
        return True

    return labelmap


_BUILDERS: dict[str, Callable[[RelabelConfig], Step]] = {
    "keep": _filter_step, "drop": _filter_step, "keepequal": _filter_step, "dropequal": _filter_step,
    "replace": _replace_step,
    "hashmod": _value_step, "lowercase": _value_step, "uppercase": _value_step,
    "labelmap": _name_step, "labeldrop": _name_step, "labelkeep": _name_step,
}
_FILTERS = frozenset(("keep", "drop", "keepequal", "dropequal"))


class Relabeler:
    """Applies a list of rules; built once per config, used for every target / sample.

    Rules run in order, as Prometheus's ``relabel.Process`` runs them. Leading keep/drop rules look at the
    input itself, so a dropped sample costs no copy. Each regex rule remembers its last few thousand
    results by input value (not thread-safe in the sense of sharing one Relabeler across threads: the caches
    are plain dicts, correct but unsynchronised).
    """

    __slots__ = ("_filters", "_ordered", "_steps")

    def __init__(self, configs: list[RelabelConfig]) -> None:
        steps = [_BUILDERS[c.action](c) for c in configs]
        lead = 0
        while lead < len(configs) and configs[lead].action in _FILTERS:
            lead += 1
        self._filters = tuple(steps[:lead])
        self._steps = tuple(steps[lead:])
        # labelmap visits labels in Go's order, which decides the winner when two names map to one.
        self._ordered = any(c.action == "labelmap" for c in configs)

    def __bool__(self) -> bool:
        return bool(self._filters or self._steps)

    def apply(self, labels: dict[str, str]) -> dict[str, str] | None:
        """The relabelled labels (a new dict; the input is not changed), or None when a rule dropped them.
        `labels` includes `__name__` when relabelling samples, and `__address__`, `__meta_*`... for targets."""
        for check in self._filters:
            if not check(labels, None):
                return None
        if self._ordered:
            out = dict(sorted(labels.items()))
            added: set[str] | None = set()
        else:
            out = dict(labels)
            added = None
        for step in self._steps:
            if not step(out, added):
                return None
        return out
