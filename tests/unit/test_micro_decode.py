"""benchmarks/micro_decode.py still runs against the decoders' current signatures (it is not imported elsewhere)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "micro_decode.py"


def test_micro_decode_runs_and_counts_every_line() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), "--lines", "500", "--repeat", "1"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    rows = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    assert rows == ["orjson.loads", "docker", "cri", "raw", "docker+multiline"]
