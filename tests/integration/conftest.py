"""Fixtures for tests against real peers started on loopback ports (see tests/peers/)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from peers.prometheus import Prometheus, running_node_exporter, running_prometheus


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
