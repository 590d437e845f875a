from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PIPELINES = sorted((Path(__file__).resolve().parents[2] / "pipelines").glob("*.yaml"))


def test_there_are_example_pipelines() -> None:
    assert len(PIPELINES) >= 2


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.name)
def test_example_pipeline_validates(path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "agent", "validate", "--no-environment", "--deny-warnings",
                             "-c", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
