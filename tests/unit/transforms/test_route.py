"""The `route` stage on its own: which events go to which output, and the ack references each part holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config.registry import BuildContext
from agent.core.ack import Ack, AckStatus
from agent.core.batch import Batch, Kind
from agent.observe.stats import ComponentStats
from agent.transforms.route import RouteConfig, RouteTransform

ROUTES = {"audit": 'type == "audit"', "errors": 'level in ["ERROR", "CRITICAL"]'}
EVENTS = [
    {"type": "audit", "level": "INFO"},
    {"type": "audit", "level": "ERROR"},
    {"level": "CRITICAL"},
    {"level": "INFO"},
]


def make(**kw: object) -> RouteTransform:
    stats = ComponentStats("r", "transform", "route")
    config = RouteConfig(inputs=["x"], **{"routes": ROUTES, **kw})  # type: ignore[arg-type]
    return RouteTransform(config, BuildContext("r", Path("."), Path("."), stats))


def routed(parts: list[tuple[str, Batch]]) -> dict[str, list[object]]:
    return {name: batch.events for name, batch in parts}


def test_an_event_goes_to_every_route_that_matches_and_the_rest_to_unmatched() -> None:
    parts = make().route(Batch(list(EVENTS), Kind.LOGS, 400))
    assert routed(parts) == {"audit": EVENTS[:2], "errors": EVENTS[1:3], "_unmatched": [EVENTS[3]]}
    assert parts[0][1].events[1] is parts[1][1].events[0]  # shared, not copied: the topology copies for mutators
    assert [b.byte_size for _, b in parts] == [200, 200, 100]


def test_exclusive_sends_an_event_to_the_first_route_that_matches_only() -> None:
    parts = make(exclusive=True).route(Batch(list(EVENTS), Kind.LOGS, 400))
    assert routed(parts) == {"audit": EVENTS[:2], "errors": [EVENTS[2]], "_unmatched": [EVENTS[3]]}


def test_each_part_holds_a_reference_and_the_ack_completes_after_the_last() -> None:
    done: list[AckStatus] = []
    parts = make().route(Batch(list(EVENTS), Kind.LOGS, 400, [Ack(done.append)]))
    assert len(parts) == 3
    for _, part in parts[:-1]:
        part.finalize(AckStatus.DELIVERED)
    assert done == []
    parts[-1][1].finalize(AckStatus.DELIVERED)
    assert done == [AckStatus.DELIVERED]


def test_a_batch_that_goes_one_way_whole_is_passed_on_as_it_is() -> None:
    batch = Batch([EVENTS[3]], Kind.LOGS, 100, [Ack(lambda _: None)])
    assert make().route(batch) == [("_unmatched", batch)]


def test_an_empty_batch_is_released_as_delivered() -> None:
    done: list[AckStatus] = []
    assert make().route(Batch([], Kind.LOGS, 0, [Ack(done.append)])) == []
    assert done == [AckStatus.DELIVERED]


def test_raw_lines_are_routed_by_their_message_and_stay_bytes() -> None:
    t = make(routes={"errors": 'message contains "ERROR"'})
    parts = t.route(Batch([b"ERROR x", b"fine"], Kind.LINES, 20))
    assert routed(parts) == {"errors": [b"ERROR x"], "_unmatched": [b"fine"]}
    assert all(b.kind is Kind.LINES for _, b in parts)


@pytest.mark.parametrize(("routes", "expected"), [
    ({}, "at least one entry in routes"),
    ({"_unmatched": "a == 1"}, 'routes: "_unmatched" cannot name a route'),
    ({"a.b": "a == 1"}, 'routes: "a.b" cannot name a route'),
    ({"ok": "a ==="}, "routes.ok: column"),
])
def test_invalid_routes_are_config_errors(routes: dict[str, str], expected: str) -> None:
    with pytest.raises(ValueError) as caught:
        RouteConfig(inputs=["x"], routes=routes)
    assert expected in str(caught.value)


def test_outputs_are_the_routes_in_order_then_unmatched() -> None:
    assert RouteConfig(inputs=["x"], routes=ROUTES).named_outputs() == ["audit", "errors", "_unmatched"]
