"""`agent validate`: parse, check the graph, build every component, then run healthchecks."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from agent.config.pipeline import Pipeline, load_files
from agent.core.errors import EXIT_CONFIG, EXIT_OK, HealthcheckError
from agent.observe.stats import StatsRegistry
from agent.topology.running import build_component


def validate(paths: list[str], *, deny_warnings: bool = False, healthchecks: bool = True) -> int:
    """Print what is wrong with the config in ``paths``; 0 when valid, 78 when not."""
    pipeline = load_files(paths)  # ConfigErrors -> 78 in the CLI
    for warning in pipeline.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    components = _build_all(pipeline)
    problems = asyncio.run(_healthchecks(components)) if healthchecks else []
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    if deny_warnings and (pipeline.warnings or problems):
        print("error: warnings denied", file=sys.stderr)
        return EXIT_CONFIG
    print(f"ok: {', '.join(pipeline.files)}: {len(pipeline.components)} components")
    return EXIT_OK


def _build_all(pipeline: Pipeline) -> dict[str, object]:
    stats = StatsRegistry()
    data_dir = Path(pipeline.root.data_dir)
    return {cid: build_component(decl, data_dir, stats.get(cid, decl.kind, decl.type))
            for cid, decl in pipeline.components.items()}


async def _healthchecks(components: dict[str, object]) -> list[str]:
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
