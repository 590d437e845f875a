"""An error a component's own check raises about one of its keys points at that key's line, not the component's."""

from __future__ import annotations

import pytest

from agent.config.pipeline import load_texts
from agent.core.errors import ConfigErrors

TEXT = """\
data_dir: /tmp/agent-test
sources:
  s: {type: stdin}
transforms:
  split:
    type: route
    inputs: [s]
    routes:
      audit: 'type == "audit"'
      errors: 'level in ["ERROR",'
sinks:
  out: {type: console, inputs: [split.audit]}
"""


def test_a_bad_route_condition_is_reported_on_its_own_line_with_its_column() -> None:
    with pytest.raises(ConfigErrors) as caught:
        load_texts([(TEXT, "p.yaml")])
    assert str(caught.value) == "p.yaml:10: transforms.split.routes.errors: column 10: unterminated list: expected ']'"



CHECKS = """\
sources:
  s: {type: stdin}
transforms:
  t:
    type: throttle
    inputs: [s]
    window: 1s
    threshold: 0
  r:
    type: route
    inputs: [s]
    routes: {}
sinks:
  d:
    type: datadog_logs
    inputs: [t, r._unmatched]
    api_key: abcdefgh
    batch:
      max_bytes: 1MiB
      max_events: 5000
  k:
    type: kafka
    inputs: [t]
    bootstrap_servers: ["127.0.0.1:9092"]
    topic: "{{ app }}"
"""


def test_a_check_whose_message_starts_with_a_key_is_reported_on_that_key_s_line_and_others_on_the_component_s() -> None:
    with pytest.raises(ConfigErrors) as caught:
        load_texts([(CHECKS, "p.yaml")])
    assert [str(error) for error in caught.value.errors] == [
        "p.yaml:8: transforms.t: threshold must be at least 1",
        "p.yaml:9: transforms.r: a route needs at least one entry in routes",  # names no key
        "p.yaml:20: sinks.d.batch: max_events must be at most 1000 (Datadog's limit of entries per request)",
        "p.yaml:21: sinks.k: default_topic is needed when topic names fields (for events without them)",  # not written
    ]
