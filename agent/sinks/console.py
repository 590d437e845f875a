"""Sink `console`: events on stdout or stderr, as JSON lines or text.

The writing happens in a thread of the sink's own, which the sink awaits: a
reader that stops reading (a paused terminal, a pipe nobody drains) holds
this sink back, and through its buffer the sources, but never the event loop,
so the API and the other sinks carry on. The thread is a daemon and writes to
the file descriptor itself (no Python buffer lock), so the agent can still
exit while a write is stuck.
"""

from __future__ import annotations

import asyncio
import io
import os
import sys
import threading
from queue import SimpleQueue
from typing import IO, ClassVar, Literal

from agent.codecs.encoding import encode_batch
from agent.config.model import SinkConfig
from agent.config.registry import BuildContext, register
from agent.core.batch import Batch
from agent.core.component import SinkContext
from agent.core.errors import PermanentError
from agent.sinks.delivery import deliver_each


class ConsoleConfig(SinkConfig, tag="console"):
    """Print events to stdout or stderr: one JSON object per line, or the message as text.

    Writes happen off the event loop: a terminal or pipe that stops reading slows only this sink (and, through its
    buffer, the sources), never the API or other sinks.
    """

    input_types: ClassVar[frozenset[str]] = frozenset({"logs", "metrics"})
    target: Literal["stdout", "stderr"] = "stdout"
    """The stream written to: stdout or stderr."""
    encoding: Literal["json", "text"] = "json"
    """json: one JSON object per line; text: the message per line."""


_Job = tuple[bytes, asyncio.AbstractEventLoop, "asyncio.Future[None]"]


class StreamWriter:
    """Writes byte strings to a file descriptor from a daemon thread; :meth:`write` awaits each write's end."""

    def __init__(self, fd: int, name: str) -> None:
        self.fd = fd
        self._jobs: SimpleQueue[_Job | None] = SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=f"console-{name}", daemon=True)
        self._thread.start()

    async def write(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._jobs.put((data, loop, done))
        await done

    def close(self) -> None:
        """Let the thread end once the writes queued before this one are done."""
        self._jobs.put(None)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            data, loop, done = job
            error: OSError | None = None
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self.fd, view):]
            except OSError as exc:
                error = exc
            try:
                loop.call_soon_threadsafe(_settle, done, error)
            except RuntimeError:  # the loop is closed: nobody waits any more
                return


def _settle(done: asyncio.Future[None], error: OSError | None) -> None:
    if done.done():  # cancelled at the shutdown deadline
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


def _fileno(stream: IO[str]) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):  # replaced by an in-memory stream (tests)
        return None


@register("sink", "console", ConsoleConfig, "Prints events to stdout or stderr.")
class ConsoleSink:
    """Writes each batch to a standard stream, off the event loop."""

    input_types = ConsoleConfig.input_types

    def __init__(self, config: ConsoleConfig, ctx: BuildContext) -> None:
        self.config = config
        self._writer: StreamWriter | None = None

    async def healthcheck(self) -> None:
        return None

    async def _write(self, batch: Batch) -> int:
        data = encode_batch(batch, self.config.encoding)
        try:
            if self._writer is not None:
                await self._writer.write(data)
            else:  # an in-memory stream cannot stall
                stream = sys.stdout if self.config.target == "stdout" else sys.stderr
                stream.buffer.write(data)
                stream.buffer.flush()
        except BrokenPipeError:  # nobody reads any more (`agent run | head`): retrying cannot help
            raise PermanentError(f"{self.config.target} is closed") from None
        return len(data)

    async def run(self, ctx: SinkContext) -> None:
        stream = sys.stdout if self.config.target == "stdout" else sys.stderr
        fd = _fileno(stream)
        if fd is not None:
            self._writer = StreamWriter(fd, ctx.id)
        try:
            await deliver_each(ctx, self._write)
        finally:
            if self._writer is not None:
                self._writer.close()
