"""Transform `redact`: personal data and secrets in text fields replaced by a fixed text or a keyed hash.

Built-in patterns: ``email``, ``credit_card`` (13-19 digits, spaces or dashes between, starting 2-6, and only
when the Luhn check passes), ``ipv4``, ``ipv6`` (checked by :mod:`ipaddress`), ``bearer`` (the token after
``Bearer``), ``api_key`` (the value after ``api_key=``, ``token:``, ``password=`` and the like, and keys of
well-known shapes: AWS ``AKIA...``, GitHub ``ghp_...``, Stripe ``sk_live_...``, Slack ``xox?-...``, Google
``AIza...``), ``jwt``; plus ``custom`` patterns (RE2, :func:`agent.core.regex.compile_user_regex`), which come
first: where one and a built-in match at the same place, the custom one is used.

All patterns are one RE2 alternation, so a text is searched once whatever their number, and a text where
nothing matches costs one search and no copy. ``mode: replace`` writes ``replacement``; ``mode: hash`` writes
``[<pattern>:<16 hex digits>]``, the start of the HMAC-SHA256 of the value with ``hash_key``, so a value gets
the same stand-in on every host and after every restart and can still be followed across events.

``fields`` names the fields to scan (paths); without it, every text value of the event is scanned, nested
objects and lists included (to :data:`MAX_DEPTH` levels; deeper values are left and counted as
``redact_too_deep``). Keys and non-text values are not scanned. Objects are copied where they change, never
changed in place. Redactions are counted in ``agent_redact_redactions_total{pattern}``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal

import msgspec
import re2

from agent.config.model import TransformConfig
from agent.config.registry import BuildContext, register
from agent.core.batch import Batch, Kind
from agent.core.events import own_parents, to_log_events
from agent.core.regex import compile_user_regex, utf8
from agent.expr.paths import get_field, parse_path, set_field

MAX_DEPTH = 64
HASH_HEX_DIGITS = 16
_UNANCHORED = re2._Anchor.UNANCHORED
_BOTH = re2._Anchor.ANCHOR_BOTH
_SEARCH_ONLY = re2.Options()
_SEARCH_ONLY.never_capture = True
_SEARCH_ONLY.log_errors = False
SECRET = "secret"  # a pattern's group naming the part to redact (the rest is context, kept)

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_HEX = "[0-9a-f]{1,4}"
BUILTIN: dict[str, str] = {
    "email": r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}",
    "credit_card": r"\b[2-6]\d{3}(?:[ \-]?\d){9,15}\b",
    "ipv4": rf"\b{_OCTET}(?:\.{_OCTET}){{3}}\b",
    # A group on at least one side of "::": a bare "::" (or a run of colons) is never a candidate to check.
    "ipv6": rf"(?i:(?:\b{_HEX}(?::{_HEX}){{7}}\b|(?:\b{_HEX}(?::{_HEX}){{0,6}})?::{_HEX}(?::{_HEX}){{0,6}}\b"
            rf"|\b{_HEX}(?::{_HEX}){{0,6}}::)"
            rf"(?:(?:\.{_OCTET}){{3}}\b)?(?:%[0-9a-z]+)?)",
    "bearer": r"(?i:bearer)\s+(?P<secret>[A-Za-z0-9\-._~+/]{8,}=*)",
    "api_key": r"(?i:\b(?:api[_\-]?key|apikey|access[_\-]?token|auth[_\-]?token|secret[_\-]?key|client[_\-]?secret"
               r"|token|password|passwd|pwd)[\"']?\s*[:=]\s*[\"']?)(?P<secret>[^\s\"'&,;\\]{6,})"
               r"|\b(?:AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36}|sk_live_[0-9A-Za-z]{16,}|xox[abprs]-[0-9A-Za-z\-]{10,}"
               r"|AIza[0-9A-Za-z_\-]{35})\b",
    "jwt": r"\beyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*",
}
PatternName = Literal["email", "credit_card", "ipv4", "ipv6", "bearer", "api_key", "jwt"]


def luhn(digits: str) -> bool:
    """Whether a string of digits passes the Luhn check (payment card numbers do)."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = ord(char) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(text: str) -> bool:
    digits = text.replace(" ", "").replace("-", "")
    return 13 <= len(digits) <= 19 and luhn(digits)


