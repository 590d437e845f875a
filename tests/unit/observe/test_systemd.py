"""The sd_notify implementation against real unix datagram sockets (a path and an abstract name)."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator

import pytest

from agent.observe.systemd import STATUS_MAX, SystemdNotifier, socket_address, watchdog_interval


class Listener:
    """A bound datagram socket standing in for systemd's notify socket."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(5)

    def receive(self) -> list[str]:
        return self.sock.recv(4096).decode().split("\n")

    def pending(self) -> list[list[str]]:
        """Every datagram already queued, without waiting."""
        out = []
        self.sock.setblocking(False)
        try:
            while True:
                out.append(self.sock.recv(4096).decode().split("\n"))
        except BlockingIOError:
            return out
        finally:
            self.sock.settimeout(5)


@pytest.fixture
def short_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="sdn", dir="/tmp")  # unix socket paths are limited to 107 bytes
    yield path
    shutil.rmtree(path)


@pytest.fixture
def path_listener(short_dir: str) -> Iterator[tuple[str, Listener]]:
    path = os.path.join(short_dir, "notify")
    listener = Listener(path)
    yield path, listener
    listener.sock.close()


@pytest.fixture
def abstract_listener() -> Iterator[tuple[str, Listener]]:
    name = f"agent-test-{uuid.uuid4().hex}"
    listener = Listener("\0" + name)
    yield "@" + name, listener
    listener.sock.close()


@pytest.mark.parametrize("which", ["path_listener", "abstract_listener"])
def test_each_state_is_one_datagram_of_assignments(which: str, request: pytest.FixtureRequest) -> None:
    notify_socket, listener = request.getfixturevalue(which)
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": notify_socket})
    assert notifier.enabled
    try:
        assert notifier.ready("running 2 components")
        assert listener.receive() == ["READY=1", "STATUS=running 2 components"]
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert notifier.reloading("reloading (SIGHUP)")
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        reloading = listener.receive()
        assert reloading[0] == "RELOADING=1" and reloading[2] == "STATUS=reloading (SIGHUP)"
        key, usec = reloading[1].split("=")
        assert key == "MONOTONIC_USEC" and before <= int(usec) <= after
        assert notifier.stopping()
        assert listener.receive() == ["STOPPING=1"]
        assert notifier.watchdog()
        assert listener.receive() == ["WATCHDOG=1"]
        assert notifier.status("line one\nline two")
        assert listener.receive() == ["STATUS=line one line two"]  # a newline would start a new assignment
    finally:
        notifier.close()


def test_a_long_status_is_cut_to_one_short_line(path_listener: tuple[str, Listener]) -> None:
    notify_socket, listener = path_listener
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": notify_socket})
    notifier.status("x" * 10_000)
    [line] = listener.receive()
    assert line.startswith("STATUS=xxx") and line.endswith("...") and len(line) == len("STATUS=") + STATUS_MAX
    notifier.close()


def test_without_notify_socket_nothing_is_sent_and_nothing_fails() -> None:
    notifier = SystemdNotifier.from_environment({"WATCHDOG_USEC": "400000"})
    assert not notifier.enabled
    assert notifier.watchdog_every is None  # no socket to ping
    assert not notifier.ready("x") and not notifier.reloading() and not notifier.stopping() and not notifier.watchdog()
    asyncio.run(asyncio.wait_for(notifier.keep_alive(), 1))  # returns at once
    notifier.close()


def test_a_socket_nobody_listens_on_is_logged_once_and_never_raised(
        short_dir: str, caplog: pytest.LogCaptureFixture) -> None:
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": os.path.join(short_dir, "gone")})
    with caplog.at_level(logging.DEBUG, "agent.systemd"):
        assert not notifier.ready()
        assert not notifier.watchdog()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == ["could not notify systemd"]
    notifier.close()


@pytest.mark.parametrize("value", ["relative/path", "@", "vsock:2:1234"])
def test_an_unsupported_notify_socket_disables_notification(value: str, caplog: pytest.LogCaptureFixture) -> None:
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": value})
    assert not notifier.enabled and not notifier.ready()
    assert "NOTIFY_SOCKET is not a path" in caplog.text


def test_socket_address() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@/org/freedesktop/systemd1/notify/123") == "\0/org/freedesktop/systemd1/notify/123"


@pytest.mark.parametrize(("environ", "interval"), [
    ({"WATCHDOG_USEC": "400000"}, 0.2),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
    ({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),  # another process's watchdog
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({}, None),
])
def test_watchdog_interval_is_half_of_watchdog_usec_when_it_is_ours(environ: dict[str, str],
                                                                     interval: float | None) -> None:
    assert watchdog_interval(environ) == interval


async def test_keep_alive_pings_from_the_event_loop_and_stops_when_the_loop_is_blocked(
        path_listener: tuple[str, Listener]) -> None:
    notify_socket, listener = path_listener
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": notify_socket, "WATCHDOG_USEC": "100000"})
    assert notifier.watchdog_every == 0.05
    task = asyncio.create_task(notifier.keep_alive())
    try:
        deadline = time.monotonic() + 5
        pings = 0
        while pings < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            pings += sum(message == ["WATCHDOG=1"] for message in listener.pending())
        assert pings >= 3
        time.sleep(0.5)  # noqa: ASYNC251 - a wedged loop: nothing may ping meanwhile
        assert len(listener.pending()) <= 1  # at most the one due as the loop froze
        await asyncio.sleep(0.2)
        assert listener.pending()  # pinging again
    finally:
        task.cancel()
        notifier.close()
