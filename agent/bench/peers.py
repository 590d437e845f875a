"""The processes around the agent in the TCP scenarios: a load generator and a counting receiver.

Both run as ``python -m agent.bench.peers send|receive ...`` in their own
process, so their CPU is not charged to the agent (``RUSAGE_SELF``), and
talk to the parent over stdin/stdout, one JSON object per line:

* ``receive --lines N``: listens on 127.0.0.1 (a free port), prints
  ``{"port": P}``, counts the bytes and newlines of every connection, prints
  ``{"lines": .., "bytes": .., "done": true}`` once N lines have arrived and a
  final report (``"final": true``) when its stdin closes, then exits.
  With ``--check-order`` it also checks that the lines of each connection
  carry consecutive line numbers (see :func:`numbered_lines`) from 0, and
  reports ``"out_of_order"``: the lines whose number is not the previous + 1
  (a second connection, after a reconnection, starts mid-sequence and counts
  too), and ``"partial_line_bytes"`` left after the last complete line.
* ``send --port P --lines N --connections C``: connects C times (retrying
  until the agent listens), prints ``{"ready": true}``, waits for a line on
  stdin, then sends N newline-terminated lines of ``LINE_BYTES`` bytes split
  across the connections, each from its own thread by ``sendall`` of a
  pre-built buffer of a few MiB. Prints ``{"sent_lines": .., "sent_bytes": ..}``.
* ``write --path F --lines N``: prints ``{"ready": true}``, waits for a line
  on stdin, then appends N numbered lines of ``LINE_BYTES`` bytes
  (:func:`numbered_lines`) to F, 4,096 lines (1 MiB) per ``write``, as fast as
  it can. Prints ``{"written_lines": .., "written_bytes": .., "wall_s": ..}``.

This module imports only the standard library so the peers start fast; the
parent-side handles (:class:`Receiver`, :class:`LoadGenerator`,
:class:`FileWriter`) make sure a child is always terminated and reaped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import selectors
import socket
import sys
import threading
import time
from typing import Any

HOST = "127.0.0.1"
LINE_BYTES = 256  # including the newline, as in vector-test-harness
BUFFER_LINES = 16_384  # 4 MiB of lines per sendall
_WORDS = (b"GET", b"POST", b"/api/v1/orders", b"/healthz", b"status=200", b"status=404", b"user=42",
          b"region=eu-west-1", b"latency_ms=17", b"trace=9f86d081884c7d65", b"cache=miss", b"bytes=5120")


def build_lines(count: int, line_bytes: int = LINE_BYTES) -> bytes:
    """``count`` distinct printable lines of exactly ``line_bytes`` bytes each (newline included)."""
    out = bytearray()
    for i in range(count):
        line = bytearray(b"<134>1 2024-05-01T12:00:00.%06dZ bench app %d - - " % (i % 1_000_000, i))
        w = i
        while len(line) < line_bytes - 1:
            w = (w * 1103515245 + 12345) & 0x7FFFFFFF
            line += _WORDS[(w >> 16) % len(_WORDS)] + b" "
        out += line[: line_bytes - 1] + b"\n"
    return bytes(out)


NUMBER_DIGITS = 12  # numbered lines start with the line number, zero-padded, then a space


def numbered_lines(start: int, count: int, line_bytes: int = LINE_BYTES) -> bytes:
    """Lines ``start`` .. ``start + count - 1`` of exactly ``line_bytes`` bytes: ``%012d `` + body + newline."""
    bodies = _bodies(line_bytes)
    n = len(bodies)
    return b"".join([b"%012d %s" % (i, bodies[i % n]) for i in range(start, start + count)])


_BODIES: dict[int, list[bytes]] = {}


def _bodies(line_bytes: int) -> list[bytes]:
    """A pool of line bodies (newline included) that fill a numbered line to ``line_bytes``."""
    if line_bytes not in _BODIES:
        size = line_bytes - NUMBER_DIGITS - 1
        _BODIES[line_bytes] = [line[:size - 1] + b"\n" for line in build_lines(1024, line_bytes).split(b"\n")[:-1]]
    return _BODIES[line_bytes]


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _connect(port: int, deadline: float) -> socket.socket:
    while True:
        try:
            return socket.create_connection((HOST, port))
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def send(port: int, lines: int, connections: int, line_bytes: int = LINE_BYTES) -> None:
    """Load generator: see the module docstring."""
    buffer = memoryview(build_lines(BUFFER_LINES, line_bytes))
    deadline = time.monotonic() + 10.0
    socks = [_connect(port, deadline) for _ in range(connections)]
    _emit({"ready": True})
    if not sys.stdin.readline():  # the parent gave up before "go"
        return
    errors: list[BaseException] = []

    def pump(sock: socket.socket, n: int) -> None:
        try:
            full, rest = divmod(n, BUFFER_LINES)
            for _ in range(full):
                sock.sendall(buffer)
            if rest:
                sock.sendall(buffer[: rest * line_bytes])
            sock.shutdown(socket.SHUT_WR)
        except BaseException as exc:  # reported to the parent below
            errors.append(exc)
        finally:
            sock.close()

    share, extra = divmod(lines, connections)
    threads = [threading.Thread(target=pump, args=(sock, share + (1 if k < extra else 0)))
               for k, sock in enumerate(socks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        _emit({"error": repr(errors[0])})
        raise SystemExit(1)
    _emit({"sent_lines": lines, "sent_bytes": lines * line_bytes})


def write(path: str, lines: int, line_bytes: int = LINE_BYTES) -> None:
    """File writer: see the module docstring."""
    _emit({"ready": True})
    if not sys.stdin.readline():
        return
    started = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        for start in range(0, lines, 4096):
            os.write(fd, numbered_lines(start, min(4096, lines - start), line_bytes))
    finally:
        os.close(fd)
    _emit({"written_lines": lines, "written_bytes": lines * line_bytes,
           "wall_s": round(time.perf_counter() - started, 4)})


class _OrderCheck:
    """Checks that one connection's lines carry the numbers 0, 1, 2, ... (fixed-size numbered lines)."""

    __slots__ = ("line_bytes", "next", "out_of_order", "pending")

    def __init__(self, line_bytes: int) -> None:
        self.line_bytes = line_bytes
        self.pending = b""
        self.next = 0
        self.out_of_order = 0

    def feed(self, data: bytes) -> None:
        buf = self.pending + data if self.pending else data
        size = self.line_bytes
        full = len(buf) - len(buf) % size
        self.pending = buf[full:]
        try:
            numbers = [int(buf[o:o + NUMBER_DIGITS]) for o in range(0, full, size)]
        except ValueError:  # a line of another length shifted the framing: count the rest as wrong
            self.out_of_order += full // size
            return
        expected = range(self.next, self.next + len(numbers))
        if numbers != list(expected):
            previous = self.next - 1
            for number in numbers:
                self.out_of_order += number != previous + 1
                previous = number
        if numbers:
            self.next = numbers[-1] + 1


