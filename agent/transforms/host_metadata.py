"""Transform `host_metadata`: what the host is, added to every event (Filebeat's ``add_host_metadata``).

Under ``target`` (default ``host``), with Filebeat's field names::

    {"name": <NODE_NAME, else the hostname>, "hostname": ..., "architecture": "x86_64", "id": <machine-id>,
     "os": {"type": "linux", "kernel": ..., "name": "Ubuntu", "version": "22.04.4 LTS (Jammy Jellyfish)",
            "platform": "ubuntu", "family": "debian"},
     "ip": [...], "mac": [...]}

Read when the stage starts and again every ``refresh_interval`` (5 minutes, as Filebeat), on the first batch
after it passed; reading touches only local files and the kernel's interface table, never the network. ``ip``
lists every address of every interface but loopback (``netinfo: false`` leaves ``ip`` and ``mac`` out);
a field the host does not tell (no ``/etc/os-release``, no machine id) is left out. In a container, ``os`` is
the image's and ``hostname`` the pod's: set ``NODE_NAME`` from the downward API for the node's name. Each
event gets its own copy, so a later stage that changes one event's ``host`` changes only that event.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import platform
import socket
import struct
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

SIOCGIFADDR = 0x8915  # Linux: an interface's IPv4 address


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


def _addresses() -> tuple[list[str], list[str]]:
    """The IP addresses (IPv4, then IPv6) and MAC addresses of every interface but loopback."""
    ips: list[str] = []
    macs: list[str] = []
    if not sys.platform.startswith("linux"):
        return ips, macs
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        return ips, macs
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for name in names:
            try:
                answer = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
            except OSError:  # no IPv4 address
                continue
            ips.append(socket.inet_ntoa(answer[20:24]))
    for line in (_read("/proc/net/if_inet6") or "").splitlines():
        fields = line.split()
        if len(fields) >= 6 and len(fields[0]) == 32:
            ips.append(str(ipaddress.IPv6Address(bytes.fromhex(fields[0]))))
    ips = [ip for ip in dict.fromkeys(ips) if not ipaddress.ip_address(ip).is_loopback]
    for name in names:
        mac = _read(f"/sys/class/net/{name}/address")
        if mac and mac != "00:00:00:00:00:00" and mac not in macs:
            macs.append(mac)
    return ips, macs


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
