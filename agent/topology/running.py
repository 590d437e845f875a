"""The running pipeline: start, drain on stop, and swap changed components on reload.

Every transform and sink owns one bounded input buffer (its inbox); every
source and transform owns a :class:`Fanout` to its consumers' inboxes. All
component tasks live in one TaskGroup, each under a supervisor: a component
that raises is logged, counted (``component_crashed``), rebuilt from its config
and restarted with backoff, keeping its inbox and the batches it had taken but
not finished; meanwhile ``/health`` names it as degraded. Only a fault in the
topology itself ends the agent.

Start: every component's optional ``start()`` (binding a port, say) runs before
any component does, so a start-up failure is one line and exit 1.

Stop: sources are told to stop; each transform or sink's inbox is closed once
all of its inputs have finished, so it drains what is queued and returns.
Whatever is still running at ``shutdown_timeout`` is cancelled, named in the
log, and its queued events are counted as discarded (and not acknowledged, so
sources replay them after a restart).

Reload: refused once a stop has begun (the drain would never close inboxes
added after it started); a stop that arrives during a reload waits for it.
Components whose config changed (wiring aside) are replaced; the
rest keep running. A replaced transform or sink keeps its inbox: the old
instance is interrupted after the batch in hand, the new one reads on from
the same queue, so nothing in flight is lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.buffers.memory import MemoryBuffer
from agent.config.graph import named_outputs
from agent.config.pipeline import ComponentDecl, Pipeline
from agent.config.registry import BuildContext, lookup
from agent.core.ack import AckStatus
from agent.core.component import SinkContext, SourceContext
from agent.core.errors import EXIT_FAILURE, EXIT_OK, AgentError, BuildError, StartupError
from agent.core.retry import Backoff
from agent.observe.stats import ComponentStats, StatsRegistry
from agent.topology.fanout import Fanout
from agent.topology.flush import Flusher
from agent.topology.memory import MemoryGate
from agent.topology.routing import run_router

log = logging.getLogger("agent.topology")

RESTART_BACKOFF = (0.5, 30.0)  # first and longest wait before a crashed component is restarted
HEALTHY_AFTER = 60.0  # a component that ran this long before crashing restarts with the shortest wait again
DRAIN_RESTART_WAIT = 1.0  # the longest restart wait while the agent drains (shutdown_timeout is running)
POISON_CRASHES = 3  # crashes in a row with the same batch first in hand: that batch is given up, counted
DEGRADED_FOR = 300.0  # seconds a component counts as degraded after its last crash
START_OUTCOME_WAIT = 2.0  # how long a reload waits to report components that could not start


@dataclass(slots=True)
class Node:
    """One running component and the buffers around it."""

    decl: ComponentDecl
    component: Any
    stats: ComponentStats
    inbox: MemoryBuffer | None = None
    output: Fanout | None = None
    named: dict[str, Fanout] = field(default_factory=dict)  # instead of ``output``: a router's outputs by name
    task: asyncio.Task[None] | None = None
    shutdown: asyncio.Event = field(default_factory=asyncio.Event)
    crashes: int = 0
    last_crash: float = 0.0  # time.time() of the last crash
    last_error: str = ""
    restarting: bool = False  # waiting out its restart backoff
    start_outcome: asyncio.Future[str | None] | None = None  # after a reload: None once started, else why not
    suspect: Any = None  # the batch first in hand at the last crash
    suspect_crashes: int = 0

    @property
    def id(self) -> str:
        return self.decl.id

    @property
    def kind(self) -> str:
        return self.decl.kind

    def outputs(self) -> list[tuple[str, Fanout]]:
        """Each output with the id inputs name it by: the component's id, or ``<id>.<name>``."""
        if self.output is not None:
            return [(self.id, self.output)]
        return [(f"{self.id}.{name}", fanout) for name, fanout in self.named.items()]


def build_component(decl: ComponentDecl, data_dir: Path, stats: ComponentStats) -> Any:
    """Build one component from its checked config; factory failures become BuildError."""
    ctype = lookup(decl.kind, decl.type)
    assert ctype is not None
    ctx = BuildContext(decl.id, data_dir, Path(decl.file).parent, stats)
    try:
        return ctype.build(decl.config, ctx)
    except BuildError as exc:
        raise BuildError(f"{decl.file}: {decl.kind} \"{decl.id}\": {exc}") from None


def _settle(outcome: asyncio.Future[str | None] | None, value: str | None) -> None:
    if outcome is not None and not outcome.done():
        outcome.set_result(value)


