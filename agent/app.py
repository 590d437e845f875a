"""The agent process: load -> build -> run -> reload on demand -> drain -> exit code."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import signal
from importlib import resources
from pathlib import Path

from agent.config.pipeline import Pipeline, load_files, load_texts
from agent.core.errors import EXIT_FAILURE, AgentError, ConfigErrors, StartupError
from agent.observe.stats import StatsRegistry
from agent.observe.systemd import SystemdNotifier
from agent.topology.running import Topology

log = logging.getLogger("agent")


DEMO_SOURCE = {"type": "generate", "format": "json", "rate": 5}


def default_pipeline_text() -> str:
    """The embedded default; with a demo source added where no container logs are found."""
    import glob

    import yaml

    text = resources.files("agent").joinpath("default_pipeline.yaml").read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    if glob.glob(document["sources"]["containers"]["include"][0]):
        return text
    document["sources"]["demo"] = DEMO_SOURCE
    document["sinks"]["console"]["inputs"].append("demo")
    return yaml.safe_dump(document, sort_keys=False)


def load_pipeline(paths: list[str]) -> Pipeline:
    """The pipeline in ``paths``, or the embedded default when there are none."""
    if paths:
        return load_files(paths)
    return load_texts([(default_pipeline_text(), "<default pipeline>")])


def lock_data_dir(data_dir: str) -> int:
    """Take ``data_dir/lock`` (flock, exclusive) for this process, holding its pid; returns the descriptor.

    Two agents on one data_dir would read the same files from the same checkpoints and deliver
    everything twice: the second one stops here with the holder's pid. The lock goes with the
    process, however it ends.
    """
    path = Path(data_dir) / "lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StartupError(f"cannot use data_dir {data_dir}: {exc.strerror}; "
                           "set data_dir to a directory this user can write") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise StartupError(f"cannot lock data_dir {data_dir}: {exc.strerror}") from None
        raise StartupError(f"data_dir {data_dir} is in use by another agent (pid {holder}); "
                           "stop it, or give each agent its own data_dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class Agent:
    """Owns the topology, the HTTP API, signal handling and config reloads."""

    def __init__(self, config_paths: list[str], pipeline: Pipeline) -> None:
        self.config_paths = config_paths
        self.pipeline = pipeline
        self.stats = StatsRegistry()
        self.topology = Topology(pipeline, self.stats)
        self.reloads = {"success": 0, "failure": 0}
        self._stopping = 0
        self._reload_lock = asyncio.Lock()
        self.systemd = SystemdNotifier.from_environment()

    async def run(self) -> int:
        from agent.observe.server import ApiServer  # aiohttp is imported only when running

        for warning in self.pipeline.warnings:
            log.warning(warning)
        log.info("delivery guarantee: at least once; sources commit positions only after every sink acknowledged",
                 extra={"components": len(self.pipeline.components)})
        api = ApiServer(self) if self.pipeline.root.api.enabled else None
        if api is not None:
            await api.start(self.pipeline.root.api.address)
        self._install_signals()
        watcher = asyncio.create_task(self._watch_config_files(), name="config-watcher")
        systemd = [asyncio.create_task(self.systemd.keep_alive(), name="systemd-watchdog"),
                   asyncio.create_task(self._notify_ready(), name="systemd-ready")]
        try:
            return await self.topology.run()
        finally:
            watcher.cancel()
            for task in systemd:
                task.cancel()
            self.systemd.close()
            if api is not None:
                await api.stop()

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload("SIGHUP")))

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        self._stopping += 1
        if self._stopping > 1 and sig == signal.SIGINT:
            log.error("second interrupt: exiting now")
            os._exit(EXIT_FAILURE)
        log.info("stopping: draining pipeline", extra={"signal": sig.name})
        if self._stopping == 1:
            self.systemd.stopping(f"draining on {sig.name}")
        self.topology.request_stop()

    async def _notify_ready(self) -> None:
        """systemd READY=1 once every component has started and the pipeline runs."""
        await self.topology.ready.wait()
        self.systemd.ready(f"running {len(self.pipeline.components)} components")

    async def reload(self, trigger: str) -> tuple[bool, str]:
        """Validate the config files and swap in what changed; an invalid config changes nothing.

        systemd hears RELOADING=1 before and READY=1 after, whatever the outcome (the STATUS says it),
        unless the pipeline is not running yet or is draining.
        """
        async with self._reload_lock:
            notify = self.topology.ready.is_set() and not self._stopping
            if notify:
                self.systemd.reloading(f"reloading ({trigger})")
            ok, message = False, "the reload did not finish"
            try:
                ok, message = await self._reload(trigger)
            finally:
                if notify and not self._stopping:
                    self.systemd.ready(message if ok else f"reload failed; kept the running config: {message}")
            return ok, message

    async def _reload(self, trigger: str) -> tuple[bool, str]:
        if not self.config_paths:
            return False, "running the embedded default pipeline: nothing to reload"
        try:
            pipeline = load_files(self.config_paths)
            new, old = pipeline.root, self.pipeline.root
            if (new.api, new.data_dir, new.memory_limit) != (old.api, old.data_dir, old.memory_limit):
                log.warning("api, data_dir and memory_limit changes take effect after a restart")
            changed = await self.topology.reload(pipeline)
        except (ConfigErrors, AgentError) as exc:
            self.reloads["failure"] += 1
            log.error("config reload failed; the running pipeline is unchanged",
                      extra={"trigger": trigger, "error": str(exc)})
            return False, str(exc)
        self.pipeline = pipeline
        self.reloads["success"] += 1
        log.info("config reloaded", extra={"trigger": trigger, "restarted": changed})
        message = "reloaded: " + (", ".join(changed) if changed else "no component changed")
        failures = self.topology.start_failures
        if failures:
            message += "; could not start (retrying): " + "; ".join(f"{c}: {e}" for c, e in failures.items())
        return True, message

    async def _watch_config_files(self, interval: float = 1.0) -> None:
        def stamp() -> list[tuple[float, int] | None]:
            out: list[tuple[float, int] | None] = []
            for path in self.config_paths:
                try:
                    st = os.stat(path)
                    out.append((st.st_mtime, st.st_size))
                except OSError:
                    out.append(None)
            return out

        last = stamp()
        while True:
            await asyncio.sleep(interval)
            now = stamp()
            if now != last:
                last = now
                await self.reload("file change")
