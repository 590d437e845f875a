"""Which container log files are open, process-wide: the tail source says when it opens and forgets a file
named like a kubelet container log, and the pod cache keeps a deleted pod's metadata while any of its files is
still being read (then ``deleted_pod_grace``), so that the last lines of a short-lived pod are enriched.

The tail source only calls :func:`opened` and :func:`closed` with the ``kubernetes`` fields it took from the file
name (``namespace``, ``pod``, ``container_id``); nothing here imports a source or a transform.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from typing import Any

FORGET_CLOSED_AFTER = 3600.0  # when a pod's last file closed is remembered this long at most


class ContainerFiles:
    """Counts of open container log files per pod (``namespace/pod``), and when each pod's last one closed."""

    def __init__(self) -> None:
        self.open: dict[str, dict[str, int]] = {}  # pod key -> container id -> files open
        self.closed_at: dict[str, float] = {}  # pod key -> monotonic time its last open file closed

    def opened(self, fields: Mapping[str, Any] | None) -> None:
        """A file named ``<pod>_<namespace>_<container>-<id>.log`` is being read (``fields``: what its name says)."""
        if not fields:
            return
        key = f"{fields.get('namespace', '')}/{fields.get('pod', '')}"
        containers = self.open.setdefault(key, {})
        cid = str(fields.get("container_id", ""))
        containers[cid] = containers.get(cid, 0) + 1
        self.closed_at.pop(key, None)

    def closed(self, fields: Mapping[str, Any] | None) -> None:
        """That file has been read to its end and forgotten (or the source stopped)."""
        if not fields:
            return
        key = f"{fields.get('namespace', '')}/{fields.get('pod', '')}"
        containers = self.open.get(key)
        cid = str(fields.get("container_id", ""))
        if containers is None or cid not in containers:
            return
        containers[cid] -= 1
        if containers[cid] <= 0:
            del containers[cid]
        if not containers:
            del self.open[key]
            now = time.monotonic()
            self.closed_at[key] = now
            if len(self.closed_at) > 4096:
                self._forget_old(now)

    def is_open(self, pod_key: str, container_ids: Collection[str] = ()) -> bool:
        """Whether a file of the pod ``namespace/name`` is being read (of one of ``container_ids``, if any is
        given: a pod recreated under its name has other containers)."""
        containers = self.open.get(pod_key)
        if containers is None:
            return False
        return not container_ids or any(cid in containers for cid in container_ids)

    def last_closed(self, pod_key: str) -> float | None:
        """When the pod's last open file was closed (monotonic), if that is remembered."""
        return self.closed_at.get(pod_key)

    def _forget_old(self, now: float) -> None:
        for key in [k for k, at in self.closed_at.items() if now - at > FORGET_CLOSED_AFTER]:
            del self.closed_at[key]


container_files = ContainerFiles()
"""The process-wide registry (one tail source or several, one pod cache or several)."""


def opened(fields: Mapping[str, Any] | None) -> None:
    """Hook for the tail source: a container log file was opened (no-op for other files)."""
    container_files.opened(fields)


def closed(fields: Mapping[str, Any] | None) -> None:
    """Hook for the tail source: a container log file was forgotten (no-op for other files)."""
    container_files.closed(fields)
