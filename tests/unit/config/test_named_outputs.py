"""Named outputs in the config: `<route>.<name>` inputs are checked, located and suggested like any other."""

from __future__ import annotations

import agent.transforms.route  # noqa: F401 - registers the type
from agent.config.pipeline import check_texts

HEAD = """\
sources:
  gen: {type: generate, format: docker}
transforms:
  split:
    type: route
    routes: {audit: 'type == "audit"', errors: 'level == "ERROR"'}
    inputs: [gen]
sinks:
"""


def check(sinks: str) -> tuple[list[str], list[str]]:
    pipeline, errors = check_texts([(HEAD + sinks, "p.yaml")])
    return [str(e) for e in errors], pipeline.warnings


def test_each_route_and_unmatched_can_be_read_and_an_unread_route_is_fine() -> None:
    errors, warnings = check("  a: {type: blackhole, inputs: [split.audit]}\n"
                             "  rest: {type: blackhole, inputs: [split._unmatched, gen]}\n")
    assert errors == [] and warnings == []


def test_graph_wires_each_named_output_to_its_readers() -> None:
    pipeline, errors = check_texts([(HEAD + "  a: {type: blackhole, inputs: [split.audit, split.errors]}\n"
                                     "  b: {type: blackhole, inputs: [split.errors]}\n", "p.yaml")])
    assert errors == []
    graph = pipeline.graph
    assert graph.consumers["split.audit"] == ["a"]
    assert graph.consumers["split.errors"] == ["a", "b"]
    assert graph.consumers["split._unmatched"] == []
    assert "split" not in graph.consumers
    assert graph.inputs["a"] == ["split"]  # in components: the drain waits for the route once
    assert graph.named == {"split": ["audit", "errors", "_unmatched"]}


def test_an_unknown_route_name_is_an_error_at_its_line_with_a_suggestion() -> None:
    errors, _ = check("  a: {type: blackhole, inputs: [split.audt]}\n")
    assert errors == ['p.yaml:9: sinks.a.inputs[0]: unknown input "split.audt": "split" has no output "audt"; '
                      'did you mean "audit"? (its outputs: audit, errors, _unmatched)']


def test_a_misspelt_route_id_suggests_the_named_output() -> None:
    errors, _ = check("  a: {type: blackhole, inputs: [splt.audit]}\n")
    assert errors == ['p.yaml:9: sinks.a.inputs[0]: unknown input "splt.audit"; did you mean "split.audit"?']


def test_a_route_read_whole_says_which_outputs_it_has() -> None:
    errors, _ = check("  a: {type: blackhole, inputs: [split]}\n")
    assert errors == ['p.yaml:9: sinks.a.inputs[0]: "split" has named outputs; take one of them: '
                      '"split.audit", "split.errors", "split._unmatched"']


def test_a_component_with_one_output_has_no_named_ones() -> None:
    errors, _ = check("  a: {type: blackhole, inputs: [gen.audit]}\n")
    assert errors == ['p.yaml:9: sinks.a.inputs[0]: unknown input "gen.audit": "gen" has one output, named "gen"']


def test_a_route_nobody_reads_is_warned_about_like_any_component() -> None:
    _, warnings = check("  a: {type: blackhole, inputs: [gen]}\n")
    assert warnings == ['p.yaml:4: transform "split" has no consumers; its events are discarded']


def test_a_route_of_an_invalid_route_is_not_called_unknown() -> None:
    text = HEAD.replace("inputs: [gen]", "inputs: [gen]\n    exclusive: maybe") + \
        "  a: {type: blackhole, inputs: [split.audit, nosuch]}\n"
    errors = [str(e) for e in check_texts([(text, "p.yaml")])[1]]
    assert len(errors) == 2
    assert "transforms.split.exclusive" in errors[0]
    assert errors[1] == 'p.yaml:10: sinks.a.inputs[1]: unknown input "nosuch"'
