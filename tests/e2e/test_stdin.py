from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path


def stdin_to_file(tmp_path: Path, source_options: str = "") -> tuple[Path, Path]:
    """A config reading stdin into a text file; returns the config's path and the file's."""
    out = tmp_path / "out.log"
    config = tmp_path / "p.yaml"
    config.write_text(f"""
data_dir: {tmp_path}/data
api: {{enabled: false}}
sources:
  in: {{type: stdin{source_options}}}
sinks:
  out: {{type: file, inputs: [in], encoding: text, path: "{out}"}}
""")
    return config, out


def test_stdin_to_file_drains_and_exits_at_end_of_input(tmp_path: Path) -> None:
    config, out = stdin_to_file(tmp_path, ", max_line_bytes: 1KiB")
    lines = [b"line %d \xff" % i for i in range(50_000)] + [b"z" * 5000, b"last line without newline"]
    result = subprocess.run([sys.executable, "-m", "agent", "run", "-c", str(config)],
                            input=b"\n".join(lines), capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    written = out.read_bytes().splitlines()
    assert written[:50_000] == lines[:50_000]  # bytes pass through untouched, invalid UTF-8 included
    assert written[50_000] == b"z" * 1024
    assert written[-1] == b"last line without newline"


def test_sigterm_while_stdin_stays_open_exits_cleanly(tmp_path: Path) -> None:
    """The reader thread blocked on an open pipe must not abort the interpreter at exit (was exit -6)."""
    config, out = stdin_to_file(tmp_path)
    stderr_path = tmp_path / "stderr"
    with open(stderr_path, "wb") as stderr_file:
        proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(config)], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=stderr_file)
    try:
        assert proc.stdin is not None
        proc.stdin.write(b"first\nsecond\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 20
        while not (out.exists() and out.read_bytes().count(b"\n") == 2):
            assert time.monotonic() < deadline, "lines never reached the file"
            assert proc.poll() is None, stderr_path.read_text()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)  # stdin is still open: the reader thread is blocked in read()
        assert proc.wait(20) == 0, stderr_path.read_text()
        assert "Fatal Python error" not in stderr_path.read_text()
        assert out.read_bytes() == b"first\nsecond\n"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdin.close()
