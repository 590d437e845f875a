"""Sink `socket`: newline-delimited events over TCP, reconnecting when the peer goes away."""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from agent.codecs.encoding import encode_batch
from agent.config.model import SinkConfig
from agent.config.registry import BuildContext, register
from agent.config.units import Duration
from agent.core.batch import Batch
from agent.core.component import SinkContext
from agent.core.errors import HealthcheckError, RetryableError
from agent.sinks.delivery import deliver_each
from agent.sources.socket import split_address

log = logging.getLogger("agent.sinks.socket")


class SocketSinkConfig(SinkConfig, tag="socket"):
    """Send events to ``address`` (host:port) over TCP, one per line.

    Keeps one connection; a failed write closes it and the batch is sent again on a new one, with backoff.
    """

    address: str
    """host:port to connect to."""
    mode: Literal["tcp"] = "tcp"
    """tcp (the only mode for now)."""
    encoding: Literal["json", "text"] = "json"
    """json: one JSON object per line; text: the message per line."""
    connect_timeout: Duration = Duration(5.0)
    """How long a connection attempt may take before it is retried."""
    write_timeout: Duration = Duration(30.0)
    """How long a write may wait for the peer to read before the connection is closed and the batch sent again on a new
    one.
    """


@register("sink", "socket", SocketSinkConfig, "Sends newline-delimited events over TCP.")
class SocketSink:
    """Keeps one connection; a failed write closes it and the batch is sent again on a new one."""

    input_types = SocketSinkConfig.input_types

    def __init__(self, config: SocketSinkConfig, ctx: BuildContext) -> None:
        self.config = config
        self.host, self.port = split_address(config.address)
        self._writer: asyncio.StreamWriter | None = None

    async def healthcheck(self) -> None:
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                _, writer = await asyncio.open_connection(self.host, self.port)
        except (OSError, TimeoutError) as exc:
            raise HealthcheckError(f"cannot connect to {self.config.address}: {exc}") from None
        writer.close()

    async def _connect(self) -> asyncio.StreamWriter:
        if self._writer is None or self._writer.is_closing():
            try:
                async with asyncio.timeout(self.config.connect_timeout):
                    _, self._writer = await asyncio.open_connection(self.host, self.port)
            except (OSError, TimeoutError) as exc:
                raise RetryableError(f"connect to {self.config.address} failed: {exc}") from None
        return self._writer

    async def _write(self, batch: Batch) -> int:
        data = encode_batch(batch, self.config.encoding)
        writer = await self._connect()
        try:
            writer.write(data)
            async with asyncio.timeout(self.config.write_timeout):
                await writer.drain()
        except (OSError, TimeoutError) as exc:
            writer.close()
            self._writer = None
            raise RetryableError(f"write to {self.config.address} failed: {exc or type(exc).__name__}") from None
        return len(data)

    async def run(self, ctx: SinkContext) -> None:
        try:
            await deliver_each(ctx, self._write)
        finally:
            if self._writer is not None:
                self._writer.close()
