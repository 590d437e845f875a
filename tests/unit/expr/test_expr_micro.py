"""benchmarks/expr_micro.py still runs against the expression module and its cases agree with each other."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "expr_micro.py"


def test_expr_micro_runs_every_case() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), "--events", "400", "--repeat", "1"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    rows = {line.rsplit(None, 3)[0]: int(line.split()[-1]) for line in result.stdout.splitlines()[1:]}
    assert list(rows) == ["floor", "filter", "route x3", "3 tests", "regex", "filter stage", "route stage",
                          "filter fresh", "route fresh"]
    assert rows["filter"] == rows["floor"] > 0  # the compiled condition keeps what the hand-written one keeps
    assert rows["filter stage"] == rows["filter"] and rows["route stage"] == rows["route x3"]  # the real stages agree
    assert rows["filter fresh"] == rows["filter"] and rows["route fresh"] == rows["route x3"]  # decoded batches too
