"""The real Prometheus and node exporter fixtures work: the exporter serves its page, and a remote-write
1.0 request (encoded here by hand, independently of the agent's encoder) lands in Prometheus and is
queryable through its HTTP API."""

from __future__ import annotations

import struct
import subprocess
import time
import urllib.request

import cramjam
import pytest
from peers.prometheus import Prometheus, binary, http_get
from prometheus_client.parser import text_string_to_metric_families

from agent.core.metric import Sample
from agent.sinks.prometheus_exporter import SeriesStore

pytestmark = pytest.mark.integration


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if not n:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def _field(number: int, payload: bytes) -> bytes:  # a length-delimited protobuf field
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def write_request(labels: dict[str, str], value: float, timestamp_ms: int) -> bytes:
    """WriteRequest{timeseries=1: TimeSeries{labels=1: Label{name=1, value=2}, samples=2: Sample{value=1, ts=2}}}."""
    series = b"".join(_field(1, _field(1, k.encode()) + _field(2, v.encode())) for k, v in sorted(labels.items()))
    series += _field(2, b"\x09" + struct.pack("<d", value) + b"\x10" + _varint(timestamp_ms))
    return _field(1, series)


def test_node_exporter_serves_its_page(node_exporter: str) -> None:
    families = {f.name: f for f in text_string_to_metric_families(http_get(f"{node_exporter}/metrics").decode())}
    assert families["node_cpu_seconds"].type == "counter"
    assert any(s.labels.get("mode") == "idle" for s in families["node_cpu_seconds"].samples)


def test_a_remote_written_sample_is_queryable(prometheus: Prometheus) -> None:
    body = bytes(cramjam.snappy.compress_raw(write_request(
        {"__name__": "peer_check", "job": "fixture", "instance": "here"}, 42.5, int(time.time() * 1000))))
    request = urllib.request.Request(prometheus.write_url, data=body, method="POST", headers={
        "Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
        "X-Prometheus-Remote-Write-Version": "0.1.0"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 204
    [result] = prometheus.wait_for('peer_check{job="fixture"}')
    assert result["metric"] == {"__name__": "peer_check", "job": "fixture", "instance": "here"}
    assert float(result["value"][1]) == 42.5


def test_promtool_finds_nothing_to_lint_on_the_exporter_sinks_page() -> None:
    store = SeriesStore(300)
    store.add([Sample.of("http_requests_total", (("code", "200"), ("path", '/a "b"\n')), 7.0, 1, "counter"),
               Sample.of("latency_seconds_bucket", (("le", "0.5"),), 1.0, 1, "histogram"),
               Sample.of("latency_seconds_bucket", (("le", "+Inf"),), 2.0, 1, "histogram"),
               Sample.of("latency_seconds_sum", (), 0.7, 1, "histogram"),
               Sample.of("latency_seconds_count", (), 2.0, 1, "histogram"),
               Sample.of("temperature_celsius", (), -1.5, 1, "gauge")], now=0.0)
    checked = subprocess.run([binary("promtool"), "check", "metrics"], input=store.render().encode(),
                             capture_output=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr  # 3: lint warnings, 1: a parse error