def receive(lines: int, check_order: bool = False, line_bytes: int = LINE_BYTES) -> None:
    """Counting receiver: see the module docstring."""
    listener = socket.create_server((HOST, 0))
    listener.setblocking(False)
    _emit({"port": listener.getsockname()[1]})
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, "accept")
    sel.register(sys.stdin.fileno(), selectors.EVENT_READ, "stdin")
    got_lines = got_bytes = connections = 0
    reported = False
    checks: dict[socket.socket, _OrderCheck] = {}

    def counts() -> dict[str, Any]:
        counted = {"lines": got_lines, "bytes": got_bytes, "connections": connections}
        if check_order:
            counted["out_of_order"] = sum(c.out_of_order for c in checks.values())
            counted["partial_line_bytes"] = sum(len(c.pending) for c in checks.values())
        return counted

    while True:
        for key, _ in sel.select():
            if key.data == "accept":
                conn, _ = listener.accept()
                conn.setblocking(False)
                connections += 1
                if check_order:
                    checks[conn] = _OrderCheck(line_bytes)
                sel.register(conn, selectors.EVENT_READ, "conn")
            elif key.data == "stdin":
                if not os.read(sys.stdin.fileno(), 4096):
                    _emit({**counts(), "final": True})
                    return
            else:
                peer = key.fileobj
                assert isinstance(peer, socket.socket)
                try:
                    data = peer.recv(4 << 20)
                except (BlockingIOError, InterruptedError):
                    continue
                except ConnectionError:
                    data = b""
                if not data:
                    sel.unregister(peer)
                    peer.close()
                    continue
                got_bytes += len(data)
                got_lines += data.count(b"\n")
                if check_order:
                    checks[peer].feed(data)
        if not reported and got_lines >= lines:
            reported = True
            _emit({**counts(), "done": True})


