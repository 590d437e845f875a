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
        self._watched: dict[str, int] = {}  # directory -> inotify watch descriptor (-1: polled only)
        self._inotify = None
        self._ignored = 0  # the IN_IGNORED flag: the kernel dropped a watch
        if not use_inotify:
            return
        try:
            from inotify_simple import INotify, flags

            self._ignored = flags.IGNORED
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
            self._watched[directory] = self._inotify.add_watch(directory, mask)
        except OSError as exc:  # ENOSPC: the watch limit; polling still covers this directory
            log.warning("cannot watch directory; polling it", extra={"directory": directory, "error": str(exc)})
            self._watched[directory] = -1

    def retain(self, directories: set[str]) -> None:
        """Stop watching every directory not in ``directories`` (none of its files is tailed any more)."""
        gone = {self._watched.pop(directory) for directory in list(self._watched) if directory not in directories}
        if self._inotify is None:
            return
        for wd in gone - {-1} - set(self._watched.values()):  # two names of one directory share a watch
            try:
                self._inotify.rm_watch(wd)
            except OSError:  # the directory was deleted: the kernel dropped its watch already
                pass

    def _on_readable(self) -> None:
        assert self._inotify is not None
        try:
            events = self._inotify.read(timeout=0)
        except BlockingIOError:
            events = []
        ignored = {event.wd for event in events if event.mask & self._ignored}
        if ignored:  # the kernel dropped these watches (the directory was deleted): forget them too
            self._watched = {d: wd for d, wd in self._watched.items() if wd not in ignored}
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
