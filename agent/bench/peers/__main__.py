"""``python -m agent.bench.peers ROLE ...``: the command line of a peer process (roles: see the package)."""

from __future__ import annotations

import argparse

from agent.bench.peers.elasticsearch import bulk
from agent.bench.peers.lines import LINE_BYTES
from agent.bench.peers.load import receive, send, write
from agent.bench.peers.remote_write import remote_write
from agent.bench.peers.targets import targets


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m agent.bench.peers")
    sub = parser.add_subparsers(dest="role", required=True)
    snd = sub.add_parser("send")
    snd.add_argument("--port", type=int, required=True)
    snd.add_argument("--lines", type=int, required=True)
    snd.add_argument("--connections", type=int, default=4)
    snd.add_argument("--line-bytes", type=int, default=LINE_BYTES)
    rcv = sub.add_parser("receive")
    rcv.add_argument("--lines", type=int, required=True)
    rcv.add_argument("--check-order", action="store_true")
    rcv.add_argument("--line-bytes", type=int, default=LINE_BYTES)
    wrt = sub.add_parser("write")
    wrt.add_argument("--path", required=True)
    wrt.add_argument("--lines", type=int, required=True)
    wrt.add_argument("--line-bytes", type=int, default=LINE_BYTES)
    blk = sub.add_parser("bulk")
    blk.add_argument("--documents", type=int, required=True)
    sub.add_parser("remote_write")
    tgt = sub.add_parser("targets")
    tgt.add_argument("--targets", type=int, required=True)
    tgt.add_argument("--series", type=int, required=True)
    args = parser.parse_args(argv)
    if args.role == "remote_write":
        remote_write()
    elif args.role == "targets":
        targets(args.targets, args.series)
    elif args.role == "bulk":
        bulk(args.documents)
    elif args.role == "send":
        send(args.port, args.lines, args.connections, args.line_bytes)
    elif args.role == "write":
        write(args.path, args.lines, args.line_bytes)
    else:
        receive(args.lines, args.check_order, args.line_bytes)


if __name__ == "__main__":
    try:
        _main()
    except (KeyboardInterrupt, BrokenPipeError):
        raise SystemExit(1) from None
