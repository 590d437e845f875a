"""Relabelling as Prometheus does it.

Cases marked "relabel_test.go" are translated from Prometheus's model/relabel/relabel_test.go (TestRelabel,
TestRelabelValidate, TestTargetLabelLegacyValidity, BenchmarkRelabel's configs). Values marked "Go" were
computed with Go's own regexp (ExpandString, Compile), crypto/md5 and strings.ToLower/ToUpper (Go 1.19).
"""

from __future__ import annotations

import msgspec
import pytest
import yaml

from agent.prometheus.relabel import RelabelConfig, Relabeler


def rules(*configs: dict) -> Relabeler:
    return Relabeler(msgspec.convert(list(configs), list[RelabelConfig]))


def rules_yaml(text: str) -> Relabeler:
    return Relabeler(msgspec.convert(yaml.safe_load(text), list[RelabelConfig]))


# relabel_test.go, TestRelabel: (input, rules, output or None when dropped).
GO_CASES = [
    ({"a": "foo", "b": "bar", "c": "baz"},
     [{"source_labels": ["a"], "regex": "f(.*)", "target_label": "d", "replacement": "ch${1}-ch${1}"}],
     {"a": "foo", "b": "bar", "c": "baz", "d": "choo-choo"}),
    ({"a": "foo", "b": "bar", "c": "baz"},
     [{"source_labels": ["a", "b"], "regex": "f(.*);(.*)r", "target_label": "a", "replacement": "b${1}${2}m"},
      {"source_labels": ["c", "a"], "regex": "(b).*b(.*)ba(.*)", "target_label": "d", "replacement": "$1$2$2$3"}],
     {"a": "boobam", "b": "bar", "c": "baz", "d": "boooom"}),
    ({"a": "foo"},
     [{"source_labels": ["a"], "regex": ".*o.*", "action": "drop"},
      {"source_labels": ["a"], "regex": "f(.*)", "target_label": "d", "replacement": "ch$1-ch$1"}],
     None),
    ({"a": "foo", "b": "bar"}, [{"source_labels": ["a"], "regex": ".*o.*", "action": "drop"}], None),
    ({"a": "abc"}, [{"source_labels": ["a"], "regex": ".*(b).*", "target_label": "d"}], {"a": "abc", "d": "b"}),
    ({"a": "foo"}, [{"source_labels": ["a"], "regex": "no-match", "action": "drop"}], {"a": "foo"}),
    ({"a": "foo"}, [{"source_labels": ["a"], "regex": "f|o", "action": "drop"}], {"a": "foo"}),  # anchored
    ({"a": "foo"}, [{"source_labels": ["a"], "regex": "no-match", "action": "keep"}], None),
    ({"a": "foo"}, [{"source_labels": ["a"], "regex": "f.*", "action": "keep"}], {"a": "foo"}),
    # No replacement must be applied if there is no match.
    ({"a": "boo"}, [{"source_labels": ["a"], "regex": "f", "target_label": "b", "replacement": "bar"}], {"a": "boo"}),
    # Blank replacement deletes the label.
    ({"a": "foo", "f": "baz"},
     [{"source_labels": ["a"], "regex": "(f).*", "target_label": "$1", "replacement": "$2"}], {"a": "foo"}),
    ({"a": "foo", "b": "bar", "c": "baz"},
     [{"source_labels": ["c"], "target_label": "d", "action": "hashmod", "modulus": 1000}],
     {"a": "foo", "b": "bar", "c": "baz", "d": "976"}),
    ({"a": "foo\nbar"},
     [{"source_labels": ["a"], "target_label": "b", "action": "hashmod", "modulus": 1000}],
     {"a": "foo\nbar", "b": "734"}),
    ({"a": "foo", "b1": "bar", "b2": "baz"},
     [{"regex": "(b.*)", "replacement": "bar_${1}", "action": "labelmap"}],
     {"a": "foo", "b1": "bar", "b2": "baz", "bar_b1": "bar", "bar_b2": "baz"}),
    ({"a": "foo", "__meta_my_bar": "aaa", "__meta_my_baz": "bbb", "__meta_other": "ccc"},
     [{"regex": "__meta_(my.*)", "replacement": "${1}", "action": "labelmap"}],
     {"a": "foo", "__meta_my_bar": "aaa", "__meta_my_baz": "bbb", "__meta_other": "ccc",
      "my_bar": "aaa", "my_baz": "bbb"}),
    ({"a": "some-name-value"},
     [{"source_labels": ["a"], "regex": "some-([^-]+)-([^,]+)", "replacement": "${2}", "target_label": "${1}"}],
     {"a": "some-name-value", "name": "value"}),
    ({"a": "some-name-value"},  # ${3} does not exist: an empty value, nothing set
     [{"source_labels": ["a"], "regex": "some-([^-]+)-([^,]+)", "replacement": "${3}", "target_label": "${1}"}],
     {"a": "some-name-value"}),
    ({"a": "some-name-0"},  # target expands to "": invalid, skipped
     [{"source_labels": ["a"], "regex": "some-([^-]+)-([^,]+)", "replacement": "${1}", "target_label": "${3}"},
      {"source_labels": ["a"], "regex": "some-([^-]+)(-[^,]+)", "replacement": "${1}", "target_label": "${3}"}],
     {"a": "some-name-0"}),
    ({"__meta_sd_tags": "path:/secret,job:some-job,label:foo=bar"},
     [{"source_labels": ["__meta_sd_tags"], "regex": "(?:.+,|^)path:(/[^,]+).*", "replacement": "${1}",
       "target_label": "__metrics_path__"},
      {"source_labels": ["__meta_sd_tags"], "regex": "(?:.+,|^)job:([^,]+).*", "replacement": "${1}",
       "target_label": "job"},
      {"source_labels": ["__meta_sd_tags"], "regex": "(?:.+,|^)label:([^=]+)=([^,]+).*", "replacement": "${2}",
       "target_label": "${1}"}],
     {"__meta_sd_tags": "path:/secret,job:some-job,label:foo=bar", "__metrics_path__": "/secret",
      "job": "some-job", "foo": "bar"}),
    # prometheus/prometheus#12283: a label dropped and set again in later rules.
    ({"__meta_kubernetes_pod_container_port_name": "foo", "__meta_kubernetes_pod_annotation_XXX_metrics_port": "9091"},
     [{"regex": "^__meta_kubernetes_pod_container_port_name$", "action": "labeldrop"},
      {"source_labels": ["__meta_kubernetes_pod_annotation_XXX_metrics_port"], "regex": "(.+)",
       "replacement": "metrics", "target_label": "__meta_kubernetes_pod_container_port_name"},
      {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": "^metrics$", "action": "keep"}],
     {"__meta_kubernetes_pod_annotation_XXX_metrics_port": "9091",
      "__meta_kubernetes_pod_container_port_name": "metrics"}),
    ({"a": "foo", "b1": "bar", "b2": "baz"}, [{"regex": "(b.*)", "action": "labelkeep"}], {"b1": "bar", "b2": "baz"}),
    ({"a": "foo", "b1": "bar", "b2": "baz"}, [{"regex": "(b.*)", "action": "labeldrop"}], {"a": "foo"}),
    ({"foo": "bAr123Foo"},
     [{"source_labels": ["foo"], "action": "uppercase", "target_label": "foo_uppercase"},
      {"source_labels": ["foo"], "action": "lowercase", "target_label": "foo_lowercase"}],
     {"foo": "bAr123Foo", "foo_lowercase": "bar123foo", "foo_uppercase": "BAR123FOO"}),
    ({"__tmp_port": "1234", "__port1": "1234", "__port2": "5678"},
     [{"source_labels": ["__tmp_port"], "action": "keepequal", "target_label": "__port1"}],
     {"__tmp_port": "1234", "__port1": "1234", "__port2": "5678"}),
    ({"__tmp_port": "1234", "__port1": "1234", "__port2": "5678"},
     [{"source_labels": ["__tmp_port"], "action": "dropequal", "target_label": "__port1"}], None),
    ({"__tmp_port": "1234", "__port1": "1234", "__port2": "5678"},
     [{"source_labels": ["__tmp_port"], "action": "dropequal", "target_label": "__port2"}],
     {"__tmp_port": "1234", "__port1": "1234", "__port2": "5678"}),
    ({"__tmp_port": "1234", "__port1": "1234", "__port2": "5678"},
     [{"source_labels": ["__tmp_port"], "action": "keepequal", "target_label": "__port2"}], None),
    # `.` matches a newline (Prometheus anchors as ^(?s:regex)$).
    ({"a": "line1\nline2", "b": "bar", "c": "baz"},
     [{"source_labels": ["a"], "regex": "line1.*line2", "target_label": "d", "replacement": "match${1}"}],
     {"a": "line1\nline2", "b": "bar", "c": "baz", "d": "match"}),
    ({"a": "line1\nline2"},
     [{"source_labels": ["a"], "regex": "(line1).*(?<second>line2)", "target_label": "label1_${1}",
       "replacement": "val_${second}"},
      {"source_labels": ["a"], "regex": "(line1).*(?<second>line2)", "target_label": "label2_$1",
       "replacement": "val_$second"}],
     {"a": "line1\nline2", "label1_line1": "val_line2", "label2_line1": "val_line2"}),
    ({"__name__": "http_requests_total"},
     [{"source_labels": ["__name__"], "regex": ".*_total$", "target_label": "__type__", "replacement": "counter"}],
     {"__name__": "http_requests_total", "__type__": "counter"}),
]


@pytest.mark.parametrize(("labels", "configs", "expected"), GO_CASES)
def test_relabel_test_go_cases(labels: dict, configs: list[dict], expected: dict | None) -> None:
    before = dict(labels)
    assert rules(*configs).apply(labels) == expected
    assert labels == before  # the input is never changed


def test_defaults_are_prometheus_defaults() -> None:
    config = RelabelConfig(target_label="x")
    assert (config.separator, config.regex, config.replacement, config.action) == (";", "(.*)", "$1", "replace")
    assert config.source_labels == [] and config.modulus is None
    # source values joined by ";", the whole of it copied by the default (.*) / $1
    assert rules({"source_labels": ["a", "b", "missing"], "target_label": "x"}).apply({"a": "1", "b": "2"}) == {
        "a": "1", "b": "2", "x": "1;2;"}
    # no source labels: the value is "", and (.*) matches it: a constant label
    assert rules({"target_label": "cluster", "replacement": "prod"}).apply({"a": "1"}) == {"a": "1", "cluster": "prod"}
    # an empty result deletes the target
    assert rules({"source_labels": ["missing"], "target_label": "a"}).apply({"a": "1", "b": "2"}) == {"b": "2"}


def test_conf_good_example_from_benchmark() -> None:
    """relabel_test.go BenchmarkRelabel "example" (prometheus/config/testdata/conf.good.yml); ``regex:`` empty
    is the empty regex, which matches only ""."""
    relabeler = rules_yaml("""
        - source_labels: [job, __meta_dns_name]
          regex: "(.*)some-[regex]"
          target_label: job
          replacement: foo-${1}
        - source_labels: [abc]
          target_label: cde
        - replacement: static
          target_label: abc
        - regex:
          replacement: static
          target_label: abc
    """)
    got = relabeler.apply({"__meta_dns_name": "example-some-x.com", "abc": "def", "job": "foo"})
    assert got == {"__meta_dns_name": "example-some-x.com", "abc": "static", "cde": "def", "job": "foo"}
    assert rules({"regex": None, "source_labels": ["a"], "action": "keep"}).apply({"a": "x"}) is None
    assert rules({"regex": None, "source_labels": ["a"], "action": "keep"}).apply({}) == {}


KUBERNETES = """
- source_labels: [__meta_kubernetes_pod_container_port_name]
  regex: .*-metrics
  action: keep
- source_labels: [__meta_kubernetes_pod_label_name]
  action: drop
  regex: ""
- source_labels: [__meta_kubernetes_pod_phase]
  regex: Succeeded|Failed
  action: drop
- source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]
  regex: "false"
  action: drop
- source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scheme]
  target_label: __scheme__
  regex: (https?)
- source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_path]
  target_label: __metrics_path__
  regex: (.+)
- source_labels: [__address__, __meta_kubernetes_pod_annotation_prometheus_io_port]
  target_label: __address__
  regex: (.+?)(\\:\\d+)?;(\\d+)
  replacement: $1:$3
- regex: __meta_kubernetes_pod_annotation_prometheus_io_param_(.+)
  replacement: __param_$1
  action: labelmap
- regex: __meta_kubernetes_pod_label_prometheus_io_label_(.+)
  action: labelmap
- source_labels: [__meta_kubernetes_namespace, __meta_kubernetes_pod_label_name]
  separator: /
  target_label: job
- source_labels: [__meta_kubernetes_namespace]
  target_label: namespace
- source_labels: [__meta_kubernetes_pod_name, __meta_kubernetes_pod_container_name,
                  __meta_kubernetes_pod_container_port_name]
  separator: ':'
  target_label: instance
- target_label: cluster
  replacement: dev-us-central-0
- source_labels: [__address__]
  target_label: __tmp_hash
  modulus: 3
  action: hashmod
- source_labels: [__tmp_hash]
  regex: ^SHARD$
  action: keep
- regex: __tmp_hash
  action: labeldrop
"""
POD = {
    "__address__": "10.132.183.40:80",
    "__meta_kubernetes_namespace": "loki-boltdb-shipper",
    "__meta_kubernetes_pod_annotation_prometheus_io_port": "9100",
    "__meta_kubernetes_pod_annotation_prometheus_io_param_module": "http_2xx",
    "__meta_kubernetes_pod_container_name": "promtail",
    "__meta_kubernetes_pod_container_port_name": "http-metrics",
    "__meta_kubernetes_pod_label_name": "promtail-loki-boltdb-shipper",
    "__meta_kubernetes_pod_label_prometheus_io_label_team": "obs",
    "__meta_kubernetes_pod_name": "promtail-loki-boltdb-shipper-jgtr7",
    "__meta_kubernetes_pod_phase": "Running",
    "__metrics_path__": "/metrics",
    "__scheme__": "http",
    "job": "kubernetes-pods",
}


def test_kubernetes_pods_example_from_benchmark() -> None:
    """relabel_test.go BenchmarkRelabel "kubernetes" (a port annotation and a param and label to map added).
    md5("10.132.183.40:80") -> last 8 bytes 7481055472834778080 (Go) % 3 = 1: shard 1 keeps it, 0 does not."""
    assert rules_yaml(KUBERNETES.replace("SHARD", "0")).apply(POD) is None
    got = rules_yaml(KUBERNETES.replace("SHARD", "1")).apply(POD)
    assert got == POD | {
        "__address__": "10.132.183.40:9100",
        "__param_module": "http_2xx",
        "team": "obs",
        "job": "loki-boltdb-shipper/promtail-loki-boltdb-shipper",
        "namespace": "loki-boltdb-shipper",
        "instance": "promtail-loki-boltdb-shipper-jgtr7:promtail:http-metrics",
        "cluster": "dev-us-central-0",
    }
    assert rules_yaml(KUBERNETES.replace("SHARD", "1")).apply(POD | {"__meta_kubernetes_pod_phase": "Failed"}) is None


def test_static_label_pairs_from_benchmark() -> None:
    """relabel_test.go BenchmarkRelabel "static label pair": ${0} of "" is "", an invalid target: skipped."""
    relabeler = rules_yaml("""
        - {replacement: wwwwww, target_label: wwwwww}
        - {replacement: yyyyyyyyyyyy, target_label: xxxxxxxxx}
        - {source_labels: [something], target_label: with_source_labels, replacement: value}
        - {replacement: dropped, target_label: "${0}"}
        - {replacement: "${0}", target_label: job}
    """)
    assert relabeler.apply({"abcdefg01": "hijklmn1", "job": "foo"}) == {
        "abcdefg01": "hijklmn1", "wwwwww": "wwwwww", "xxxxxxxxx": "yyyyyyyyyyyy", "with_source_labels": "value"}


# Replacement forms, each checked against Go's Regexp.ExpandString on regex (a)(b)?(?P<name>c)? and "abc".
EXPANSIONS = [
    ("$1", "a"), ("${1}", "a"), ("$1x", ""), ("${1}x", "ax"), ("$$", "$"), ("$$1", "$1"), ("$", "$"),
    ("x$", "x$"), ("${", "${"), ("${1", "${1"), ("${}", "${}"), ("$-", "$-"), ("$0", "abc"), ("${0}", "abc"),
    ("$01", ""), ("$2", "b"), ("$10", ""), ("$name", "c"), ("${name}", "c"), ("$namex", ""), ("a${name}b", "acb"),
    ("$ñ", ""), ("$_1", ""), ("$$$1", "$a"), ("${name}}", "c}"), ("$1\u0661", ""), ("$ $1", "$ a"),
]


@pytest.mark.parametrize(("replacement", "expected"), EXPANSIONS)
def test_replacement_expands_as_go_does(replacement: str, expected: str) -> None:
    relabeler = rules({"source_labels": ["v"], "regex": "(a)(b)?(?P<name>c)?", "target_label": "out",
                       "replacement": replacement})
    assert relabeler.apply({"v": "abc"}).get("out", "") == expected


def test_group_that_did_not_take_part_expands_to_nothing() -> None:
    relabeler = rules({"source_labels": ["v"], "regex": "(a)(b)?", "target_label": "out", "replacement": "[$2]"})
    assert relabeler.apply({"v": "a"}) == {"v": "a", "out": "[]"}


def test_target_label_expanding_to_an_invalid_name_is_skipped() -> None:
    relabeler = rules({"source_labels": ["v"], "regex": "(.*)", "target_label": "x_$1", "replacement": "set"})
    assert relabeler.apply({"v": "ok"}) == {"v": "ok", "x_ok": "set"}
    assert relabeler.apply({"v": "not-ok"}) == {"v": "not-ok"}


def test_hashmod_uses_the_last_eight_bytes_of_md5() -> None:
    """Go: md5 -> BigEndian.Uint64(sum[8:]) of node-a/b/c:9100 = 6221556812062003879, 7301780203132872758,
    17066339365393998704 (mod 4: 3, 2, 0)."""
    relabeler = rules({"source_labels": ["__address__"], "target_label": "shard", "modulus": 4, "action": "hashmod"})
    shards = [relabeler.apply({"__address__": f"node-{n}:9100"})["shard"] for n in "abc"]
    assert shards == ["3", "2", "0"]


def test_keep_and_drop_match_the_joined_values_anchored() -> None:
    keep = rules({"source_labels": ["__name__", "mode"], "regex": "node_cpu.*;idle", "action": "keep"})
    assert keep.apply({"__name__": "node_cpu_seconds_total", "mode": "idle"}) is not None
    assert keep.apply({"__name__": "node_cpu_seconds_total", "mode": "idle2"}) is None
    assert keep.apply({"__name__": "xnode_cpu_seconds_total", "mode": "idle"}) is None
    drop = rules({"source_labels": ["__name__"], "regex": "go_.*", "action": "drop"})
    assert drop.apply({"__name__": "go_goroutines"}) is None
    assert drop.apply({"__name__": "node_go_x"}) == {"__name__": "node_go_x"}


def test_results_stay_right_past_the_match_cache() -> None:
    """Each regex rule caches results by value (4096 entries, then cleared): more distinct values than that."""
    relabeler = rules({"source_labels": ["v"], "regex": "[0-9]*7", "action": "drop"},
                      {"source_labels": ["v"], "regex": "([0-9]*)3", "target_label": "t", "replacement": "$1"})
    for i in range(10, 10_000):
        got = relabeler.apply({"v": str(i)})
        if i % 10 == 7:
            assert got is None
        elif i % 10 == 3:
            assert got == {"v": str(i), "t": str(i)[:-1]}
        else:
            assert got == {"v": str(i)}


def test_labelmap_visits_labels_in_gos_builder_order() -> None:
    """Two names mapped to one: Go's labels.Builder.Range visits untouched labels sorted by name, then the
    ones set by earlier rules in the order they were set; the last one visited wins."""
    mapper = {"regex": "__meta_(?:a|b)_(.*)", "action": "labelmap"}
    labels = {"__meta_b_x": "from-b", "__meta_a_x": "from-a"}  # not sorted: the dict's order must not matter
    assert rules(mapper).apply(labels)["x"] == "from-b"
    touched_a = {"source_labels": ["__meta_a_x"], "target_label": "__meta_a_x", "replacement": "$1!"}
    assert rules(touched_a, mapper).apply(labels)["x"] == "from-a!"


def test_labeldrop_and_labelkeep_match_names_only() -> None:
    labels = {"__name__": "up", "pod": "p", "pod_ip": "1.2.3.4", "podx": "pod"}
    assert rules({"regex": "pod.*", "action": "labeldrop"}).apply(labels) == {"__name__": "up"}
    assert rules({"regex": "__name__|pod", "action": "labelkeep"}).apply(labels) == {"__name__": "up", "pod": "p"}


def test_lowercase_and_uppercase_map_rune_by_rune_like_go() -> None:
    """Go's strings.ToLower/ToUpper: "ß" stays, final sigma is not special, "İ" -> "i", "ᾀ" -> "ᾈ" (Go)."""
    both = rules({"source_labels": ["v"], "target_label": "lo", "action": "lowercase"},
                 {"source_labels": ["v"], "target_label": "up", "action": "uppercase"})
    sigmas, final_sigma = "\u03a3\u0391\u03a3", "\u03c3\u03b1\u03c3"  # Go ignores final-sigma context
    cases = {"Straße": ("straße", "STRAßE"), sigmas: (final_sigma, sigmas), "İstanbul": ("istanbul", "İSTANBUL"),
             "ᾀᾳ": ("ᾀᾳ", "ᾈᾼ"), "ﬀ": ("ﬀ", "ﬀ")}
    for value, (lower, upper) in cases.items():
        got = both.apply({"v": value})
        assert (got["lo"], got["up"]) == (lower, upper), value
    assert rules({"source_labels": ["v"], "target_label": "v", "action": "lowercase"}).apply({"v": ""}) == {}


def test_dollar_matches_only_at_the_very_end() -> None:
    """RE2 as in Go: ``$`` is the end of text (Python's re would also match before a final newline)."""
    relabeler = rules({"source_labels": ["v"], "regex": "a$", "action": "keep"})
    assert relabeler.apply({"v": "a"}) is not None
    assert relabeler.apply({"v": "a\n"}) is None


def test_re2_syntax_that_go_reads() -> None:
    for regex, value in [(r"\pL+", "héllo"), (r"(?i)ABC", "abc"), (r"\Qa.b\E", "a.b"), (r"[[:digit:]]+\z", "42"),
                         (r"(?P<x>a)(?<y>b)", "ab"), (r"\x{41}", "A"), (r"(?U)a+", "aa"), (r"\p{Greek}+", "αβ")]:
        assert rules({"source_labels": ["v"], "regex": regex, "action": "keep"}).apply({"v": value}), regex


@pytest.mark.parametrize(("regex", "reason"), [
    (r"a\Z", r"invalid escape sequence: \Z"),
    (r"(?<=a)b", "invalid perl operator: (?<="),
    (r"(a)\1", r"invalid escape sequence: \1"),
    (r"a++", "bad repetition operator: ++"),
    ("(", "missing )"),
    (r"\C", r"invalid escape sequence: \C"),  # C++ RE2 reads it as one byte; Go refuses it
    (r"[\C]", r"invalid escape sequence: \C"),
    (r"(?P<ñ>a)", "group name 'ñ' is not allowed in Go"),  # C++ RE2 allows it; Go does not
])
def test_regex_go_refuses_is_a_config_error(regex: str, reason: str) -> None:
    with pytest.raises(msgspec.ValidationError) as exc:
        msgspec.convert([{"source_labels": ["a"], "regex": regex, "action": "keep"}], list[RelabelConfig])
    assert f"regex {regex!r}" in str(exc.value) and reason in str(exc.value) and "$[0]" in str(exc.value)


def test_escaped_backslash_and_quoted_c_are_not_refused() -> None:
    assert rules({"source_labels": ["v"], "regex": r"\\C", "action": "keep"}).apply({"v": "\\C"}) is not None
    assert rules({"source_labels": ["v"], "regex": r"\Q\C\E", "action": "keep"}).apply({"v": "\\C"}) is not None


@pytest.mark.parametrize(("config", "message"), [
    ({"action": "hashmod", "target_label": "x"}, "hashmod requires non-zero modulus"),
    ({"action": "hashmod", "target_label": "x", "modulus": 0}, "hashmod requires non-zero modulus"),
    ({"action": "hashmod", "target_label": "x", "modulus": -1}, "modulus must not be negative"),
    ({"action": "replace"}, "replace action requires 'target_label' value"),
    ({"action": "lowercase"}, "lowercase action requires 'target_label' value"),
    ({"action": "keepequal"}, "keepequal action requires 'target_label' value"),
    ({"target_label": "bad-name"}, "'bad-name' is invalid 'target_label' for replace action"),
    ({"target_label": "-${1}"}, "'-${1}' is invalid 'target_label' for replace action"),
    ({"target_label": "foo${"}, "'foo${' is invalid 'target_label' for replace action"),
    ({"target_label": "bar.foo${1}bar"}, "is invalid 'target_label' for replace action"),
    ({"action": "lowercase", "target_label": "${3}"}, "'${3}' is invalid 'target_label' for lowercase action"),
    ({"action": "uppercase", "target_label": "x", "replacement": "y"}, "'replacement' can not be set for uppercase"),
    ({"action": "labelmap", "replacement": "bad-$1"}, "'bad-$1' is invalid 'replacement' for labelmap action"),
    ({"action": "dropequal", "target_label": "x", "separator": ","}, "dropequal action requires only"),
    ({"action": "keepequal", "target_label": "x", "regex": "a"}, "keepequal action requires only"),
    ({"action": "labeldrop", "regex": "a", "source_labels": ["a"]}, "labeldrop action requires only 'regex'"),
    ({"action": "labelkeep", "regex": "a", "target_label": "a"}, "labelkeep action requires only 'regex'"),
    ({"action": "labelkeep", "regex": "a", "replacement": "b"}, "labelkeep action requires only 'regex'"),
    ({"source_labels": ["utf-8.label"], "target_label": "d"}, "'utf-8.label' in source_labels is not a valid label"),
    ({"action": "explode", "target_label": "x"}, "unknown relabel action 'explode', expected one of: drop,"),
    ({"target_label": "x", "regexp": "a"}, "unknown field `regexp`"),
])
def test_invalid_config_is_an_error_naming_the_problem(config: dict, message: str) -> None:
    with pytest.raises(msgspec.ValidationError) as exc:
        msgspec.convert(config, RelabelConfig)
    assert message in str(exc.value)


@pytest.mark.parametrize("config", [
    # relabel_test.go TestRelabelValidate / TestTargetLabelLegacyValidity: valid with classic label names
    {"regex": "__meta_kubernetes_pod_label_(strimzi_io_.+)", "action": "labelmap", "replacement": "$1"},
    {"regex": "__meta_(.+)", "action": "labelmap", "replacement": "${1}"},
    {"target_label": "${1}label"}, {"target_label": "$1"}, {"target_label": "asd$2asd"},
    {"target_label": "_${1}_"}, {"target_label": "foo${bar}foo"},
])
def test_valid_configs(config: dict) -> None:
    msgspec.convert(config, RelabelConfig)


def test_empty_relabeler_is_false_and_copies() -> None:
    assert not Relabeler([])
    assert rules({"target_label": "x", "replacement": "y"})
    labels = {"a": "1"}
    out = Relabeler([]).apply(labels)
    assert out == labels and out is not labels


def test_groups_of_non_ascii_values_are_cut_at_characters() -> None:
    """RE2 reports byte offsets into UTF-8; groups must be whole characters (Go: "x€日本" -> "€", "日本")."""
    relabeler = rules({"source_labels": ["v"], "regex": "x(.)(.*)", "target_label": "out", "replacement": "$2|$1"})
    assert relabeler.apply({"v": "x€日本"})["out"] == "日本|€"


def test_undecodable_bytes_kept_by_a_decoder_are_hashed_and_matched_as_go_does() -> None:
    """A value a decoder read with surrogateescape (b"caf\\xe9"): hashmod hashes the raw bytes, as Go does
    (md5 -> last 8 bytes % 10 = 8), and ``.`` matches the unreadable byte, as Go's does."""
    value = b"caf\xe9".decode("utf-8", "surrogateescape")
    relabeler = rules({"source_labels": ["v"], "target_label": "h", "modulus": 10, "action": "hashmod"},
                      {"source_labels": ["v"], "regex": "caf(.)", "target_label": "t", "replacement": "${1}x"})
    got = relabeler.apply({"v": value})
    assert got["h"] == "8"
    assert got["t"].encode("utf-8", "surrogateescape") == b"\xe9x"