async def start_component(decl: ComponentDecl, component: Any) -> None:
    """Run the component's optional ``start()``; any failure becomes a one-line StartupError."""
    start = getattr(component, "start", None)
    if start is None:
        return
    try:
        await start()
    except StartupError:
        raise
    except Exception as exc:
        raise StartupError(f'{decl.kind} "{decl.id}" could not start: {exc}') from None


class Topology:
    """A pipeline that runs until stopped, or until all of its sources have finished."""

    def __init__(self, pipeline: Pipeline, stats: StatsRegistry) -> None:
        self.pipeline = pipeline
        self.stats = stats
        self.nodes: dict[str, Node] = {}
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._swapping = 0
        self._lock = asyncio.Lock()
        self._timed_out: list[str] = []
        self.start_failures: dict[str, str] = {}  # after the last reload: components that could not start
        limit = pipeline.root.memory_limit
        self.memory = None if limit is None else MemoryGate(int(limit), self._inboxes)

    @property
    def data_dir(self) -> Path:
        return Path(self.pipeline.root.data_dir)

    # -- building -------------------------------------------------------------------------

    def _make_node(self, decl: ComponentDecl) -> Node:
        stats = self.stats.get(decl.id, decl.kind, decl.type)
        node = Node(decl, build_component(decl, self.data_dir, stats), stats)
        names = named_outputs(decl.config)
        if names is not None:
            node.named = {name: Fanout(stats) for name in names}
        elif decl.kind != "sink":
            node.output = Fanout(stats, self.memory if decl.kind == "source" else None)
        if decl.kind != "source":
            buf = decl.config.buffer
            node.inbox = MemoryBuffer(buf.max_events, int(buf.max_bytes), buf.when_full, stats)
        return node

    def _wire(self) -> None:
        """Point every output at its consumers' inboxes, per the current graph."""
        for node in self.nodes.values():
            self._wire_node(node)

    def _wire_node(self, node: Node) -> None:
        consumers = self.pipeline.graph.consumers
        shared = bool(getattr(node.component, "shares_events", False))
        for output_id, fanout in node.outputs():
            targets = []
            for consumer in consumers.get(output_id, []):
                cnode = self.nodes[consumer]
                assert cnode.inbox is not None
                targets.append((cnode.inbox, self._mutates(cnode)))
            fanout.shared = shared
            fanout.set_targets(targets)

    def _mutates(self, node: Node) -> bool:
        """Whether ``node`` may change the dict events sent to it: it does, or it is a transform that passes
        them on (a filter, a route) to a component that may."""
        if getattr(node.component, "mutates", False):
            return True
        consumers = self.pipeline.graph.consumers
        return node.kind == "transform" and any(
            self._mutates(self.nodes[consumer]) for output_id, _ in node.outputs()
            for consumer in consumers.get(output_id, []))

    # -- running --------------------------------------------------------------------------

    def _start(self, node: Node, started: bool = False) -> None:
        """Run ``node`` under its supervisor; ``started``: its ``start()`` has already run."""
        assert self._tg is not None
        if not started:
            node.start_outcome = asyncio.get_running_loop().create_future()
        if node.kind == "source":
            node.shutdown = asyncio.Event()
        elif node.kind == "sink":
            assert node.inbox is not None
            node.inbox.track_in_hand = True
        node.task = self._tg.create_task(self._supervise(node, started), name=node.id)
        if node.kind == "source":
            node.task.add_done_callback(self._source_finished)

    def _run_component(self, node: Node) -> Coroutine[Any, Any, None]:
        if node.kind == "source":
            wants_acks = True
            ctx = SourceContext(node.id, node.output, node.shutdown, self.data_dir, node.stats, wants_acks)  # type: ignore[arg-type]
            return node.component.run(ctx)  # type: ignore[no-any-return]
        if node.kind == "transform":
            return self._run_transform(node)
        return node.component.run(SinkContext(node.id, node.inbox, node.stats))  # type: ignore[arg-type,no-any-return]

    async def _supervise(self, node: Node, started: bool) -> None:
        """Run one component until it returns; after an unexpected exception, rebuild and restart it."""
        backoff = Backoff(*RESTART_BACKOFF)
        while True:
            began = time.monotonic()
            try:
                if node.crashes:
                    node.component = build_component(node.decl, self.data_dir, node.stats)
                if not started:
                    await start_component(node.decl, node.component)
                _settle(node.start_outcome, None)
                await self._run_component(node)
                return
            except Exception as exc:  # contained: one component's fault never ends the agent
                _settle(node.start_outcome, str(exc))
                if time.monotonic() - began >= HEALTHY_AFTER:
                    backoff.reset()
                wait = backoff.next()
                self._crashed(node, exc, wait)
            started = False
            node.restarting = True
            try:
                if not await self._restart_wait(node, wait):
                    return
            finally:
                node.restarting = False

    def _crashed(self, node: Node, exc: Exception, wait: float) -> None:
        node.crashes += 1
        node.last_crash = time.time()
        node.last_error = f"{type(exc).__name__}: {exc}"[:500]
        node.stats.error("component_crashed", "running")
        held = node.inbox.take_in_hand() if node.inbox is not None else []
        given_up = self._give_up_poison(node, held)
        assert node.inbox is not None or not held
        for batch in reversed(held):
            node.inbox.requeue(batch)  # type: ignore[union-attr]
        log.error("component crashed; restarting it", exc_info=exc, extra={
            "component_id": node.id, "component_kind": node.kind, "crashes": node.crashes,
            "restart_in_s": round(wait, 3), "requeued_events": sum(len(b.events) for b in held),
            "given_up_events": given_up})

    @staticmethod
    def _give_up_poison(node: Node, held: list[Any]) -> int:
        """A batch first in hand at POISON_CRASHES crashes in a row is what crashes the component: drop it, counted.

        Retrying it for ever would wedge the sink and, through backpressure, every source feeding it.
        It is acknowledged REJECTED (like a peer's refusal), so the source moves on; the loss is counted in
        ``agent_component_discarded_events_total{reason="crashed_component"}`` and logged.
        """
        if not held:
            node.suspect, node.suspect_crashes = None, 0
            return 0
        if held[0] is node.suspect:
            node.suspect_crashes += 1
        else:
            node.suspect, node.suspect_crashes = held[0], 1
        if node.suspect_crashes < POISON_CRASHES:
            return 0
        batch = held.pop(0)
        node.suspect, node.suspect_crashes = None, 0
        node.stats.discard("crashed_component", len(batch.events))
        log.error("a batch crashed the component %d times in a row; it is dropped", POISON_CRASHES, extra={
            "component_id": node.id, "events": len(batch.events), "error": node.last_error})
        batch.finalize(AckStatus.REJECTED)
        return len(batch.events)

    @staticmethod
    async def _restart_wait(node: Node, wait: float) -> bool:
        """Sleep out the backoff; False if the component was told to stop meanwhile (source) or replaced."""
        if node.inbox is not None and node.inbox.closed:
            wait = min(wait, DRAIN_RESTART_WAIT)  # draining: shutdown_timeout is running
        waiter: Coroutine[Any, Any, Any]
        if node.kind == "source":
            waiter = node.shutdown.wait()
        else:
            assert node.inbox is not None
            waiter = node.inbox.wait_interrupted()
        stop = asyncio.ensure_future(waiter)
        try:
            await asyncio.wait([stop], timeout=wait)
        finally:
            stop.cancel()
        if node.kind == "source":
            return not node.shutdown.is_set()
        assert node.inbox is not None
        return not node.inbox.interrupted

    def _inboxes(self) -> list[MemoryBuffer]:
        return [node.inbox for node in self.nodes.values() if node.inbox is not None]

    def degraded(self) -> list[dict[str, Any]]:
        """Components that crashed in the last DEGRADED_FOR seconds or are waiting to restart."""
        now = time.time()
        return [{"id": n.id, "kind": n.kind, "type": n.decl.type, "crashes": n.crashes,
                 "restarting": n.restarting, "last_error": n.last_error,
                 "last_crash_s_ago": round(now - n.last_crash, 1)}
                for n in self.nodes.values() if n.restarting or (n.crashes and now - n.last_crash < DEGRADED_FOR)]

    def _source_finished(self, _task: asyncio.Task[None] | None) -> None:
        if self._swapping or self._stop.is_set():
            return
        sources = [n for n in self.nodes.values() if n.kind == "source"]
        if sources and all(n.task is not None and n.task.done() for n in sources):
            log.info("all sources finished; draining")
            self._stop.set()

    @staticmethod
    async def _run_transform(node: Node) -> None:
        if node.named:
            assert node.inbox is not None
            return await run_router(node.id, node.component, node.inbox, node.named, node.stats)
        flusher = Flusher.start(node.id, node.component, node.output, node.stats)  # type: ignore[arg-type]
        if flusher is None:
            return await Topology._transform_loop(node)
        try:
            await Topology._transform_loop(node, flusher.lock)
        except Exception:  # a crash: what it holds goes on before the rebuilt component takes over
            flusher.cancel()
            try:
                await flusher.flush()
            except Exception:
                log.exception("the last flush of a crashed transform failed", extra={"component_id": node.id})
            raise
        except BaseException:  # cancelled at the shutdown deadline: no more waiting
            flusher.cancel()
            raise
        flusher.cancel()
        await flusher.flush()  # the input ended, or a reload replaces it: what it holds goes out

    @staticmethod
    async def _transform_loop(node: Node, lock: asyncio.Lock | None = None) -> None:
        """``lock``: its Flusher's, held from ``process()`` to the send (batches leave in the order made)."""
        inbox, out, transform, stats = node.inbox, node.output, node.component, node.stats
        assert inbox is not None and out is not None
        while (batch := await inbox.get()) is not None:
            stats.received_events += len(batch.events)
            stats.received_bytes += batch.byte_size
            if lock is not None:
                await lock.acquire()
            try:
                try:
                    result = transform.process(batch)
                except Exception:  # a bug must not lose the batch: pass it on untouched
                    log.exception("transform failed; batch passed on unchanged", extra={"component_id": node.id})
                    stats.error("transform_failed", "processing")
                    result = batch
                if result is None:
                    continue
                if result.events:
                    await out.send(result)
                else:
                    result.finalize(AckStatus.DELIVERED)
            finally:
                if lock is not None:
                    lock.release()

    async def run(self) -> int:
        """Start every component, run until stopped, drain; returns the exit code."""
        for cid in self.pipeline.graph.order:
            self.nodes[cid] = self._make_node(self.pipeline.components[cid])
        self._wire()
        for cid in reversed(self.pipeline.graph.order):  # consumers first; StartupError ends start-up
            await start_component(self.nodes[cid].decl, self.nodes[cid].component)
        if self.memory is not None:
            self.memory.start()
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            for cid in reversed(self.pipeline.graph.order):  # consumers first
                self._start(self.nodes[cid], started=True)
            self.ready.set()
            await self._stop.wait()
            await self._drain()
        self.ready.clear()
        log.info("pipeline stopped", extra={"components": {
            n.id: {"received_events": n.stats.received_events, "sent_events": n.stats.sent_events,
                   "discarded_events": sum(n.stats.discarded.values())} for n in self.nodes.values()}})
        if self._timed_out:
            return EXIT_FAILURE
        return EXIT_OK

    def request_stop(self) -> None:
        self._stop.set()

    async def _drain(self) -> None:
        timeout = float(self.pipeline.root.shutdown_timeout)
        try:
            async with asyncio.timeout(timeout), self._lock:  # a reload under way finishes first
                for node in self.nodes.values():
                    if node.kind == "source":
                        node.shutdown.set()
                    elif (draining := getattr(node.component, "draining", None)) is not None:
                        draining()  # a transform holding batches lets them go: the sources wait for their acks
                await asyncio.gather(*(self._close_when_inputs_done(n) for n in self.nodes.values()
                                       if n.kind != "source"))
                for node in self.nodes.values():
                    await self._wait_task(node)
        except TimeoutError:
            self._hard_stop(timeout)

    async def _close_when_inputs_done(self, node: Node) -> None:
        for upstream in self.pipeline.graph.inputs[node.id]:
            await self._wait_task(self.nodes[upstream])  # a transform finishes only after its own inputs
        assert node.inbox is not None
        node.inbox.close()

    @staticmethod
    async def _wait_task(node: Node) -> None:
        if node.task is not None:
            await asyncio.wait([node.task])

    def _hard_stop(self, timeout: float) -> None:
        running = [n for n in self.nodes.values() if n.task is not None and not n.task.done()]
        self._timed_out = [n.id for n in running]
        lost = 0
        for node in running:
            assert node.task is not None
            node.task.cancel(msg="shutdown_timeout exceeded")
        for node in self.nodes.values():
            if node.inbox is not None:
                lost += node.inbox.drain_discarding("shutdown_timeout")
        log.error("components did not finish within shutdown_timeout; cancelled",
                  extra={"components": self._timed_out, "timeout_s": timeout, "queued_events_discarded": lost})

    # -- reload ---------------------------------------------------------------------------

    async def reload(self, new: Pipeline) -> list[str]:
        """Swap to ``new``, restarting only changed components; returns the ids restarted, added or removed."""
        if self._stop.is_set():
            raise AgentError("the agent is stopping: reload ignored")
        async with self._lock:
            if self._stop.is_set():
                raise AgentError("the agent is stopping: reload ignored")
            self._swapping += 1
            try:
                return await self._reload(new)
            finally:
                self._swapping -= 1
                self._source_finished(None)  # sources that ended during the swap end the pipeline too

    async def _reload(self, new: Pipeline) -> list[str]:
        old = self.pipeline
        old_ids, new_ids = set(old.components), set(new.components)
        removed = old_ids - new_ids
        added = new_ids - old_ids
        changed = {cid for cid in old_ids & new_ids
                   if old.components[cid].fingerprint() != new.components[cid].fingerprint()}
        # Build everything new first: a BuildError here leaves the running pipeline untouched.
        fresh = {cid: self._make_node(new.components[cid]) for cid in sorted(added | changed)}
        self.pipeline = new
        for cid in added:
            self.nodes[cid] = fresh[cid]
        for cid in changed:
            node = fresh[cid]
            previous = self.nodes[cid]
            if previous.inbox is not None and node.inbox is not None:  # keep the queue, resized
                buf = new.components[cid].config.buffer
                previous.inbox.resize(buf.max_events, int(buf.max_bytes), buf.when_full)
                node.inbox = previous.inbox
            if previous.output is not None and node.output is not None:  # not a transform that became a route
                node.output = previous.output
            node.named.update((name, fanout) for name, fanout in previous.named.items() if name in node.named)
        for cid in new_ids - added - changed:
            self.nodes[cid].decl = new.components[cid]
        # 1. consumers that are new start on empty inboxes before anything feeds them
        for cid in reversed(new.graph.order):
            if cid in added and self.nodes[cid].kind != "source":
                self._start(self.nodes[cid])
        # 2. changed transforms and sinks: interrupt the old reader, the new one reads on
        for cid in reversed(new.graph.order):
            if cid in changed and fresh[cid].kind != "source":
                await self._replace_reader(cid, fresh[cid])
        # 3. outputs now point at the new set of consumers
        removed_nodes = [self.nodes.pop(cid) for cid in removed]
        self._wire()
        for node in removed_nodes:
            for _, fanout in node.outputs():
                fanout.set_targets([])
        # 4. sources: stop removed and changed ones (they checkpoint), start changed and added ones
        for node in removed_nodes:
            if node.kind == "source":
                await self._stop_source(node)
        for cid in sorted(changed | added):
            node = self.nodes[cid]
            if node.kind != "source":
                continue
            if cid in changed:
                await self._stop_source(node)
                node = self.nodes[cid] = fresh[cid]
            self._start(node)
        # 5. removed transforms and sinks drain what they hold, then go
        for node in removed_nodes:
            if node.kind != "source":
                await self._retire(node)
        self._wire()
        await self._report_start_failures([self.nodes[cid] for cid in sorted(added | changed)])
        return sorted(removed | added | changed)

    async def _report_start_failures(self, started: list[Node]) -> None:
        """Say which components a reload started could not start (their supervisors keep trying)."""
        outcomes = [n.start_outcome for n in started if n.start_outcome is not None]
        if outcomes:
            await asyncio.wait(outcomes, timeout=START_OUTCOME_WAIT)
        self.start_failures = {}
        for node in started:
            if node.start_outcome is not None and node.start_outcome.done() and node.start_outcome.result():
                self.start_failures[node.id] = str(node.start_outcome.result())
        for cid, error in self.start_failures.items():
            log.error("reloaded, but a component could not start; retrying with backoff",
                      extra={"component_id": cid, "error": error})

    async def _replace_reader(self, cid: str, node: Node) -> None:
        previous = self.nodes[cid]
        assert node.inbox is not None
        node.inbox.interrupt()
        await self._wait_task(previous)
        node.inbox.resume()
        self.nodes[cid] = node
        self._wire_node(node)  # outputs it did not have before (a new route) are fed before it starts
        self._start(node)

    async def _stop_source(self, node: Node) -> None:
        node.shutdown.set()
        await self._wait_task(node)

    async def _retire(self, node: Node) -> None:
        assert node.inbox is not None
        node.inbox.close()
        await self._wait_task(node)
        node.inbox.drain_discarding("component_removed")
        self.stats.remove(node.id)
