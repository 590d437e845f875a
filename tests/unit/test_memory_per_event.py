"""benchmarks/memory_per_event.py still runs against the decoder, parse and footprint it measures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "memory_per_event.py"


def test_memory_per_event_runs_and_reports_every_kind() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), "--events", "2000"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[2:-1]}
    assert list(rows) == ["lines", "decoded", "parsed", "metrics"]
    for kind in ("decoded", "parsed"):
        assert 0.7 <= float(rows[kind][-1]) <= 1.3, result.stdout  # the estimate tracks tracemalloc's figure
