"""One output feeding the buffers of all of a component's consumers."""

from __future__ import annotations

from agent.buffers.memory import MemoryBuffer
from agent.core.ack import AckStatus
from agent.core.batch import Batch
from agent.observe.stats import ComponentStats
from agent.observe.tap import Taps
from agent.topology.memory import MemoryGate


class Fanout:
    """Sends each batch to every consumer's buffer, in turn.

    Each extra consumer holds its own reference on the batch's acks. Dict
    events are copied only for consumers that mutate them, and only when some
    other consumer reads the same events. A full buffer makes ``send`` wait:
    one slow consumer stalls its producer only once its own buffer is full.
    """

    def __init__(self, stats: ComponentStats, gate: MemoryGate | None = None) -> None:
        self.stats = stats
        self.taps = Taps()
        self.gate = gate  # a source's output: waits while memory_limit's budget is used up
        self._targets: list[tuple[MemoryBuffer, bool]] = []
        self.shared = False  # its batches may share dict events with another output's: copy for every mutator

    def set_targets(self, targets: list[tuple[MemoryBuffer, bool]]) -> None:
        """Replace the consumers (buffer, mutates); sends already under way finish on the old list."""
        self._targets = list(targets)

    async def send(self, batch: Batch) -> None:
        if self.gate is not None:
            await self.gate.wait_open()
        stats = self.stats
        stats.sent_events += len(batch.events)
        stats.sent_bytes += batch.byte_size
        if self.taps:
            self.taps.offer(batch)
        targets = self._targets
        if len(targets) == 1 and not self.shared:
            await targets[0][0].put(batch)
            return
        if not targets:
            stats.discard("no_consumer", len(batch.events))
            batch.finalize(AckStatus.DELIVERED)
            return
        batch.retain(len(targets) - 1)
        copies = self._copies_needed(batch)
        for index, (buffer, _) in enumerate(targets):
            if index in copies:
                part = batch.copy_for_mutation()
            else:
                part = Batch(batch.events, batch.kind, batch.byte_size, list(batch.acks))
            await buffer.put(part)

    def _copies_needed(self, batch: Batch) -> set[int]:
        if batch.kind.is_raw:
            return set()
        mutators = [i for i, (_, mutates) in enumerate(self._targets) if mutates]
        if len(mutators) == len(self._targets) and not self.shared:
            return set(mutators[:-1])  # the last mutator may take the original
        return set(mutators)
