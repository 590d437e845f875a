from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent / "unit"))
import components  # noqa: F401 - registers the test-only component types
from peers.kafka import Tansu, running_tansu
from peers.prometheus import Prometheus, running_node_exporter, running_prometheus


@pytest.fixture
def osmem_url() -> Iterator[str]:
    """A fresh osmem-server (an OpenSearch emulator) on a free loopback port, stopped afterwards."""
    from fakes.osmem import running_osmem

    with running_osmem() as url:
        yield url


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _workdir(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    return path


@pytest.fixture
def node_exporter(tmp_path: Path) -> Iterator[str]:
    """The base URL of a real node exporter (its page at ``/metrics``), stopped after the test."""
    with running_node_exporter(_workdir(tmp_path, "node-exporter")) as url:
        yield url


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    """A real Prometheus with the remote-write receiver on and a fresh TSDB, stopped after the test."""
    with running_prometheus(_workdir(tmp_path, "prometheus")) as peer:
        yield peer


@pytest.fixture
def kafka(tmp_path: Path) -> Iterator[Tansu]:
    """A real Kafka-protocol broker (tansu, memory storage) on a free loopback port, stopped after the test."""
    with running_tansu(_workdir(tmp_path, "kafka")) as broker:
        yield broker
