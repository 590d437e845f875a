"""systemd's service notification protocol (what sd_notify(3) sends) and its watchdog.

Under ``Type=notify`` systemd passes ``$NOTIFY_SOCKET``: a unix datagram socket, in the abstract
namespace when the path starts with ``@``. Each datagram is newline-separated ``KEY=VALUE``
assignments: ``READY=1`` once the pipeline runs, ``RELOADING=1`` (with ``MONOTONIC_USEC``, which
systemd >= 253 requires for ``Type=notify-reload``) then ``READY=1`` around a reload,
``STOPPING=1`` when a drain begins, ``STATUS=`` for ``systemctl status``, and ``WATCHDOG=1``
every half of ``WatchdogSec`` (from ``$WATCHDOG_USEC``, when ``$WATCHDOG_PID`` is unset or ours).
Without ``$NOTIFY_SOCKET`` nothing is sent; a send that fails is logged and never raised.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger("agent.systemd")

STATUS_MAX = 400  # characters of a STATUS= line: `systemctl status` shows one line


def socket_address(value: str) -> str | None:
    """The address to send to for a ``$NOTIFY_SOCKET`` value: a path, or ``@name`` as an abstract name."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    return None  # relative paths and vsock: addresses are not supported


def watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Seconds between watchdog pings (half of ``$WATCHDOG_USEC``), or None when no watchdog is ours."""
    pid = environ.get("WATCHDOG_PID")
    if pid and pid.strip() != str(os.getpid()):
        return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2e6 if usec > 0 else None


def one_line(text: str) -> str:
    """``text`` fit for a STATUS= value: one line, at most STATUS_MAX characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= STATUS_MAX else flat[:STATUS_MAX - 3] + "..."


class SystemdNotifier:
    """Tells the service manager the agent's state over ``$NOTIFY_SOCKET``; a no-op without one."""

    def __init__(self, address: str | None, watchdog_every: float | None = None) -> None:
        self.address = address
        self.watchdog_every = watchdog_every if address else None
        self._sock: socket.socket | None = None
        self._failed = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> SystemdNotifier:
        """A notifier for ``$NOTIFY_SOCKET`` and ``$WATCHDOG_USEC``/``$WATCHDOG_PID`` (default: os.environ)."""
        env = os.environ if environ is None else environ
        value = env.get("NOTIFY_SOCKET", "")
        address = socket_address(value) if value else None
        if value and address is None:
            log.warning("NOTIFY_SOCKET is not a path or an @abstract name; systemd is not notified",
                        extra={"notify_socket": value})
        return cls(address, watchdog_interval(env))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *assignments: str) -> bool:
        """Send one datagram of ``KEY=VALUE`` lines; True if it was sent."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)  # a full queue drops one message, never stalls the loop
            self._sock.sendto("\n".join(assignments).encode(), self.address)
        except OSError as exc:
            level = logging.DEBUG if self._failed else logging.WARNING
            self._failed = True
            log.log(level, "could not notify systemd", extra={"error": str(exc), "notification": assignments[0]})
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *self._status(status))

    def reloading(self, status: str | None = None) -> bool:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", *self._status(status))

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *self._status(status))

    def status(self, status: str) -> bool:
        return self.send(*self._status(status))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    async def keep_alive(self) -> None:
        """Ping the watchdog from the event loop until cancelled: a loop that hangs stops pinging."""
        if self.watchdog_every is None:
            return
        while True:
            self.watchdog()
            await asyncio.sleep(self.watchdog_every)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    @staticmethod
    def _status(status: str | None) -> list[str]:
        return [] if status is None else [f"STATUS={one_line(status)}"]
