"""The component graph: inputs resolved, cycles and type mismatches rejected, order computed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.config.load import did_you_mean
from agent.core.errors import ConfigError

if TYPE_CHECKING:
    from agent.config.pipeline import ComponentDecl


@dataclass(slots=True)
class Graph:
    """Edges of a checked pipeline: upstream ids per component, and a topological order."""

    inputs: dict[str, list[str]]
    consumers: dict[str, list[str]]
    order: list[str]  # every component after all of its inputs
    output_types: dict[str, str]


def check_graph(components: dict[str, ComponentDecl],
                declared: dict[str, str] | None = None) -> tuple[Graph, list[ConfigError], list[str]]:
    """Check wiring; returns the graph, errors and warnings.

    ``declared`` maps every component id in the files to its kind, including those whose config is
    invalid (and so missing from ``components``): an input naming one of them is not "unknown".
    """
    declared = declared if declared is not None else {cid: decl.kind for cid, decl in components.items()}
    errors: list[ConfigError] = []
    inputs: dict[str, list[str]] = {}
    consumers: dict[str, list[str]] = {cid: [] for cid in components}
    for cid, decl in components.items():
        inputs[cid] = []
        if decl.kind == "source":
            continue
        wired, input_errors = check_inputs(decl, decl.inputs, declared)
        errors += input_errors
        for upstream in wired:
            if upstream in components:  # else declared but invalid: its own error is reported
                inputs[cid].append(upstream)
                consumers[upstream].append(cid)
    order, cycle = _topological_order(inputs)
    if cycle:
        decl = components[cycle[0]]
        errors.append(decl.error("inputs form a cycle: " + " -> ".join([*cycle, cycle[0]]), "inputs"))
        return Graph(inputs, consumers, [], {}), errors, []
    output_types = _check_types(components, inputs, order, errors)
    warnings = [
        f"{decl.where()[0]}:{decl.where()[1]}: {decl.kind} \"{cid}\" has no consumers; its events are discarded"
        for cid, decl in components.items()
        if decl.kind != "sink" and not consumers[cid]
    ]
    return Graph(inputs, consumers, order, output_types), errors, warnings


def check_inputs(decl: ComponentDecl, listed: list[Any],
                 declared: dict[str, str]) -> tuple[list[str], list[ConfigError]]:
    """The inputs of a transform or sink that name a component with an output, and an error for each
    other one. ``listed`` may come from a raw mapping: items that are not strings are left to its
    config's own error."""
    if not listed:
        return [], [decl.error("needs at least one input", "inputs")]
    wired: list[str] = []
    errors: list[ConfigError] = []
    for index, upstream in enumerate(listed):
        if not isinstance(upstream, str):
            continue
        if upstream not in declared:
            hint = did_you_mean(upstream, sorted(declared))
            errors.append(decl.error(f'unknown input "{upstream}"{hint}', "inputs", index))
        elif declared[upstream] == "sink":
            errors.append(decl.error(f'input "{upstream}" is a sink, which has no output', "inputs", index))
        elif upstream in wired:
            errors.append(decl.error(f'input "{upstream}" is listed twice', "inputs", index))
        else:
            wired.append(upstream)
    return wired, errors


def _check_types(components: dict[str, ComponentDecl], inputs: dict[str, list[str]], order: list[str],
                 errors: list[ConfigError]) -> dict[str, str]:
    output_types: dict[str, str] = {}
    for cid in order:
        decl = components[cid]
        if decl.kind == "source":
            output_types[cid] = decl.config.output_type()
            continue
        accepted = type(decl.config).input_types
        for index, upstream in enumerate(decl.inputs):
            data_type = output_types.get(upstream)
            if data_type is not None and data_type not in accepted:
                errors.append(decl.error(
                    f'{decl.kind} type "{decl.type}" accepts {" and ".join(sorted(accepted))}, '
                    f'but input "{upstream}" emits {data_type}', "inputs", index))
        upstream_types = {output_types[u] for u in inputs[cid] if u in output_types}
        if decl.kind == "transform" and upstream_types:
            output_types[cid] = decl.config.output_type(sorted(upstream_types)[0])
    return output_types


def _topological_order(inputs: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """Kahn's algorithm; on a cycle, returns one cycle's ids instead."""
    remaining = {cid: set(ups) for cid, ups in inputs.items()}
    order: list[str] = []
    ready = sorted(cid for cid, ups in remaining.items() if not ups)
    while ready:
        cid = ready.pop(0)
        order.append(cid)
        for other, ups in remaining.items():
            if cid in ups:
                ups.discard(cid)
                if not ups and other not in order and other not in ready:
                    ready.append(other)
    if len(order) == len(inputs):
        return order, []
    return [], _find_cycle({c: [u for u in inputs[c] if c not in order] for c in inputs if c not in order})


def _find_cycle(inputs: dict[str, list[str]]) -> list[str]:
    start = sorted(inputs)[0]
    path: list[str] = []
    node = start
    while node not in path:
        path.append(node)
        node = next(u for u in inputs[node] if u in inputs)
    return path[path.index(node):][::-1]
