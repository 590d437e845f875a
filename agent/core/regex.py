"""User regexes, compiled by google-re2: matching is linear in the text, whatever the pattern.

Every regex a user writes in a pipeline (a condition's ``=~``, a parser's ``pattern``, a filter, a
redaction) meets untrusted log lines, so it runs on RE2, which cannot backtrack catastrophically.
:func:`compile_user_regex` accepts RE2's syntax plus Fluent Bit's and PCRE's ``(?<name>...)`` groups
and refuses what RE2 cannot do (backreferences, lookaround, possessive quantifiers, atomic groups)
with a ValueError that names the construct, so ``agent validate`` reports it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

import re2

Regex: TypeAlias = re2._Regexp  # what re2.compile returns: .pattern, .groupindex, .search, ...

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # the reason goes into our ValueError, not to stderr
_TEST_ONLY = re2.Options()
_TEST_ONLY.log_errors = False
_TEST_ONLY.never_capture = True  # a yes/no answer: RE2 skips submatch tracking
_UNANCHORED = re2._Anchor.UNANCHORED

_NOT_LINEAR = ": RE2 matches in linear time and cannot express it"
# What RE2 reports for an operator it lacks (the text after "invalid perl operator: "), and its name.
_OPERATORS = {
    "(?=": "lookahead (?=...)",
    "(?!": "negative lookahead (?!...)",
    "(?<=": "lookbehind (?<=...)",
    "(?<!": "negative lookbehind (?<!...)",
    "(?>": "atomic group (?>...)",
    "(?|": "branch reset group (?|...)",
    "(?#": "comment group (?#...) is not supported by RE2",
    "(?P": "named backreference or recursion (?P=name) / (?P>name)",
    "(?R": "recursion (?R)",
    "(?&": "subroutine call (?&name)",
    "(?(": "conditional group (?(...)...)",
}
_ESCAPES = {
    "\\k": "named backreference \\k<name>",
    "\\g": "backreference \\g",
    "\\K": "match reset \\K is not supported by RE2",
    "\\G": "anchor \\G is not supported by RE2",
    "\\Z": "anchor \\Z is not supported by RE2 (use \\z or $)",
}


def compile_user_regex(pattern: str) -> Regex:
    """``pattern`` compiled by RE2 (unanchored, UTF-8), or ValueError saying what RE2 cannot do.

    ``(?<name>...)`` is read as ``(?P<name>...)``. ``\\C`` (one byte, which can split a UTF-8
    character) is refused as well.
    """
    translated = _translate(pattern)
    try:
        return re2.compile(translated, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(f"regex {pattern!r}: {_explain(reason)}") from None


def searcher(regex: Regex) -> Callable[[str], bool]:
    """A test of whether ``regex`` matches anywhere in a text (``re.search`` semantics), at RE2's C++ speed.

    The binding's ``search`` spends microseconds mapping byte offsets back to str offsets; a yes/no
    answer needs none of that.
    """
    match = re2.compile(regex.pattern, _TEST_ONLY)._regexp.Match

    def search(text: str) -> bool:
        data = utf8(text)
        return match(_UNANCHORED, data, 0, len(data))[0][0] >= 0

    return search


def utf8(text: str) -> bytes:
    """The text as RE2 reads it; lone surrogates (undecodable input) pass as 3-byte sequences."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _explain(reason: str) -> str:
    """RE2's error, with what it refuses named and the reason given."""
    if reason.startswith("invalid perl operator: "):
        found = reason.removeprefix("invalid perl operator: ")
        for prefix, name in sorted(_OPERATORS.items(), key=lambda item: -len(item[0])):
            if found.startswith(prefix):
                return name if "RE2" in name else f"{name} is not supported{_NOT_LINEAR}"
    if reason.startswith("invalid escape sequence: \\"):
        escape = reason.removeprefix("invalid escape sequence: ")
        if escape[1:2].isdigit() and escape[1:2] != "0":
            return f"backreference {escape} is not supported{_NOT_LINEAR}"
        if escape[:2] in _ESCAPES:
            name = _ESCAPES[escape[:2]]
            return name if "RE2" in name else f"{name} is not supported{_NOT_LINEAR}"
    if reason.startswith("bad repetition operator: ") and reason.endswith("+"):
        found = reason.removeprefix("bad repetition operator: ")
        return f"possessive quantifier {found} is not supported{_NOT_LINEAR}"
    return f"not a valid RE2 regex: {reason}"


def _translate(pattern: str) -> str:
    """``(?<name>`` rewritten as ``(?P<name>``; ``\\C`` refused. Escapes, ``\\Q...\\E`` and classes are skipped."""
    out: list[str] = []
    names: set[str] = set()
    i, end, start = 0, len(pattern), 0
    in_class = False
    while i < end:
        char = pattern[i]
        if char == "\\":
            nxt = pattern[i + 1:i + 2]
            if nxt == "C":
                raise ValueError(f"regex {pattern!r}: \\C (a single byte, which can split a UTF-8 character) "
                                 "is not supported")
            if nxt == "Q":
                stop = pattern.find("\\E", i + 2)
                i = end if stop < 0 else stop + 2
                continue
            i += 2
        elif in_class:
            if char == "]":
                in_class = False
            elif pattern.startswith("[:", i):
                stop = pattern.find(":]", i + 2)
                i = i + 1 if stop < 0 else stop + 1
            i += 1
        elif char == "[":
            in_class = True
            i += 1
            if pattern.startswith("^", i):
                i += 1
            if pattern.startswith("]", i):  # a leading ] is a literal
                i += 1
        elif pattern.startswith("(?<", i) and pattern[i + 3:i + 4] not in ("=", "!"):
            out.append(pattern[start:i])
            out.append("(?P<")
            i += 3
            start = i
            _note_name(pattern, i, names)
        elif pattern.startswith("(?P<", i):
            i += 4
            _note_name(pattern, i, names)
        else:
            i += 1
    out.append(pattern[start:])
    return "".join(out)


def _note_name(pattern: str, at: int, names: set[str]) -> None:
    """Record the group name starting at ``at``; a name used twice is refused (RE2 would keep one silently)."""
    stop = pattern.find(">", at)
    if stop < 0:
        return  # RE2 reports the unterminated name
    name = pattern[at:stop]
    if name in names:
        raise ValueError(f"regex {pattern!r}: group name {name!r} is used twice")
    names.add(name)
