"""The parent side: handles that start a peer process, read its reports, and always terminate and reap it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from typing import Any


class PeerError(Exception):
    """A peer process exited, failed or did not report in time."""


class _Peer:
    """A child process speaking JSON lines; always terminated and reaped by :meth:`close`."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def _spawn(cls, *args: str, wait_s: float) -> Any:
        """Start the child and hand its first report to :meth:`_on_first_report`; on failure, reap it."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent.bench.peers", *args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        self = cls(proc)
        try:
            self._on_first_report(await self.read(wait_s=wait_s))
        except BaseException:
            await self.close()
            raise
        return self

    def _on_first_report(self, report: dict[str, Any]) -> None:
        """What the child says once it is up (a port, or that it is ready)."""

    async def read(self, wait_s: float | None) -> dict[str, Any]:
        """The next JSON line from the child; PeerError if it exits first or takes over ``wait_s``."""
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(wait_s):
                line = await self.proc.stdout.readline()
        except TimeoutError:
            raise PeerError(f"bench peer {self.proc.pid} did not report within {wait_s}s") from None
        if not line:
            code = await self.proc.wait()
            raise PeerError(f"bench peer {self.proc.pid} exited with code {code} without reporting")
        message: dict[str, Any] = json.loads(line)
        return message

    def write(self, line: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line)

    async def final(self) -> dict[str, Any]:
        """Close its stdin and return the final report of a receiving peer (skipping an earlier "done" report)."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        while True:
            report = await self.read(wait_s=10.0)
            if report.get("final"):
                return report

    async def close(self) -> None:
        """Terminate (then kill) the child if it is still running, and reap it."""
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        if self.proc.returncode is None:
            try:
                async with asyncio.timeout(2.0):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.terminate()
                try:
                    async with asyncio.timeout(2.0):
                        await self.proc.wait()
                except TimeoutError:
                    self.proc.kill()
                    await self.proc.wait()
        if self.proc.stdin is not None:
            with contextlib.suppress(ConnectionError):
                await self.proc.stdin.wait_closed()

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _Listening(_Peer):
    """A peer that listens: its first report is the port."""

    port: int

    def _on_first_report(self, report: dict[str, Any]) -> None:
        self.port = int(report["port"])


class _Triggered(_Peer):
    """A peer that gets ready, then waits for :meth:`go`."""

    def _on_first_report(self, report: dict[str, Any]) -> None:
        if not report.get("ready"):
            raise PeerError(f"bench peer failed: {report}")

    def go(self) -> None:
        """Start (sending or writing)."""
        self.write(b"go\n")


class Receiver(_Listening):
    """Handle on a ``receive`` child: its port, its "all lines arrived" report and its final count."""

    @classmethod
    async def start(cls, lines: int, check_order: bool = False) -> Receiver:
        """Start a receiver expecting ``lines`` lines (numbered ones if ``check_order``); returns once it listens."""
        return await cls._spawn("receive", "--lines", str(lines), *(["--check-order"] if check_order else []),
                                wait_s=10.0)


class LoadGenerator(_Triggered):
    """Handle on a ``send`` child: connected and waiting until :meth:`go`."""

    @classmethod
    async def start(cls, port: int, lines: int, connections: int) -> LoadGenerator:
        """Start a load generator and wait until all its connections are open."""
        return await cls._spawn("send", "--port", str(port), "--lines", str(lines),
                                "--connections", str(connections), wait_s=15.0)


class FileWriter(_Triggered):
    """Handle on a ``write`` child: ready to append numbered lines to a file on :meth:`go`."""

    @classmethod
    async def start(cls, path: str, lines: int) -> FileWriter:
        """Start a file writer and wait until it is ready."""
        return await cls._spawn("write", "--path", path, "--lines", str(lines), wait_s=15.0)


class BulkReceiver(_Listening):
    """Handle on a ``bulk`` child (the minimal Elasticsearch): its port, its "done" report and final count."""

    @classmethod
    async def start(cls, documents: int) -> BulkReceiver:
        """Start it expecting ``documents`` documents; returns once it listens."""
        return await cls._spawn("bulk", "--documents", str(documents), wait_s=10.0)



class _Asked(_Peer):
    """A peer that answers a command line on stdin with one report."""

    async def ask(self, command: bytes = b"report") -> dict[str, Any]:
        self.write(command + b"\n")
        return await self.read(wait_s=10.0)


class RemoteWriteReceiver(_Listening, _Asked):
    """Handle on a ``remote_write`` child: its port, what it decoded so far (:meth:`ask`), in all (:meth:`final`)."""

    @classmethod
    async def start(cls) -> RemoteWriteReceiver:
        """Start the receiver; returns once it listens."""
        return await cls._spawn("remote_write", wait_s=10.0)


class ScrapeTargets(_Asked):
    """Handle on a ``targets`` child: the port of each target; ``ask(b"freeze")`` stops its answers."""

    ports: list[int]

    def _on_first_report(self, report: dict[str, Any]) -> None:
        if "ports" not in report:
            raise PeerError(f"bench peer failed: {report}")
        self.ports = [int(port) for port in report["ports"]]

    @classmethod
    async def start(cls, targets: int, series: int) -> ScrapeTargets:
        """Start ``targets`` exporters of ``series`` series each; returns once they all listen."""
        return await cls._spawn("targets", "--targets", str(targets), "--series", str(series), wait_s=30.0)
