"""Running one component in-process against a real topology."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.config.pipeline import Pipeline, load_texts
from agent.core.ack import AckStatus
from agent.core.batch import Batch


def pipeline(text: str, tmp_path: Path, shutdown_timeout: str = "5s") -> Pipeline:
    head = f"data_dir: {tmp_path}/data\napi: {{enabled: false}}\nshutdown_timeout: {shutdown_timeout}\n"
    return load_texts([(head + text, "test.yaml")])


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


class Deliver:
    """A source output whose sink delivers everything at once."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    async def send(self, batch: Batch) -> None:
        self.events += batch.events
        batch.finalize(AckStatus.DELIVERED)
