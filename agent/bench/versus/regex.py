"""``regex_parsing`` side by side: Apache common log lines over TCP, a regex with named groups, JSON over TCP.

``python -m agent.bench.versus.regex`` (or ``benchmarks/vs_fluent_bit_regex.py``) builds ``--lines`` Apache
common log lines (seeded: the same bytes every time), then for each side starts the process listening on a
TCP port of 127.0.0.1, sends all the lines over one connection from a thread of this process, and counts
the JSON lines that come back on another TCP port (a thread of this process too, so neither peer is charged
to the side measured). The agent runs ``socket`` (tcp) -> ``parse`` (codec regex) -> ``socket`` sink (json);
Fluent Bit a ``tcp`` input (``Format none``), the ``parser`` filter with the same regex (its
``apache_common`` parser of ``../shared/tools/fluent-bit-configs/parsers.conf``) and a ``tcp`` output
(``Format json_lines``). Both take the record's time from ``time`` (``%d/%b/%Y:%H:%M:%S %z``).

Measured from the first byte sent to the last JSON line received: the side's CPU (utime + stime, all
threads) and the wall clock. The figures are MiB of input per CPU second (what one core would sustain)
and MiB/s of wall clock, and the ratio agent / Fluent Bit of each.

``--floor`` runs the agent alone, on the same lines, in three shapes: ``passthrough`` (socket -> socket, each
line sent on as ``{"message": ...}``), ``one_group`` (a parse stage whose regex takes the whole line as one
field) and ``apache`` (the pipeline above): what the pipeline costs around the regex, and what a match costs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agent.bench.peers.lines import HOST
from agent.bench.versus.measure import cpu_seconds, peak_rss_mib
from agent.bench.versus.report import AGENT, FB, header, machine
from agent.bench.versus.sides import (
    FluentBitMissing,
    find_fluent_bit,
    fluent_bit_service,
    fluent_bit_version,
    free_port,
    stop_process,
)
from agent.config.pipeline import load_texts

# Fluent Bit's apache_common parser (shared/tools/fluent-bit-configs/parsers.conf), used by both sides
APACHE_REGEX = (r'^(?<host>[^ ]*) [^ ]* (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)'
                r'(?: +(?<path>[^ ]*) +\S*)?" (?<code>[^ ]*) (?<size>[^ ]*)$')
TIME_FORMAT = "%d/%b/%Y:%H:%M:%S %z"
SEED = 20_261_205
READY_S = 20.0  # how long a side may take to listen
DONE_S = 300.0  # how long all lines may take to come back
FLUSH = "1"  # Fluent Bit's flush interval, seconds
_METHODS = ("GET", "GET", "GET", "POST", "PUT", "DELETE", "HEAD")
_PATHS = ("/", "/index.html", "/apache_pb.gif", "/api/v1/orders", "/api/v1/users/42", "/static/app.js",
          "/healthz", "/search?q=shoes&page=2", "/cart/checkout", "/images/logo.png")
_USERS = ("-", "-", "-", "frank", "alice", "bob")
_CODES = ("200", "200", "200", "200", "304", "404", "500", "301")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def apache_lines(count: int, seed: int = SEED) -> bytes:
    """``count`` Apache common log lines, newline-terminated, the same bytes for the same arguments."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        host = f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        second = i // 1000
        when = (f"{1 + (second // 86400) % 28:02d}/{_MONTHS[(second // 2_419_200) % 12]}/2026:"
                f"{(second // 3600) % 24:02d}:{(second // 60) % 60:02d}:{second % 60:02d} +0000")
        size = "-" if rng.random() < 0.05 else str(rng.randrange(100, 60_000))
        out.append(f'{host} - {rng.choice(_USERS)} [{when}] "{rng.choice(_METHODS)} {rng.choice(_PATHS)} '
                   f'HTTP/1.1" {rng.choice(_CODES)} {size}\n')
    return "".join(out).encode()


SHAPES = {"apache": ("code", APACHE_REGEX), "one_group": ("message", "^(?P<message>.*)$"),
          "passthrough": ("message", None)}  # --floor's agent pipelines: a key of each record, the regex


