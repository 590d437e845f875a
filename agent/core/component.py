"""Contracts between the topology and its components.

A source runs until its context's ``shutdown`` is set (or its input ends),
sends batches to ``ctx.out`` (which awaits while downstream is full), and
before returning waits for outstanding acks and writes its checkpoint.

A function transform is a plain synchronous function over a batch. It may
return the same batch, a new one carrying the same acks, or None when it
dropped every event (it then finalizes the acks itself and counts the drop).

Any component may define ``async def start(self) -> None``: the topology calls
it for every component before any of them runs (consumers first), so a port
already in use or an unusable path ends start-up with one clear line (raise
:class:`~agent.core.errors.StartupError`) instead of a traceback mid-run.

A sink reads its inbox until ``get()`` returns None and finalizes every batch
it took exactly once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from agent.core.batch import Batch
from agent.observe.stats import ComponentStats


class Output(Protocol):
    """Where a source or transform sends its batches."""

    async def send(self, batch: Batch) -> None: ...


class Inbox(Protocol):
    """A component's input buffer, as its reader sees it."""

    async def get(self) -> Batch | None: ...

    def requeue(self, batch: Batch) -> None: ...

    @property
    def interrupted(self) -> bool: ...

    async def wait_interrupted(self) -> None: ...


@dataclass(slots=True)
class SourceContext:
    """What a running source is handed."""

    id: str
    out: Output
    shutdown: asyncio.Event
    data_dir: Path
    stats: ComponentStats
    acknowledgements: bool  # some sink downstream wants end-to-end acks


@dataclass(slots=True)
class SinkContext:
    """What a running sink is handed; at the shutdown deadline its task is cancelled."""

    id: str
    inbox: Inbox
    stats: ComponentStats


class Source(Protocol):
    """A component that produces batches."""

    output_type: ClassVar[str]  # "logs" | "metrics"

    async def run(self, ctx: SourceContext) -> None: ...


class FunctionTransform(Protocol):
    """A stateless, synchronous step over a batch."""

    mutates: ClassVar[bool]  # changes dict events in place: fan-out copies for it

    def process(self, batch: Batch) -> Batch | None: ...


class Sink(Protocol):
    """A component that delivers batches somewhere."""

    input_types: ClassVar[frozenset[str]]
    # Optional ``mutates: ClassVar[bool]``: it changes dict events in place (fan-out copies for it).

    async def healthcheck(self) -> None: ...

    async def run(self, ctx: SinkContext) -> None: ...


Component = Any  # Source | FunctionTransform | Sink
