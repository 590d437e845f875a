"""Transform `host_metadata`: what the host is, added to every event (Filebeat's ``add_host_metadata``).

Under ``target`` (default ``host``), with Filebeat's field names::

    {"name": <NODE_NAME, else the hostname>, "hostname": ..., "architecture": "x86_64", "id": <machine-id>,
     "os": {"type": "linux", "kernel": ..., "name": "Ubuntu", "version": "22.04.4 LTS (Jammy Jellyfish)",
            "platform": "ubuntu", "family": "debian"},
     "ip": [...], "mac": [...]}

Read when the stage starts and again every ``refresh_interval`` (5 minutes, as Filebeat), on the first batch
after it passed; reading touches only local files and the kernel's interface table, never the network. ``ip``
lists every address (secondary ones too) of every interface but loopback ones, and ``mac`` their hardware
addresses as ECS and Filebeat 8 write them (``02-42-AC-11-00-02``); ``netinfo: false`` leaves both out;
a field the host does not tell (no ``/etc/os-release``, no machine id) is left out. In a container, ``os`` is
the image's and ``hostname`` the pod's: set ``NODE_NAME`` from the downward API for the node's name. Each
event gets its own copy, so a later stage that changes one event's ``host`` changes only that event.
"""

from __future__ import annotations

import ctypes
import os
import platform
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.config.model import TransformConfig
from agent.config.registry import BuildContext, register
from agent.config.units import Duration
from agent.core.batch import Batch, Kind
from agent.core.events import own_parents, to_log_events
from agent.core.footprint import PARSED_KEY_BYTES
from agent.core.keys import at_key
from agent.expr.paths import parse_path, set_field

IFF_LOOPBACK = 0x8  # net/if.h: a loopback interface


class HostMetadataConfig(TransformConfig, tag="host_metadata"):
    """Add the host's metadata to every event under ``target``, with Filebeat's field names.

    ``name`` (``$NODE_NAME``, else the hostname), ``hostname``, ``architecture``, ``id``, ``os.*``, and with ``netinfo``
    the ``ip`` and ``mac`` of every interface but loopback; read again every ``refresh_interval``, from local files
    only.
    """

    target: str = "host"
    """Field path the host's metadata is written under."""
    refresh_interval: Duration = Duration(300.0)
    """How often the host's metadata is read again."""
    netinfo: bool = True
    """Include ip and mac, the addresses of every interface but loopback."""

    def __post_init__(self) -> None:
        at_key("target", parse_path, self.target)
        if self.refresh_interval <= 0:
            raise ValueError("refresh_interval must be longer than 0s")


def read_host(netinfo: bool = True) -> dict[str, Any]:
    """This host's metadata, as the stage adds it."""
    hostname = socket.gethostname()
    host: dict[str, Any] = {"name": os.environ.get("NODE_NAME") or hostname, "hostname": hostname,
                            "architecture": platform.machine()}
    machine_id = _read("/etc/machine-id") or _read("/var/lib/dbus/machine-id")
    if machine_id:
        host["id"] = machine_id
    host["os"] = _os()
    if netinfo:
        host["ip"], host["mac"] = _addresses()
    return host


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace").strip() or None
    except OSError:
        return None


def _os() -> dict[str, str]:
    info = {"type": platform.system().lower(), "kernel": platform.release()}
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        return info
    for field, key in (("name", "NAME"), ("version", "VERSION"), ("platform", "ID")):
        if release.get(key):
            info[field] = release[key]
    family = (release.get("ID_LIKE") or release.get("ID") or "").split()
    if family:
        info["family"] = family[0]
    return info


class _Ifaddrs(ctypes.Structure):
    """libc's ``struct ifaddrs`` (getifaddrs(3)); ``ifa_ifu`` and ``ifa_data`` are not read."""


