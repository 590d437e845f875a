"""Waking the tail loop when watched directories change (inotify), or after a poll interval."""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("agent.sources.tail")


class Wakeup:
    """An event set by inotify activity in watched directories; polling covers what inotify misses.

    Without inotify (another kernel, the watch limit reached) waiting is plain
    polling, which is always correct, only slower to notice new lines.
    """

    def __init__(self, use_inotify: bool) -> None:
        self._event = asyncio.Event()
        self._watched: set[str] = set()
        self._inotify = None
        if not use_inotify:
            return
        try:
            from inotify_simple import INotify

            self._inotify = INotify(nonblocking=True)
            asyncio.get_running_loop().add_reader(self._inotify.fileno(), self._on_readable)
        except (ImportError, OSError) as exc:
            log.info("inotify unavailable; polling", extra={"error": str(exc)})
            self._inotify = None

    def watch(self, directory: str) -> None:
        if self._inotify is None or directory in self._watched:
            return
        from inotify_simple import flags

        mask = flags.MODIFY | flags.CREATE | flags.MOVED_TO | flags.MOVED_FROM | flags.DELETE | flags.CLOSE_WRITE
        try:
            self._inotify.add_watch(directory, mask)
            self._watched.add(directory)
        except OSError as exc:  # ENOSPC: the watch limit; polling still covers this directory
            log.warning("cannot watch directory; polling it", extra={"directory": directory, "error": str(exc)})
            self._watched.add(directory)

    def _on_readable(self) -> None:
        assert self._inotify is not None
        try:
            self._inotify.read(timeout=0)
        except BlockingIOError:
            pass
        self._event.set()

    async def wait(self, seconds: float, stop: asyncio.Event) -> None:
        """Return on inotify activity, ``stop``, or after ``seconds``."""
        if stop.is_set():
            return
        waiters = [asyncio.ensure_future(self._event.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        self._event.clear()

    def close(self) -> None:
        if self._inotify is not None:
            asyncio.get_running_loop().remove_reader(self._inotify.fileno())
            self._inotify.close()
            self._inotify = None
