"""The `agent` command: parse arguments, call into the package, map errors to exit codes."""

from __future__ import annotations

import argparse
import sys

from agent import __version__
from agent.core.errors import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, BuildError, ConfigErrors, StartupError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agent", description="Telemetry collection agent.")
    parser.add_argument("--version", action="version", version=f"agent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a pipeline (the embedded default without -c)")
    run.add_argument("-c", "--config", action="append", default=[], metavar="FILE")

    validate = sub.add_parser("validate", help="check a pipeline config without running it")
    validate.add_argument("-c", "--config", action="append", required=True, metavar="FILE")
    validate.add_argument("--deny-warnings", action="store_true", help="treat warnings as errors")
    validate.add_argument("--check-peers", action="store_true",
                          help="also contact every sink's peer (healthchecks); by default nothing is contacted")
    validate.add_argument("--no-environment", action="store_true", help=argparse.SUPPRESS)  # the default now

    sub.add_parser("schema", help="print the JSON Schema of the config")

    migrate = sub.add_parser("migrate", help="translate another tool's config into a pipeline (printed on stdout)")
    migrate.add_argument("format", choices=["prometheus", "fluent-bit"],
                         help="prometheus: a prometheus.yml; fluent-bit: a Fluent Bit config (classic or YAML)")
    migrate.add_argument("file")
    migrate.add_argument("--parsers", action="append", default=[], metavar="FILE",
                         help="fluent-bit: a parsers file to read besides the config's Parsers_File")
    migrate.add_argument("--allow-partial", action="store_true",
                         help="fluent-bit: exit 0 even when some settings were not translated")

    tap = sub.add_parser("tap", help="stream a sample of what a component emits")
    tap.add_argument("component")
    _api_arguments(tap)
    tap.add_argument("--limit", type=int, default=100)
    tap.add_argument("--seconds", type=float, default=30.0)

    top = sub.add_parser("top", help="live per-component throughput and buffer use")
    _api_arguments(top)
    top.add_argument("--interval", type=float, default=1.0)

    bench = sub.add_parser("bench", help="built-in throughput scenarios, no outside services")
    bench.add_argument("scenario", nargs="?", help="scenario name (default: all); --list shows them")
    bench.add_argument("--list", action="store_true")
    bench.add_argument("--events", type=int, help="events per scenario")
    bench.add_argument("--json", action="store_true", help="one JSON object per scenario on stdout")
    bench.add_argument("--no-progress", action="store_true")
    return parser


def _api_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", action="append", default=[], metavar="FILE",
                        help="read api.address and api.auth_token from the agent's config")
    parser.add_argument("--api", help="the agent's API address (default: from -c, else 127.0.0.1:2020)")
    parser.add_argument("--token", help="the API's bearer token (default: api.auth_token from -c)")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigErrors as exc:
        for error in exc.errors:
            print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except BaseExceptionGroup as group:  # start-up failures of several components at once
        startup, rest = group.split(StartupError)
        if startup is None or rest is not None:
            raise
        for leaf in _leaves(startup):
            print(f"error: {leaf}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE


def _leaves(group: BaseExceptionGroup[StartupError]) -> list[BaseException]:
    return [leaf for exc in group.exceptions
            for leaf in (_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])]


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        return _run(args.config)
    if args.command == "validate":
        from agent.validate import validate

        return validate(args.config, deny_warnings=args.deny_warnings, check_peers=args.check_peers)
    if args.command == "schema":
        from agent.config.schema import config_schema

        sys.stdout.write(config_schema() + "\n")
        return EXIT_OK
    if args.command == "tap":
        from agent.client import Api, tap

        return tap(Api.of(args.config, args.api, args.token), args.component, args.limit, args.seconds)
    if args.command == "top":
        from agent.client import Api, top

        return top(Api.of(args.config, args.api, args.token), args.interval)
    if args.command == "migrate":
        from agent.migrate import main as migrate_main

        return migrate_main(args.format, args.file, args.parsers, args.allow_partial)
    if args.command == "bench":
        from agent.bench import main as bench_main

        return bench_main(args)
    raise AssertionError(args.command)


def _run(paths: list[str]) -> int:
    import uvloop

    from agent.app import Agent, load_pipeline, lock_data_dir
    from agent.observe.logging import hide_secrets, setup_logging
    from agent.runtime import tune_gc

    pipeline = load_pipeline(paths)
    lock_data_dir(pipeline.root.data_dir)  # held until the process ends
    setup_logging(pipeline.root.log_level)
    hide_secrets({pipeline.root.api.auth_token} if pipeline.root.api.auth_token else set())
    agent = Agent(paths, pipeline)
    tune_gc()
    return uvloop.run(agent.run())