_Ifaddrs._fields_ = [("ifa_next", ctypes.POINTER(_Ifaddrs)), ("ifa_name", ctypes.c_char_p),
                     ("ifa_flags", ctypes.c_uint), ("ifa_addr", ctypes.c_void_p), ("ifa_netmask", ctypes.c_void_p),
                     ("ifa_ifu", ctypes.c_void_p), ("ifa_data", ctypes.c_void_p)]
_FAMILY: dict[int, tuple[int, int]] = {socket.AF_INET: (4, 4), socket.AF_INET6: (8, 16)}  # family: (offset, length)


def _addresses() -> tuple[list[str], list[str]]:
    """The IP addresses (IPv4, then IPv6; secondary ones too) and MAC addresses (ECS's ``00-1A-2B-...``) of every
    interface but loopback ones, as Filebeat lists them; from libc's getifaddrs, the kernel's own table."""
    ips: dict[int, list[str]] = {4: [], 16: []}
    macs: list[str] = []
    if not sys.platform.startswith("linux"):
        return [], macs
    libc = ctypes.CDLL(None, use_errno=True)
    head = ctypes.POINTER(_Ifaddrs)()
    if libc.getifaddrs(ctypes.byref(head)) != 0:
        return [], macs
    try:
        entry = head
        while entry:
            item = entry.contents
            entry = item.ifa_next
            if item.ifa_flags & IFF_LOOPBACK or not item.ifa_addr:
                continue
            family = ctypes.c_ushort.from_address(item.ifa_addr).value
            if family in _FAMILY:
                offset, size = _FAMILY[family]
                raw = ctypes.string_at(item.ifa_addr + offset, size)
                ips[size].append(socket.inet_ntop(family, raw))
            elif family == socket.AF_PACKET:  # sockaddr_ll: its address length at 11, the address at 12
                length = ctypes.c_ubyte.from_address(item.ifa_addr + 11).value
                mac = ctypes.string_at(item.ifa_addr + 12, min(length, 8))
                if len(mac) == 6 and any(mac):
                    macs.append(mac.hex("-").upper())
    finally:
        libc.freeifaddrs(head)
    return list(dict.fromkeys(ips[4] + ips[16])), list(dict.fromkeys(macs))


@register("transform", "host_metadata", HostMetadataConfig, "Adds the host's name, OS, addresses and node name.")
class HostMetadataTransform:
    """Sets ``target`` on every event to a copy of the host's metadata, read again every ``refresh_interval``."""

    mutates = True

    def __init__(self, config: HostMetadataConfig, ctx: BuildContext) -> None:
        self.config = config
        self.stats = ctx.stats
        self.path = parse_path(config.target)
        self.read: Callable[[bool], dict[str, Any]] = read_host
        self.clock: Callable[[], float] = time.monotonic
        self.host: dict[str, Any] = {}
        self.event_bytes = 0
        self.next_read = float("-inf")

    def process(self, batch: Batch) -> Batch | None:
        if batch.kind is Kind.METRICS:
            return batch
        now = self.clock()
        if now >= self.next_read:
            self._refresh(now)
        to_log_events(batch)
        host, nested = self.host, [k for k, v in self.host.items() if type(v) in (dict, list)]
        path = self.path
        if len(path) == 1 and type(path[0]) is str:
            key = path[0]
            for event in batch.events:
                copy = host.copy()
                for k in nested:
                    copy[k] = host[k].copy()
                event[key] = copy
        else:
            blocked = 0
            for event in batch.events:
                copy = host.copy()
                for k in nested:
                    copy[k] = host[k].copy()
                own_parents(event, path)
                if not set_field(event, path, copy):  # a value on the way is not an object: left as it is
                    blocked += 1
            if blocked:
                self.stats.error("field_conflict", "processing", blocked)
        batch.byte_size += len(batch.events) * self.event_bytes
        return batch

    def _refresh(self, now: float) -> None:
        self.host = self.read(self.config.netinfo)
        self.next_read = now + float(self.config.refresh_interval)
        containers = [self.host, *(v for v in self.host.values() if type(v) in (dict, list))]
        self.event_bytes = sum(sys.getsizeof(c) for c in containers) + PARSED_KEY_BYTES