def agent_config(source_port: int, sink_port: int, api_port: int, data_dir: Path, with_time: bool = True,
                 shape: str = "apache") -> str:
    """The agent's pipeline as YAML: socket -> parse (regex) -> socket (json), or one of the other
    :data:`SHAPES`; checked by the config loader."""
    pattern = SHAPES[shape][1]
    doc: dict[str, Any] = {
        "data_dir": str(data_dir), "api": {"address": f"{HOST}:{api_port}"},
        "sources": {"in": {"type": "socket", "address": f"{HOST}:{source_port}", "mode": "tcp"}},
        "sinks": {"out": {"type": "socket", "inputs": ["parse" if pattern else "in"],
                          "address": f"{HOST}:{sink_port}", "encoding": "json"}}}
    if pattern:
        parse: dict[str, Any] = {"type": "parse", "inputs": ["in"], "codec": "regex", "pattern": pattern}
        if with_time and shape == "apache":
            parse.update(time_key="time", time_format=TIME_FORMAT)
        doc = {**doc, "transforms": {"parse": parse}}
    text = "# regex_parsing: the agent's side\n" + yaml.safe_dump(doc, sort_keys=False)
    load_texts([(text, "<regex_parsing.yaml>")])  # ConfigErrors if the agent would refuse it
    return text


def fluent_bit_parsers(with_time: bool = True) -> str:
    """Fluent Bit's parsers file: the ``apache_common`` parser of the shared configs."""
    text = f"[PARSER]\n    Name        apache_common\n    Format      regex\n    Regex       {APACHE_REGEX}\n"
    return text + (f"    Time_Key    time\n    Time_Format {TIME_FORMAT}\n" if with_time else "")


def fluent_bit_config(source_port: int, sink_port: int, api_port: int, parsers: Path, flush: str = FLUSH) -> str:
    """Fluent Bit's pipeline: tcp (Format none, the line in ``log``) -> parser filter -> tcp (json_lines)."""
    return fluent_bit_service(parsers, api_port, flush) + f"""[INPUT]
    Name    tcp
    Listen  {HOST}
    Port    {source_port}
    Format  none
    Tag     apache

[FILTER]
    Name      parser
    Match     *
    Key_Name  log
    Parser    apache_common

[OUTPUT]
    Name    tcp
    Match   *
    Host    {HOST}
    Port    {sink_port}
    Format  json_lines
"""


