"""`agent validate`: every error in one pass, with no side effects unless peers are checked.

Parse, check every component and the graph, build every component that checked (a factory
may still refuse a config), then print all errors sorted by file and line. Building happens
under :func:`no_side_effects`: nothing is written and nothing is resolved or connected, so a
component that would create a directory or resolve a host at build time cannot do so here.
Peers are contacted only with ``check_peers`` (their healthchecks).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.config.pipeline import Pipeline, check_files, redact_and_sort
from agent.config.registry import BuildContext, lookup
from agent.core.errors import EXIT_CONFIG, EXIT_OK, BuildError, ConfigError, HealthcheckError
from agent.observe.stats import StatsRegistry


def validate(paths: list[str], *, deny_warnings: bool = False, check_peers: bool = False) -> int:
    """Print what is wrong with the config in ``paths``; 0 when valid, 78 when not."""
    pipeline, errors = check_files(paths)
    components, notes = _build_all(pipeline, errors)
    redact_and_sort(errors, pipeline.secrets, pipeline.files)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if errors:
        return EXIT_CONFIG
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    warnings = pipeline.warnings + (asyncio.run(_healthchecks(components)) if check_peers else [])
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if deny_warnings and warnings:
        print("error: warnings denied", file=sys.stderr)
        return EXIT_CONFIG
    print(f"ok: {', '.join(pipeline.files)}: {len(pipeline.components)} components")
    return EXIT_OK


def _build_all(pipeline: Pipeline, errors: list[ConfigError]) -> tuple[dict[str, Any], list[str]]:
    """Build each checked component, adding its build error to ``errors``; also notes on blocked effects."""
    stats = StatsRegistry()
    data_dir = Path(pipeline.root.data_dir)
    built: dict[str, Any] = {}
    notes: list[str] = []
    for cid, decl in pipeline.components.items():
        ctype = lookup(decl.kind, decl.type)
        assert ctype is not None
        ctx = BuildContext(cid, data_dir, Path(decl.file).parent, stats.get(cid, decl.kind, decl.type))
        with no_side_effects() as blocked:
            try:
                built[cid] = ctype.build(decl.config, ctx)
            except BuildError as exc:
                errors.append(decl.error(str(exc)))
            except Exception as exc:  # reported, whatever the factory raised
                if not blocked:
                    errors.append(decl.error(f"cannot be built: {exc}"))
        if blocked:
            notes.append(f'{decl.kind} "{cid}" was not fully checked: building it would {blocked[0]}, '
                         "and validate changes nothing")
    return built, notes


async def _healthchecks(components: dict[str, Any]) -> list[str]:
    problems = []
    for cid, component in components.items():
        check = getattr(component, "healthcheck", None)
        if check is None:
            continue
        try:
            await check()
        except HealthcheckError as exc:
            problems.append(f'sink "{cid}" healthcheck failed: {exc}')
    return problems


# -- no side effects ----------------------------------------------------------------------------------

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_CHANGES = {  # audit event -> what it would do
    "os.mkdir": "create", "os.rename": "rename", "os.remove": "remove", "os.rmdir": "remove",
    "os.truncate": "truncate", "os.link": "link", "os.symlink": "link", "os.chmod": "change",
    "os.chown": "change", "os.utime": "touch", "shutil.rmtree": "remove", "shutil.move": "move",
}
_NETWORK = {"socket.connect", "socket.bind", "socket.sendto", "socket.getaddrinfo", "socket.gethostbyname",
            "socket.gethostbyname_ex", "socket.gethostbyaddr"}
_blocked: list[str] | None = None  # set while a guard is active
_installed = False


@contextlib.contextmanager
def no_side_effects() -> Iterator[list[str]]:
    """Refuse (PermissionError) every write to the disk and every network call made inside; yields
    the list of what was refused. Python's own bytecode cache is let through."""
    global _blocked, _installed
    if not _installed:
        sys.addaudithook(_audit)
        _installed = True
    blocked: list[str] = []
    _blocked = blocked
    try:
        yield blocked
    finally:
        _blocked = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _blocked is None:
        return
    if event == "open":
        path, mode, flags = args
        writes = bool(flags & _WRITE_FLAGS) if isinstance(flags, int) else any(c in str(mode) for c in "wax+")
        what = f"write {path}" if writes else None
    elif event in _CHANGES:
        path = args[0]
        what = f"{_CHANGES[event]} {path}"
    elif event in _NETWORK:
        peer = args[0] if event.startswith(("socket.getaddr", "socket.gethost")) else args[1]
        path, what = "", f"use the network ({event} {peer})"
    else:
        return
    if what is None or "__pycache__" in str(path):
        return
    _blocked.append(what)
    raise PermissionError(f"agent validate does not {what}")
