"""Source `stdin`: lines from standard input until end of file."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Callable
from typing import BinaryIO

from agent.codecs.lines import LineSplitter
from agent.config.model import SourceConfig
from agent.config.registry import BuildContext, register
from agent.config.units import ByteSize
from agent.core.batch import Batch, Kind
from agent.core.component import SourceContext


class StdinConfig(SourceConfig, tag="stdin"):
    """Read newline-delimited lines from stdin (a pipe, a file or a terminal).

    At end of input the agent drains what it read to the sinks and exits.
    """

    max_line_bytes: ByteSize = ByteSize(256 * 1024)
    """Longer lines are cut to this size, marked truncated: true and counted."""
    read_bytes: ByteSize = ByteSize(1024 * 1024)
    """Bytes read from stdin at a time."""


@register("source", "stdin", StdinConfig, "Reads lines from standard input.")
class StdinSource:
    """Reads stdin in a daemon thread (a pipe, file or terminal alike) and emits LINES batches."""

    output_type = "logs"

    def __init__(self, config: StdinConfig, ctx: BuildContext, stream: BinaryIO | None = None) -> None:
        self.config = config
        self.stream = stream

    async def run(self, ctx: SourceContext) -> None:
        stream: BinaryIO | int = self.stream if self.stream is not None else sys.stdin.fileno()
        splitter = LineSplitter(self.config.max_line_bytes)
        chunks: asyncio.Queue[bytes] = asyncio.Queue(maxsize=2)  # bounded: the reader thread waits
        loop = asyncio.get_running_loop()
        threading.Thread(target=_pump, args=(stream, self.config.read_bytes, chunks, loop),
                         name=f"stdin-{ctx.id}", daemon=True).start()  # daemon: never holds up exit
        stop = asyncio.ensure_future(ctx.shutdown.wait())
        try:
            while True:
                read = asyncio.ensure_future(chunks.get())
                await asyncio.wait([read, stop], return_when=asyncio.FIRST_COMPLETED)
                if not read.done():
                    read.cancel()
                    return
                chunk = read.result()
                lines = splitter.feed(chunk) if chunk else splitter.flush()
                if splitter.truncated:
                    ctx.stats.error("line_truncated", "receiving", splitter.truncated)
                    splitter.truncated = 0
                if lines:
                    ctx.stats.received_events += len(lines)
                    ctx.stats.received_bytes += len(chunk)
                    await ctx.out.send(Batch(lines, Kind.LINES, len(chunk) or sum(map(len, lines))))
                if not chunk or stop.done():
                    return
        finally:
            stop.cancel()


def _pump(stream: BinaryIO | int, size: int, chunks: asyncio.Queue[bytes], loop: asyncio.AbstractEventLoop) -> None:
    """Thread body: read chunks and hand them to the loop, waiting while the queue is full.

    Standard input is read from its file descriptor, not through ``sys.stdin.buffer``:
    a daemon thread blocked inside a BufferedReader holds that reader's lock, and the
    interpreter aborts at exit when it finds the lock taken.
    """
    read: Callable[[int], bytes]
    if isinstance(stream, int):
        fd = stream
        read = lambda n: os.read(fd, n)  # noqa: E731
    else:
        read = getattr(stream, "read1", stream.read)
    while True:
        try:
            chunk = read(size)
        except (OSError, ValueError):
            chunk = b""
        try:
            asyncio.run_coroutine_threadsafe(chunks.put(chunk), loop).result()
        except RuntimeError:  # the loop is gone
            return
        if not chunk:
            return
