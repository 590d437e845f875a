"""A bad setting of throttle, sample, dedupe, log_to_metric or host_metadata is a config error naming the key it
is about and that key's line (not only the component's), with the column within an expression or path."""

from __future__ import annotations

import pytest

from agent.config.pipeline import load_texts
from agent.core.errors import ConfigErrors

HEAD = """\
sources:
  s: {type: stdin}
sinks:
  out: {type: blackhole, inputs: [t]}
transforms:
  t:
"""  # the component's own settings start on line 7


@pytest.mark.parametrize(("settings", "error"), [
    ("type: throttle\ninputs: [s]\nthreshold: 5\nkey: '{{ a '",
     "p.yaml:10: transforms.t.key: unbalanced braces in key template '{{ a '"),
    ("type: throttle\ninputs: [s]\nthreshold: 5\nexclude: 'level =='",
     "p.yaml:10: transforms.t.exclude: column 9: expected a field or a value, got the end"),
    ("type: sample\ninputs: [s]\nrate: 5\nkey: a..b",
     "p.yaml:10: transforms.t.key: column 3: expected a field name after '.'"),
    ("type: sample\ninputs: [s]\nrate: 5\nexclude: 'a =~ \"(\"'",
     "p.yaml:10: transforms.t.exclude: column 6: regex '(': not a valid RE2 regex: missing ): ("),
    ("type: dedupe\ninputs: [s]\nfields:\n  - id\n  - 'a['",
     "p.yaml:9: transforms.t.fields: item 2 ('a['): column 3: expected an index or a quoted key in [...]"),
    ("type: host_metadata\ninputs: [s]\ntarget: a..b",
     "p.yaml:9: transforms.t.target: column 3: expected a field name after '.'"),
    ("type: host_metadata\ninputs: [s]\nrefresh_interval: 0s",
     "p.yaml:9: transforms.t: refresh_interval must be longer than 0s"),
    ("type: log_to_metric\ninputs: [s]\nmetrics:\n  - type: counter\n    name: ok_total\n    condition: 'level =='",
     "p.yaml:12: transforms.t.metrics[0].condition: column 9: expected a field or a value, got the end"),
    ("type: log_to_metric\ninputs: [s]\nmetrics:\n  - type: gauge\n    name: g\n    field: 'a['",
     "p.yaml:12: transforms.t.metrics[0].field: column 3: expected an index or a quoted key in [...]"),
    ("type: log_to_metric\ninputs: [s]\nmetrics:\n  - type: counter\n    name: c\n    labels:\n      svc: a..b",
     "p.yaml:13: transforms.t.metrics[0].labels.svc: column 3: expected a field name after '.'"),
    ("type: log_to_metric\ninputs: [s]\nmetrics:\n  - type: counter\n    name: ok\n  - type: counter\n    name: bad-name",
     "p.yaml:13: transforms.t.metrics[1].name: 'bad-name' is not a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)"),
    ("type: log_to_metric\ninputs: [s]\nmetrics:\n  - {type: counter, name: c}\n  - {type: gauge, name: c, field: v}",
     "p.yaml:9: transforms.t.metrics: metric 'c' is defined twice"),
])
def test_the_error_names_the_key_and_its_line(settings: str, error: str) -> None:
    text = HEAD + "".join(f"    {line}\n" for line in settings.splitlines())
    with pytest.raises(ConfigErrors) as caught:
        load_texts([(text, "p.yaml")])
    assert str(caught.value) == error
