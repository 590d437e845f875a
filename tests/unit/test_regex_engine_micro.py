"""benchmarks/regex_engine_micro.py still runs against the regex codec and prints its four rows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "regex_engine_micro.py"


def test_regex_engine_micro_prints_each_case_and_the_budget() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), "--lines", "300", "--repeat", "1"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    rows = {line[:16].strip(): float(line[16:].split()[0]) for line in result.stdout.splitlines()}
    assert list(rows) == ["re2 match", "regex codec", "python re match", "budget"]
    assert all(value > 0 for value in rows.values())
    assert 1900 < rows["budget"] < 2300  # 40 MiB/s at the harness's ~88 B lines
