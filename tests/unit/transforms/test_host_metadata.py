from __future__ import annotations

import ipaddress
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agent.config.registry import BuildContext
from agent.config.units import dec_hook
from agent.core.batch import Batch, Kind
from agent.observe.stats import ComponentStats
from agent.transforms.host_metadata import HostMetadataConfig, HostMetadataTransform, read_host


def transform(**kw: Any) -> HostMetadataTransform:
    stats = ComponentStats("h", "transform", "host_metadata")
    config = msgspec.convert({"type": "host_metadata", "inputs": ["x"], **kw}, HostMetadataConfig, dec_hook=dec_hook)
    return HostMetadataTransform(config, BuildContext("h", Path("."), Path("."), stats))


def test_this_host_is_read_with_filebeat_field_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE_NAME", "node-7")
    host = read_host()
    assert host["name"] == "node-7" and host["hostname"] == socket.gethostname()
    assert host["architecture"] and host["os"]["type"] and host["os"]["kernel"]
    assert all(not ipaddress.ip_address(ip).is_loopback for ip in host["ip"])
    monkeypatch.delenv("NODE_NAME")
    host = read_host(netinfo=False)
    assert host["name"] == socket.gethostname() and "ip" not in host and "mac" not in host


def test_every_event_gets_its_own_copy_and_raw_lines_become_events() -> None:
    t = transform()
    t.read = lambda netinfo: {"name": "n", "os": {"type": "linux"}, "ip": ["10.0.0.1"]}
    out = t.process(Batch([{"a": 1}, {"host": "old"}], Kind.LOGS, 10))
    assert out is not None and out.byte_size > 10
    first, second = out.events
    assert first == {"a": 1, "host": {"name": "n", "os": {"type": "linux"}, "ip": ["10.0.0.1"]}}
    first["host"]["os"]["type"] = "changed"
    first["host"]["ip"].append("x")
    assert second["host"] == {"name": "n", "os": {"type": "linux"}, "ip": ["10.0.0.1"]}
    lines = t.process(Batch([b"line"], Kind.LINES, 4))
    assert lines is not None and lines.events[0]["message"] == "line" and lines.events[0]["host"]["name"] == "n"


def test_read_once_then_again_after_the_refresh_interval() -> None:
    t = transform(refresh_interval="1m")
    reads: list[int] = []
    now = [100.0]
    t.clock = lambda: now[0]
    t.read = lambda netinfo: reads.append(1) or {"name": f"n{len(reads)}"}  # type: ignore[func-returns-value]
    names = []
    for at in (100.0, 130.0, 159.0, 160.0, 170.0):
        now[0] = at
        out = t.process(Batch([{}], Kind.LOGS, 1))
        assert out is not None
        names.append(out.events[0]["host"]["name"])
    assert names == ["n1", "n1", "n1", "n2", "n2"] and len(reads) == 2


def test_a_nested_target_is_written_copy_on_write_and_a_blocked_one_counted() -> None:
    t = transform(target="agent.host")
    t.read = lambda netinfo: {"name": "n"}
    shared = {"version": "1"}
    original = Batch([{"agent": shared}, {"agent": "text"}], Kind.LOGS, 10)
    out = t.process(original.copy_for_mutation())
    assert out is not None
    assert out.events == [{"agent": {"version": "1", "host": {"name": "n"}}}, {"agent": "text"}]
    assert shared == {"version": "1"} and t.stats.errors[("field_conflict", "processing")] == 1


def test_a_bad_target_is_a_config_error() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"type": "host_metadata", "inputs": ["x"], "target": "a..b"}, HostMetadataConfig)


_NAMESPACE = ("ip link add v0 type veth peer name v1 && ip addr add 10.1.1.1/24 dev v0 && "
              "ip addr add 10.1.1.2/24 dev v0 && ip -6 addr add fd01::5/64 dev v0 nodad && "
              "ip link set v0 address 02:0a:0b:0c:0d:0e && ip link set v0 up && ip addr add 10.9.9.9/32 dev lo && "
              "ip link set lo up && exec \"$0\" -c \"$1\"")
_PRINT_HOST = "import json; from agent.transforms.host_metadata import read_host; print(json.dumps(read_host()))"


def test_every_address_of_every_interface_but_loopback_ones_and_macs_as_ecs_writes_them() -> None:
    # A network namespace of our own: an interface with a primary and a secondary IPv4 address and an IPv6 one,
    # and an extra address on loopback, which is left out with the whole interface (as Filebeat does).
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare and iproute2")
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot make a network namespace here (not root)")
    result = subprocess.run(["unshare", "-n", "sh", "-c", _NAMESPACE, sys.executable, _PRINT_HOST],
                            capture_output=True, text=True, timeout=30, cwd=Path(__file__).resolve().parents[3])
    if "Unknown device type" in result.stderr:
        pytest.skip("no veth devices in this kernel")
    assert result.returncode == 0, result.stderr
    host = json.loads(result.stdout)
    assert host["ip"][:2] == ["10.1.1.1", "10.1.1.2"]  # the secondary address too; IPv4 first
    assert "fd01::5" in host["ip"] and all(ip.startswith(("fd01::", "fe80::")) for ip in host["ip"][2:])
    assert "10.9.9.9" not in host["ip"] and "127.0.0.1" not in host["ip"]
    assert "02-0A-0B-0C-0D-0E" in host["mac"] and len(host["mac"]) == 2  # v0 and its peer, uppercase with hyphens
    assert all(len(mac) == 17 and mac == mac.upper() and mac.count("-") == 5 for mac in host["mac"])
