from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent / "unit"))
import components  # noqa: F401 - registers the test-only component types


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
