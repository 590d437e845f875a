"""Sink `console`: events on stdout or stderr, as JSON lines or text."""

from __future__ import annotations

import sys
from typing import ClassVar, Literal

from agent.codecs.encoding import encode_batch
from agent.config.model import SinkConfig
from agent.config.registry import BuildContext, register
from agent.core.batch import Batch
from agent.core.component import SinkContext
from agent.core.errors import PermanentError
from agent.sinks.delivery import deliver_each


class ConsoleConfig(SinkConfig, tag="console"):
    """Print events; ``encoding: json`` writes one JSON object per line, ``text`` the message."""

    input_types: ClassVar[frozenset[str]] = frozenset({"logs", "metrics"})
    target: Literal["stdout", "stderr"] = "stdout"
    encoding: Literal["json", "text"] = "json"


@register("sink", "console", ConsoleConfig, "Prints events to stdout or stderr.")
class ConsoleSink:
    """Writes each batch to a standard stream and flushes it."""

    input_types = ConsoleConfig.input_types

    def __init__(self, config: ConsoleConfig, ctx: BuildContext) -> None:
        self.config = config

    async def healthcheck(self) -> None:
        return None

    async def _write(self, batch: Batch) -> int:
        stream = sys.stdout if self.config.target == "stdout" else sys.stderr
        data = encode_batch(batch, self.config.encoding)
        try:
            stream.buffer.write(data)
            stream.buffer.flush()
        except BrokenPipeError:  # nobody reads any more (`agent run | head`): retrying cannot help
            raise PermanentError(f"{self.config.target} is closed") from None
        return len(data)

    async def run(self, ctx: SinkContext) -> None:
        await deliver_each(ctx, self._write)
