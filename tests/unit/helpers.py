"""Running one component in-process against a real topology."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from agent.config.pipeline import Pipeline, load_texts


def pipeline(text: str, tmp_path: Path, shutdown_timeout: str = "5s") -> Pipeline:
    head = f"data_dir: {tmp_path}/data\napi: {{enabled: false}}\nshutdown_timeout: {shutdown_timeout}\n"
    return load_texts([(head + text, "test.yaml")])


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
