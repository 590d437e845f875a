"""The data both processes read: Docker json-file lines with an app's JSON record inside, deterministic."""

from __future__ import annotations

import calendar
import random
import subprocess
import time
from pathlib import Path

import orjson

from agent.sources.generate import _app_record

FILES = 4  # lines are shared out over this many files, as four containers on a node
POOL = 4096  # distinct app records per file; every line still differs by its seq and times
SEED = 20_260_115
BASE = calendar.timegm((2026, 1, 15, 10, 0, 0))  # fixed, so the bytes (and index names) never change
_CHUNK = 4096  # lines per write


def log_paths(directory: Path, files: int = FILES) -> list[Path]:
    """The files :func:`write_logs` writes: ``bench-<k>.log`` (plain names: no kubelet metadata to derive)."""
    return [directory / f"bench-{k}.log" for k in range(files)]


def _pool(rng: random.Random, size: int) -> list[dict[str, object]]:
    records = []
    for i in range(size):
        record = _app_record(rng, BASE, i)
        record["span_id"] = f"{rng.getrandbits(64):016x}"
        records.append(record)
    return records


def _lines(pool: list[dict[str, object]], first: int, count: int) -> bytes:
    """Lines ``first`` .. ``first + count - 1``: line i is at BASE + i ms and carries ``seq: i``."""
    out = []
    dumps, n = orjson.dumps, len(pool)
    for i in range(first, first + count):
        second = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(BASE + i // 1000))
        record = pool[i % n]
        record["seq"] = i
        record["timestamp"] = f"{second}.{i % 1000:03d}Z"
        stream = "stderr" if record["level"] == "error" else "stdout"
        log = dumps(record).decode() + "\n"
        out.append(dumps({"log": log, "stream": stream, "time": f"{second}.{i % 1000:03d}{i % 997:06d}Z"}))
    out.append(b"")
    return b"\n".join(out)


def write_logs(directory: Path, lines: int, files: int = FILES) -> tuple[list[Path], int]:
    """Write ``lines`` Docker json-file lines (~380 B each) over ``files`` files; return (paths, bytes).

    The same ``lines`` and ``files`` always give the same bytes (seeded, fixed clock).
    """
    rng = random.Random(SEED)
    paths = log_paths(directory, files)
    share, extra = divmod(lines, files)
    first = total = 0
    for k, path in enumerate(paths):
        n = share + (1 if k < extra else 0)
        pool = _pool(rng, min(POOL, max(n, 1)))
        with path.open("wb") as fh:
            for start in range(first, first + n, _CHUNK):
                fh.write(_lines(pool, start, min(_CHUNK, first + n - start)))
        first += n
        total += path.stat().st_size
    return paths, total


def warm(paths: list[Path]) -> None:
    """Read the files once (``cat > /dev/null``) so both processes read them from the page cache."""
    subprocess.run(["cat", *map(str, paths)], stdout=subprocess.DEVNULL, check=True)
