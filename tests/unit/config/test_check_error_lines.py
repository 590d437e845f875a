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

