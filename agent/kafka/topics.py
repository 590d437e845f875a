"""Kafka topic names: what a broker accepts (letters, digits, '.', '_', '-'; at most 249; not '.' or '..')."""

from __future__ import annotations

import re

TOPIC_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
MAX_TOPIC_CHARS = 249


def is_topic_name(name: str) -> bool:
    """Whether a broker would accept ``name`` as a topic."""
    return bool(name) and len(name) <= MAX_TOPIC_CHARS and name not in (".", "..") and not TOPIC_UNSAFE.search(name)


def check_topic(name: str, key: str) -> None:
    """ValueError naming ``key`` and ``name`` unless a broker would accept ``name`` as a topic."""
    if not is_topic_name(name):
        raise ValueError(f"{key}: {name!r} is not a Kafka topic name (letters, digits, '.', '_', '-'; "
                         f"at most {MAX_TOPIC_CHARS}; not '.' or '..')")
