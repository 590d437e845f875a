"""The ``send``, ``write`` and ``receive`` roles: a TCP load generator, a file writer and a counting receiver."""

from __future__ import annotations

import os
import selectors
import socket
import sys
import threading
import time
from typing import Any

from agent.bench.peers.lines import BUFFER_LINES, HOST, LINE_BYTES, NUMBER_DIGITS, _emit, build_lines, numbered_lines


def _connect(port: int, deadline: float) -> socket.socket:
    while True:
        try:
            return socket.create_connection((HOST, port))
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def send(port: int, lines: int, connections: int, line_bytes: int = LINE_BYTES) -> None:
    """Load generator: see :mod:`agent.bench.peers`."""
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
    """File writer: see :mod:`agent.bench.peers`."""
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
    """Counting receiver: see :mod:`agent.bench.peers`."""
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