def _ip(text: str) -> bool:
    if text.strip(":") == "":  # "::" (any address) is more often punctuation than an address
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


CHECKS: dict[str, Callable[[str], bool]] = {"credit_card": _card, "ipv6": _ip}  # a candidate is redacted if true


class RedactConfig(TransformConfig, tag="redact"):
    """Replace or hash personal data and secrets found in text fields.

    Built-in ``patterns`` and ``custom`` ones are searched in the named ``fields`` or in every text value. ``mode:
    hash`` replaces a value with an HMAC keyed by ``hash_key``, so the same value gives the same text everywhere (joins
    still work) without revealing it.
    """

    patterns: list[PatternName] = msgspec.field(default_factory=lambda: list(BUILTIN))  # type: ignore[arg-type]
    """Built-in patterns to find: email, credit_card (Luhn-checked), ipv4, ipv6, bearer, api_key, jwt."""
    custom: dict[str, str] = {}
    """Your own patterns, name: RE2 regex; a group named secret limits what is replaced."""
    fields: list[str] = []
    """Field paths to scan; none: every text value of the event."""
    mode: Literal["replace", "hash"] = "replace"
    """replace: put replacement instead; hash: an HMAC-SHA256 of the value keyed by hash_key, the same everywhere."""
    replacement: str = "[REDACTED]"
    """What a found value becomes in mode replace."""
    hash_key: str | None = None
    """Mode hash: the HMAC key, at least 16 characters; keep it secret (${file:PATH})."""

    def __post_init__(self) -> None:
        if self.mode == "hash" and (self.hash_key is None or len(self.hash_key) < 16):
            raise ValueError("mode hash needs hash_key, at least 16 characters long")
        clash = set(self.custom) & set(BUILTIN)
        if clash:
            raise ValueError(f"custom pattern names {sorted(clash)} are built-in pattern names")
        if not self.patterns and not self.custom:
            raise ValueError("no patterns to redact")
        for path in self.fields:
            parse_path(path)
        Redactor(self)  # a custom pattern RE2 cannot run is a config error here


class Redactor:
    """Finds the configured patterns in a text and returns it redacted (the same object when nothing matched)."""

    def __init__(self, config: RedactConfig) -> None:
        # Custom patterns first: where one and a built-in match at the same place, the user's wins, so a built-in
        # whose check fails there (a 16-digit number that is no card) does not hide the custom one (an account).
        sources = dict(config.custom) | {name: BUILTIN[name] for name in config.patterns}
        # Each pattern on its own, to tell which matched and where its secret is; all of them as one
        # alternation without captures, which RE2's DFA searches fastest, to find where anything matches.
        self.patterns: list[tuple[str, Any, int]] = []
        alternatives = []
        for name, pattern in sources.items():
            regex = compile_user_regex(pattern)
            self.patterns.append((name, regex._regexp.Match, regex.groupindex.get(SECRET, 0)))
            alternatives.append(f"(?:{regex.pattern.replace('(?P<secret>', '(?:')})")
        self.find = re2.compile("|".join(alternatives), _SEARCH_ONLY)._regexp.Match
        self.counts: Counter[str] = Counter()
        if config.mode == "hash":
            key = (config.hash_key or "").encode()

            def keyed_hash(name: str, value: bytes) -> str:
                digest = hmac.new(key, value, hashlib.sha256).hexdigest()
                return f"[{name}:{digest[:HASH_HEX_DIGITS]}]"

            self.stand_in: Callable[[str, bytes], str] = keyed_hash
        else:
            replacement = config.replacement
            self.stand_in = lambda name, value: replacement

    def __call__(self, text: str) -> str:
        data = utf8(text)
        end = len(data)
        start, stop = self.find(_UNANCHORED, data, 0, end)[0]
        if start < 0:
            return text
        out: list[bytes] = []
        at = 0
        while start >= 0:
            for name, match, secret in self.patterns:
                spans = match(_BOTH, data, start, stop)
                if spans[0][0] >= 0:
                    first, last = spans[secret] if spans[secret][0] >= 0 else spans[0]
                    check = CHECKS.get(name)
                    if last > first and (check is None or check(data[first:last].decode("utf-8", "replace"))):
                        out.append(data[at:first])
                        out.append(self.stand_in(name, data[first:last]).encode())
                        at = last
                        self.counts[name] += 1
                    break
            if stop >= end:
                break
            start, stop = self.find(_UNANCHORED, data, stop if stop > start else stop + 1, end)[0]
        if not out:
            return text
        out.append(data[at:])
        return b"".join(out).decode("utf-8", "surrogatepass")


