"""Kafka's default partitioner for keyed records (the Java client's murmur2), so every client agrees."""

from __future__ import annotations

from aiokafka.partitioner import murmur2

MAX_CACHED_KEYS = 65_536


class KeyPartitioner:
    """``partition(key, count)``: ``toPositive(murmur2(key)) % count``, as Java's DefaultPartitioner.

    The pure-Python murmur2 costs about 3 us a key; keys repeat (a pod, a tenant), so hashes are cached, and
    the cache is emptied when it holds :data:`MAX_CACHED_KEYS`.
    """

    __slots__ = ("_hashes",)

    def __init__(self) -> None:
        self._hashes: dict[bytes, int] = {}

    def partition(self, key: bytes, count: int) -> int:
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= MAX_CACHED_KEYS:
                self._hashes.clear()
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return hashed % count
