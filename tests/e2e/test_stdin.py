from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_stdin_to_file_drains_and_exits_at_end_of_input(tmp_path: Path) -> None:
    out = tmp_path / "out.log"
    config = tmp_path / "p.yaml"
    config.write_text(f"""
data_dir: {tmp_path}/data
api: {{enabled: false}}
sources:
  in: {{type: stdin, max_line_bytes: 1KiB}}
sinks:
  out: {{type: file, inputs: [in], encoding: text, path: "{out}"}}
""")
    lines = [b"line %d \xff" % i for i in range(50_000)] + [b"z" * 5000, b"last line without newline"]
    result = subprocess.run([sys.executable, "-m", "agent", "run", "-c", str(config)],
                            input=b"\n".join(lines), capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    written = out.read_bytes().splitlines()
    assert written[:50_000] == lines[:50_000]  # bytes pass through untouched, invalid UTF-8 included
    assert written[50_000] == b"z" * 1024
    assert written[-1] == b"last line without newline"