@register("transform", "redact", RedactConfig, "Replaces or hashes personal data and secrets in text fields.")
class RedactTransform:
    """Redacts the configured fields (or every text value) of each event."""

    mutates = True

    def __init__(self, config: RedactConfig, ctx: BuildContext) -> None:
        self.config = config
        self.stats = ctx.stats
        self.redact = Redactor(config)
        self.paths = [parse_path(p) for p in config.fields]
        self.too_deep = 0

    def process(self, batch: Batch) -> Batch | None:
        if batch.kind is Kind.METRICS:
            return batch
        if batch.kind is Kind.LINES:
            if not self.paths or ("message",) in self.paths:
                batch.events = self._lines(batch.events)
        else:
            to_log_events(batch)
            if self.paths:
                self._fields(batch.events)
            else:
                for event in batch.events:
                    self._scrub_event(event)
        self._count()
        return batch

    def _lines(self, lines: list[bytes]) -> list[bytes]:
        redact, out = self.redact, []
        for line in lines:
            text = line.decode("utf-8", "replace")
            new = redact(text)
            out.append(line if new is text else new.encode())
        return out

    def _fields(self, events: list[dict[str, Any]]) -> None:
        redact = self.redact
        for event in events:
            for path in self.paths:
                value = get_field(event, path)
                if type(value) is str:
                    new = redact(value)
                    if new is not value:
                        own_parents(event, path)
                        set_field(event, path, new)
                elif value is not None:
                    new = self._scrub(value, 1)
                    if new is not value:
                        own_parents(event, path)
                        set_field(event, path, new)

    def _scrub_event(self, event: dict[str, Any]) -> None:
        changed = None
        for key, value in event.items():
            new = self.redact(value) if type(value) is str else self._scrub(value, 1)
            if new is not value:
                if changed is None:
                    changed = {}
                changed[key] = new
        if changed:
            event.update(changed)

    def _scrub(self, value: Any, depth: int) -> Any:
        """``value`` with its text redacted: the same object if nothing changed, else a changed copy."""
        kind = type(value)
        if kind is str:
            return self.redact(value)
        if kind is not dict and kind is not list:
            return value
        if depth > MAX_DEPTH:
            self.too_deep += 1
            return value
        if kind is dict:
            changed = None
            for key, item in value.items():
                new = self._scrub(item, depth + 1)
                if new is not item:
                    if changed is None:
                        changed = dict(value)
                    changed[key] = new
            return value if changed is None else changed
        copy = None
        for i, item in enumerate(value):
            new = self._scrub(item, depth + 1)
            if new is not item:
                if copy is None:
                    copy = list(value)
                copy[i] = new
        return value if copy is None else copy

    def _count(self) -> None:
        counts = self.redact.counts
        if counts:
            for name, n in counts.items():
                self.stats.count("redactions", n, pattern=name)
            counts.clear()
        if self.too_deep:
            self.stats.error("redact_too_deep", "processing", self.too_deep)
            self.too_deep = 0