class LineCounter:
    """A TCP listener in a thread that counts the newlines received and notes the side's CPU when the
    expected number has arrived; keeps the first line for a look at what was sent."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.listener = socket.create_server((HOST, 0))
        self.port: int = self.listener.getsockname()[1]
        self.lines = 0
        self.first = b""
        self.done = threading.Event()
        self.pid: int | None = None
        self.end: tuple[float, float] | None = None  # (monotonic, CPU s) when the last line arrived
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        """Every connection at once (Fluent Bit's output keeps several open), until :meth:`close`."""
        sel = selectors.DefaultSelector()
        sel.register(self.listener, selectors.EVENT_READ)
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(0.2):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if sock is self.listener:
                        sel.register(self.listener.accept()[0], selectors.EVENT_READ)
                        continue
                    try:
                        data = sock.recv(4 << 20)
                    except ConnectionError:
                        data = b""
                    if not data:
                        sel.unregister(sock)
                        sock.close()
                        continue
                    self._count(data)
        finally:
            for key in list(sel.get_map().values()):
                if key.fileobj is not self.listener:
                    key.fileobj.close()  # type: ignore[union-attr]
            sel.close()

    def _count(self, data: bytes) -> None:
        if len(self.first) < 4096:
            self.first += data[:4096]
        self.lines += data.count(b"\n")
        if self.lines >= self.expected and not self.done.is_set():
            self.end = (time.monotonic(), cpu_seconds(self.pid) if self.pid else 0.0)
            self.done.set()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.listener.close()


@dataclass(slots=True)
class RegexRun:
    """One side's figures."""

    side: str
    repeat: int
    lines: int
    input_mib: float
    cpu_s: float
    wall_s: float
    peak_rss_mib: float

    def to_dict(self) -> dict[str, Any]:
        return {"side": self.side, "repeat": self.repeat, "lines": self.lines, "input_mib": round(self.input_mib, 1),
                "cpu_s": round(self.cpu_s, 3), "wall_s": round(self.wall_s, 3),
                "mib_per_cpu_s": round(self.input_mib / self.cpu_s, 1),
                "mib_per_s": round(self.input_mib / self.wall_s, 1),
                "cpu_us_per_line": round(self.cpu_s / self.lines * 1e6, 2),
                "peak_rss_mib": round(self.peak_rss_mib, 1)}


def _connect(port: int, proc: subprocess.Popen[bytes]) -> socket.socket:
    deadline = time.monotonic() + READY_S
    while True:
        try:
            return socket.create_connection((HOST, port))
        except ConnectionRefusedError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the process did not listen on {port} (exit code {proc.poll()})") from None
            time.sleep(0.05)


def run_side(side: str, binary: Path, payload: bytes, lines: int, workdir: Path, repeat: int,
             with_time: bool = True, flush: str = FLUSH, shape: str = "apache") -> RegexRun:
    """Start ``side`` (the agent's pipeline one of :data:`SHAPES`), send ``payload`` (``lines`` lines), wait for
    as many JSON lines back; its figures."""
    workdir.mkdir(parents=True, exist_ok=True)
    counter = LineCounter(lines)
    source_port, api_port = free_port(), free_port()
    if side == FB:
        parsers = workdir / "parsers.conf"
        parsers.write_text(fluent_bit_parsers(with_time))
        config = workdir / "regex-parsing.conf"
        config.write_text(fluent_bit_config(source_port, counter.port, api_port, parsers, flush))
        argv = [str(binary), "-c", str(config)]
    else:
        config = workdir / "regex_parsing.yaml"
        config.write_text(agent_config(source_port, counter.port, api_port, workdir / "agent-data", with_time,
                                       shape))
        argv = [sys.executable, "-m", "agent", "run", "-c", str(config)]
    log = workdir / f"{side}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
    try:
        counter.pid = proc.pid
        with _connect(source_port, proc) as conn:
            time.sleep(0.5)  # let start-up settle before the clock starts
            started, cpu0 = time.monotonic(), cpu_seconds(proc.pid)
            conn.sendall(payload)
            conn.shutdown(socket.SHUT_WR)
            if not counter.done.wait(DONE_S):
                raise RuntimeError(f"{side}: {counter.lines:,} of {lines:,} lines came back in {DONE_S:.0f}s; "
                                   f"see {log}")
        assert counter.end is not None
        key = f'"{SHAPES[shape][0] if side == AGENT else "code"}"'.encode()
        if not counter.first.startswith(b"{") or key not in counter.first.split(b"\n")[0]:
            raise RuntimeError(f"{side}: the first record is not a parsed line: {counter.first[:300]!r}")
        rss = peak_rss_mib(proc.pid)
        ended, cpu1 = counter.end
        name = side if shape == "apache" else f"{side} {shape}"
        return RegexRun(name, repeat, lines, len(payload) / 2**20, cpu1 - cpu0, ended - started, rss)
    finally:
        stop_process(proc)
        counter.close()


def summary(runs: list[RegexRun]) -> dict[str, Any]:
    """The best (highest MiB per CPU second) run of each side and the ratios agent / Fluent Bit."""
    best = {}
    for side in dict.fromkeys(r.side for r in runs):
        mine = [r.to_dict() for r in runs if r.side == side]
        best[side] = max(mine, key=lambda d: d["mib_per_cpu_s"])
    if FB in best and AGENT in best:
        for key in ("mib_per_cpu_s", "mib_per_s"):
            best[f"ratio_{key}"] = round(best[AGENT][key] / best[FB][key], 2)
    return best


def main(argv: list[str] | None = None) -> int:
    """Run both sides ``--repeats`` times, alternating which goes first; print the figures."""
    argv = sys.argv if argv is None else argv
    parser = argparse.ArgumentParser(prog="vs_fluent_bit_regex", description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-time", action="store_true", help="no time extraction on either side")
    parser.add_argument("--floor", action="store_true",
                        help="the agent alone, passthrough / one_group / apache (see the module docstring)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv[1:])
    binary = Path()
    if not args.floor:
        try:
            binary, _ = find_fluent_bit()
        except FluentBitMissing as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 69
    info = machine("not run" if args.floor else f"{fluent_bit_version(binary)} ({binary})", argv)
    print(header(info), file=sys.stderr)
    payload = apache_lines(args.lines)
    print(f"{len(payload) / 2**20:.1f} MiB, {len(payload) / args.lines:.0f} B a line", file=sys.stderr)
    runs: list[RegexRun] = []
    with tempfile.TemporaryDirectory(prefix="agent-vs-fb-regex-") as tmp:
        for repeat in range(args.repeats):
            if args.floor:
                order = [(AGENT, shape) for shape in SHAPES]
            else:
                order = [(FB, "apache"), (AGENT, "apache")]
            for side, shape in order if repeat % 2 == 0 else order[::-1]:
                run = run_side(side, binary, payload, args.lines, Path(tmp) / f"{side}-{shape}-{repeat}", repeat,
                               with_time=not args.no_time, shape=shape)
                runs.append(run)
                print(json.dumps(run.to_dict()), file=sys.stderr)
    with contextlib.suppress(OSError):
        info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    result = {**info, "runs": [r.to_dict() for r in runs], "summary": summary(runs)}
    print(json.dumps(result, indent=1 if args.json else None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
