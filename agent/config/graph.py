"""The component graph: inputs resolved, cycles and type mismatches rejected, order computed.

A component has one output, named by its id, unless its config names its outputs (``named_outputs()``,
as ``route`` does): then each is a separate output, ``<id>.<name>``, and there is no bare ``<id>`` one.
An input names an output; ``inputs`` and ``order`` are in terms of components.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent.config.load import did_you_mean
from agent.core.errors import ConfigError

if TYPE_CHECKING:
    from agent.config.pipeline import ComponentDecl


@dataclass(slots=True)
class Graph:
    """Edges of a checked pipeline: upstream ids per component, and a topological order."""

    inputs: dict[str, list[str]]  # upstream component ids
    consumers: dict[str, list[str]]  # per output (a component id, or "<id>.<name>"): the components reading it
    order: list[str]  # every component after all of its inputs
    output_types: dict[str, str]
    named: dict[str, list[str]] = field(default_factory=dict)  # the named outputs of components that have them


def named_outputs(config: Any) -> list[str] | None:
    """The outputs a component's config names (``route``), or None for the one default output."""
    names = getattr(config, "named_outputs", None)
    return None if names is None else list(names())


def output_owner(output: str, declared: dict[str, str]) -> str:
    """The id of the component whose output ``output`` is (``output`` itself unless it is ``<id>.<name>``)."""
    if output in declared:
        return output
    owner, dot, _ = output.rpartition(".")
    return owner if dot and owner in declared else output


def check_graph(components: dict[str, ComponentDecl],
                declared: dict[str, str] | None = None) -> tuple[Graph, list[ConfigError], list[str]]:
    """Check wiring; returns the graph, errors and warnings.

    ``declared`` maps every component id in the files to its kind, including those whose config is
    invalid (and so missing from ``components``): an input naming one of them is not "unknown".
    """
    declared = declared if declared is not None else {cid: decl.kind for cid, decl in components.items()}
    errors: list[ConfigError] = []
    inputs: dict[str, list[str]] = {}
    outputs = {cid: named_outputs(decl.config) for cid, decl in components.items()}
    named = {cid: names for cid, names in outputs.items() if names is not None}
    consumers: dict[str, list[str]] = {cid: [] for cid in components if cid not in named}
    consumers.update({f"{cid}.{name}": [] for cid, names in named.items() for name in names})
    for cid, decl in components.items():
        inputs[cid] = []
        if decl.kind == "source":
            continue
        wired, input_errors = check_inputs(decl, decl.inputs, declared, outputs)
        errors += input_errors
        for output in wired:
            upstream = output_owner(output, declared)
            if upstream in components:  # else declared but invalid: its own error is reported
                if upstream not in inputs[cid]:
                    inputs[cid].append(upstream)
                consumers[output].append(cid)
    order, cycle = _topological_order(inputs)
    if cycle:
        decl = components[cycle[0]]
        errors.append(decl.error("inputs form a cycle: " + " -> ".join([*cycle, cycle[0]]), "inputs"))
        return Graph(inputs, consumers, [], {}, named), errors, []
    output_types = _check_types(components, inputs, order, errors, declared)
    read = {upstream for ups in inputs.values() for upstream in ups}
    warnings = [
        f"{decl.where()[0]}:{decl.where()[1]}: {decl.kind} \"{cid}\" has no consumers; its events are discarded"
        for cid, decl in components.items()
        if decl.kind != "sink" and cid not in read
    ]
    return Graph(inputs, consumers, order, output_types, named), errors, warnings


def check_inputs(decl: ComponentDecl, listed: list[Any], declared: dict[str, str],
                 outputs: dict[str, list[str] | None] | None = None) -> tuple[list[str], list[ConfigError]]:
    """The inputs of a transform or sink that name an output, and an error for each other one.

    ``outputs`` holds, for each valid component, its named outputs (None: its one output); a
    ``<id>.<name>`` of a declared but invalid component is let through (its own error is reported).
    ``listed`` may come from a raw mapping: items that are not strings are left to its config's own
    error."""
    if not listed:
        return [], [decl.error("needs at least one input", "inputs")]
    wired: list[str] = []
    errors: list[ConfigError] = []
    for index, output in enumerate(listed):
        if not isinstance(output, str):
            continue
        problem = _output_problem(output, declared, outputs or {})
        if problem is None and output in wired:
            problem = f'input "{output}" is listed twice'
        if problem is not None:
            errors.append(decl.error(problem, "inputs", index))
        else:
            wired.append(output)
    return wired, errors


def _output_problem(output: str, declared: dict[str, str], outputs: dict[str, list[str] | None]) -> str | None:
    """Why ``output`` names no output of a declared component, or None if it does."""
    owner = output_owner(output, declared)
    if owner not in declared:
        named = [f"{cid}.{name}" for cid, names in outputs.items() for name in names or ()]
        return f'unknown input "{output}"{did_you_mean(output, sorted({*declared, *named}))}'
    if declared[owner] == "sink":
        return f'input "{owner}" is a sink, which has no output'
    if owner not in outputs:
        return None  # declared but invalid: its own error is reported
    names = outputs[owner]
    if owner == output:
        if names is None:
            return None
        return f'"{owner}" has named outputs; take one of them: ' + ", ".join(f'"{owner}.{n}"' for n in names)
    name = output[len(owner) + 1:]
    if names is None:
        return f'unknown input "{output}": "{owner}" has one output, named "{owner}"'
    if name not in names:
        return (f'unknown input "{output}": "{owner}" has no output "{name}"{did_you_mean(name, names)} '
                f'(its outputs: {", ".join(names)})')
    return None


def _check_types(components: dict[str, ComponentDecl], inputs: dict[str, list[str]], order: list[str],
                 errors: list[ConfigError], declared: dict[str, str]) -> dict[str, str]:
    output_types: dict[str, str] = {}
    for cid in order:
        decl = components[cid]
        if decl.kind == "source":
            output_types[cid] = decl.config.output_type()
            continue
        accepted = type(decl.config).input_types
        for index, upstream in enumerate(decl.inputs):
            data_type = output_types.get(output_owner(upstream, declared))
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