# -- parent side ---------------------------------------------------------------------------------


class PeerError(Exception):
    """A peer process exited, failed or did not report in time."""


class _Peer:
    """A child process speaking JSON lines; always terminated and reaped by :meth:`close`."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def _spawn(cls, *args: str) -> Any:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent.bench.peers", *args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        return cls(proc)

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


class Receiver(_Peer):
    """Handle on a ``receive`` child: its port, its "all lines arrived" report and its final count."""

    port: int

    @classmethod
    async def start(cls, lines: int, check_order: bool = False) -> Receiver:
        """Start a receiver expecting ``lines`` lines (numbered ones if ``check_order``); returns once it listens."""
        self: Receiver = await cls._spawn("receive", "--lines", str(lines), *(["--check-order"] if check_order else []))
        try:
            self.port = int((await self.read(wait_s=10.0))["port"])
        except BaseException:
            await self.close()
            raise
        return self

    async def final(self) -> dict[str, Any]:
        """Close its stdin and return the final count (skipping an earlier "done" report)."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        while True:
            report = await self.read(wait_s=10.0)
            if report.get("final"):
                return report


class LoadGenerator(_Peer):
    """Handle on a ``send`` child: connected and waiting until :meth:`go`."""

    @classmethod
    async def start(cls, port: int, lines: int, connections: int) -> LoadGenerator:
        """Start a load generator and wait until all its connections are open."""
        self: LoadGenerator = await cls._spawn(
            "send", "--port", str(port), "--lines", str(lines), "--connections", str(connections))
        try:
            ready = await self.read(wait_s=15.0)
            if not ready.get("ready"):
                raise PeerError(f"load generator failed: {ready}")
        except BaseException:
            await self.close()
            raise
        return self

    def go(self) -> None:
        """Start sending."""
        self.write(b"go\n")


class FileWriter(_Peer):
    """Handle on a ``write`` child: ready to append numbered lines to a file on :meth:`go`."""

    @classmethod
    async def start(cls, path: str, lines: int) -> FileWriter:
        """Start a file writer and wait until it is ready."""
        self: FileWriter = await cls._spawn("write", "--path", path, "--lines", str(lines))
        try:
            ready = await self.read(wait_s=15.0)
            if not ready.get("ready"):
                raise PeerError(f"file writer failed: {ready}")
        except BaseException:
            await self.close()
            raise
        return self

    def go(self) -> None:
        """Start writing."""
        self.write(b"go\n")


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m agent.bench.peers")
    sub = parser.add_subparsers(dest="role", required=True)
    snd = sub.add_parser("send")
    snd.add_argument("--port", type=int, required=True)
    snd.add_argument("--lines", type=int, required=True)
    snd.add_argument("--connections", type=int, default=4)
    snd.add_argument("--line-bytes", type=int, default=LINE_BYTES)
    rcv = sub.add_parser("receive")
    rcv.add_argument("--lines", type=int, required=True)
    rcv.add_argument("--check-order", action="store_true")
    rcv.add_argument("--line-bytes", type=int, default=LINE_BYTES)
    wrt = sub.add_parser("write")
    wrt.add_argument("--path", required=True)
    wrt.add_argument("--lines", type=int, required=True)
    wrt.add_argument("--line-bytes", type=int, default=LINE_BYTES)
    args = parser.parse_args(argv)
    if args.role == "send":
        send(args.port, args.lines, args.connections, args.line_bytes)
    elif args.role == "write":
        write(args.path, args.lines, args.line_bytes)
    else:
        receive(args.lines, args.check_order, args.line_bytes)


if __name__ == "__main__":
    try:
        _main()
    except (KeyboardInterrupt, BrokenPipeError):
        raise SystemExit(1) from None
