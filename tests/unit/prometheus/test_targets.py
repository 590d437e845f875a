"""Target building as Prometheus 2.42's scrape/target.go PopulateLabels does it (cases from its target_test.go
and the configuration docs)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from agent.config.units import dec_hook
from agent.prometheus.config import GlobalConfig, ScrapeConfig
from agent.prometheus.targets import (
    build_targets,
    format_duration,
    job_interval_timeout,
    parse_duration,
    split_host_port,
)


def job(**fields: Any) -> ScrapeConfig:
    return msgspec.convert({"job_name": "job", **fields}, ScrapeConfig, dec_hook=dec_hook)


GLOBAL = GlobalConfig(scrape_interval=60.0, scrape_timeout=10.0)


def build(config: ScrapeConfig, *label_sets: dict[str, str]) -> tuple[list, int]:
    return build_targets(config, GLOBAL, list(label_sets))


def test_defaults_instance_and_url() -> None:
    config = job(scrape_interval="15s", scrape_timeout="5s")
    [target], dropped = build(config, {"__address__": "1.2.3.4:1000", "custom": "value"})
    assert dropped == 0
    assert target.labels == (("custom", "value"), ("instance", "1.2.3.4:1000"), ("job", "job"))
    assert target.url == "http://1.2.3.4:1000/metrics"
    assert (target.interval, target.timeout) == (15.0, 5.0)
    assert target.job == "job" and target.config is config


def test_discovered_labels_win_over_the_job_defaults() -> None:
    # Prometheus sets job, __scheme__, __metrics_path__... only where the target group has no value.
    [target], _ = build(job(), {"__address__": "h:1", "job": "mine", "__scheme__": "https",
                                "__metrics_path__": "/custom"})
    assert dict(target.labels)["job"] == "mine"
    assert target.url == "https://h:1/custom"


def test_instance_given_is_kept() -> None:
    [target], _ = build(job(), {"__address__": "h:1", "instance": "node-a"})
    assert dict(target.labels)["instance"] == "node-a"


def test_meta_and_reserved_labels_are_dropped_after_relabelling() -> None:
    config = job(relabel_configs=[{"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"}])
    [target], _ = build(config, {"__address__": "h:1", "__meta_kubernetes_pod_name": "web-1", "__tmp": "x"})
    assert target.labels == (("instance", "h:1"), ("job", "job"), ("pod", "web-1"))


def test_relabel_keep_and_drop_count_the_dropped() -> None:
    config = job(relabel_configs=[{"source_labels": ["__meta_keep"], "regex": "yes", "action": "keep"}])
    targets, dropped = build(config, {"__address__": "a:1", "__meta_keep": "yes"},
                             {"__address__": "b:1", "__meta_keep": "no"}, {"__address__": "c:1"})
    assert [t.url for t in targets] == ["http://a:1/metrics"]
    assert dropped == 2
    config = job(relabel_configs=[{"source_labels": ["__address__"], "regex": "b:.*", "action": "drop"}])
    targets, dropped = build(config, {"__address__": "a:1"}, {"__address__": "b:1"})
    assert [t.url for t in targets] == ["http://a:1/metrics"] and dropped == 1


def test_relabelling_rewrites_the_address_scheme_and_path() -> None:
    # The docs' blackbox exporter pattern: the target becomes a param, the address the exporter's.
    config = job(metrics_path="/probe", params={"module": ["http_2xx"]}, relabel_configs=[
        {"source_labels": ["__address__"], "target_label": "__param_target"},
        {"source_labels": ["__param_target"], "target_label": "instance"},
        {"target_label": "__address__", "replacement": "127.0.0.1:9115"},
    ])
    [target], _ = build(config, {"__address__": "https://example.com/health"})
    assert target.url == "http://127.0.0.1:9115/probe?module=http_2xx&target=https%3A%2F%2Fexample.com%2Fhealth"
    assert dict(target.labels)["instance"] == "https://example.com/health"


def test_params_become_query_params_first_value_from_the_label() -> None:
    config = job(params={"a": ["1", "2"], "b": ["x y"]}, relabel_configs=[
        {"target_label": "__param_a", "replacement": "9"},
        {"target_label": "__param_c", "replacement": "new"},
    ])
    [target], _ = build(config, {"__address__": "h:1"})
    assert target.url == "http://h:1/metrics?a=9&a=2&b=x+y&c=new"


def test_missing_address_drops_the_target() -> None:
    config = job(relabel_configs=[{"action": "labeldrop", "regex": "__address__"}])
    assert build(config, {"__address__": "h:1"}) == ([], 1)
    assert build(job(), {"__address__": ""}) == ([], 1)


@pytest.mark.parametrize(("address", "scheme", "expected"), [
    ("1.2.3.4", "http", "1.2.3.4:80"),
    ("1.2.3.4", "https", "1.2.3.4:443"),
    ("[::1]", "http", "[::1]:80"),
    ("1.2.3.4:9100", "https", "1.2.3.4:9100"),
    ("host:", "http", "host:"),  # Go's SplitHostPort accepts an empty port: nothing added
    ("::1", "http", "::1"),  # not an address a port can be added to: kept as it is
])
def test_default_port_as_prometheus_2_42(address: str, scheme: str, expected: str) -> None:
    [target], _ = build(job(scheme=scheme), {"__address__": address})
    assert dict(target.labels)["instance"] == expected
    assert target.url == f"{scheme}://{expected}/metrics"


def test_a_url_or_a_bad_scheme_for_an_address_is_dropped() -> None:
    assert build(job(), {"__address__": "http://h:1/metrics"}) == ([], 1)
    assert build(job(), {"__address__": "h:1/x"}) == ([], 1)
    assert build(job(), {"__address__": "h", "__scheme__": "ftp"}) == ([], 1)  # no default port for ftp
    [target], _ = build(job(), {"__address__": "h:1", "__scheme__": "ftp"})  # a port: no check of the scheme
    assert target.url == "ftp://h:1/metrics"


def test_per_target_interval_and_timeout_from_labels() -> None:
    config = job(scrape_interval="30s", relabel_configs=[
        {"source_labels": ["__meta_interval"], "regex": "(.+)", "target_label": "__scrape_interval__"},
    ])
    fast, slow = build(config, {"__address__": "a:1", "__meta_interval": "1m30s"}, {"__address__": "b:1"})[0]
    assert (fast.interval, fast.timeout) == (90.0, 10.0)
    assert (slow.interval, slow.timeout) == (30.0, 10.0)
    # Bad values drop the target, as PopulateLabels errors do.
    assert build(job(), {"__address__": "a:1", "__scrape_interval__": "1.5s"})[1] == 1
    assert build(job(), {"__address__": "a:1", "__scrape_interval__": "0s"})[1] == 1
    assert build(job(), {"__address__": "a:1", "__scrape_timeout__": "2m"})[1] == 1  # over the 1m interval


def test_job_interval_and_timeout_resolved_against_global() -> None:
    assert job_interval_timeout(job(), GLOBAL) == (60.0, 10.0)
    assert job_interval_timeout(job(scrape_interval="5s"), GLOBAL) == (5.0, 5.0)  # global 10s capped
    assert job_interval_timeout(job(scrape_timeout="20s"), GLOBAL) == (60.0, 20.0)
    with pytest.raises(ValueError, match="longer than scrape_interval"):
        job_interval_timeout(job(scrape_timeout="2m"), GLOBAL)
    [target], _ = build(job(scrape_interval="5s"), {"__address__": "a:1"})
    assert (target.interval, target.timeout) == (5.0, 5.0)


def test_the_default_labels_are_what_relabelling_sees() -> None:
    config = job(scrape_interval="1m30s", relabel_configs=[
        {"source_labels": ["__scrape_interval__", "__scrape_timeout__", "__scheme__", "__metrics_path__", "job"],
         "target_label": "seen"},
    ])
    [target], _ = build(config, {"__address__": "a:1"})
    assert dict(target.labels)["seen"] == "1m30s;10s;http;/metrics;job"


def test_key_is_stable_across_meta_changes_and_differs_by_target() -> None:
    a, _ = build(job(), {"__address__": "a:1", "__meta_ready": "true"})
    b, _ = build(job(), {"__address__": "a:1", "__meta_ready": "false"})
    c, _ = build(job(), {"__address__": "a:2"})
    d, _ = build(job(job_name="other"), {"__address__": "a:1"})
    assert a[0].key == b[0].key
    assert len({a[0].key, c[0].key, d[0].key}) == 3


def test_duplicates_give_one_target() -> None:
    targets, dropped = build(job(), {"__address__": "a:1"}, {"__address__": "a:1", "__meta_x": "y"})
    assert len(targets) == 1 and dropped == 0


def test_an_invalid_label_value_drops_the_target() -> None:
    assert build(job(), {"__address__": "a:1", "bad": "\ud800"}) == ([], 1)


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (0.5, "500ms"), (15, "15s"), (90, "1m30s"), (3600, "1h"), (86400, "1d"), (90 * 86400, "90d"),
    (14 * 86400, "2w"), (365 * 86400, "1y"), (3661.001, "1h1m1s1ms"),
])
def test_duration_formatted_and_parsed_as_prometheus(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1.5s", "1s1m", "-1s", "1", "s", "1h 30m"])
def test_durations_prometheus_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(("address", "expected"), [
    ("h:1", ("h", "1")), ("[::1]:80", ("::1", "80")), ("h:", ("h", "")), ("h", None), ("::1", None),
    ("[::1]", None), ("[::1]x:1", None), ("a]:1", None), ("[a]:1]", None),
])
def test_split_host_port_as_go(address: str, expected: tuple[str, str] | None) -> None:
    assert split_host_port(address) == expected
