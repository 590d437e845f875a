from __future__ import annotations

from prometheus_client import generate_latest

from agent.buffers.memory import BufferUsage
from agent.observe.metrics import AgentCollector, build_registry
from agent.observe.stats import StatsRegistry


def test_families_are_named_agent_and_labelled_by_component() -> None:
    stats = StatsRegistry()
    sink = stats.get("es", "sink", "file")
    sink.received_events = 10
    sink.error("RetryableError", "sending")
    sink.discard("buffer_full", 3)
    for seconds in (0.001, 0.01, 0.2, 99):
        sink.observe_request(seconds)
    buffers = {"es": (["es", "sink", "file"], BufferUsage(5, 500, 100, 1000, 3, 1.5))}
    text = generate_latest(build_registry(AgentCollector(stats, lambda: buffers, {"success": 2, "failure": 1})))
    page = text.decode()
    labels = 'component_id="es",component_kind="sink",component_type="file"'
    assert f"agent_component_received_events_total{{{labels}}} 10.0" in page
    assert f'agent_component_errors_total{{{labels},error_type="RetryableError",stage="sending"}} 1.0' in page
    assert f'agent_component_discarded_events_total{{{labels},reason="buffer_full"}} 3.0' in page
    assert f'agent_sink_request_duration_seconds_bucket{{{labels},le="0.01"}} 2.0' in page
    assert f'agent_sink_request_duration_seconds_bucket{{{labels},le="+Inf"}} 4.0' in page
    assert f"agent_buffer_bytes{{{labels}}} 500.0" in page
    assert f"agent_buffer_full_waits_total{{{labels}}} 3.0" in page
    assert f"agent_buffer_blocked_seconds_total{{{labels}}} 1.5" in page
    assert 'agent_config_reloads_total{result="failure"} 1.0' in page
    assert "process_cpu_seconds_total" in page


def test_components_export_their_own_families_once_per_name() -> None:
    stats = StatsRegistry()
    for cid in ("a", "b"):
        tail = stats.get(cid, "source", "tail")
        tail.gauges["files_open"] = 3
        tail.count("read_lines", 10, group="/var/log/*.log")
    page = generate_latest(build_registry(AgentCollector(stats, dict, {}))).decode()
    assert page.count("# TYPE agent_tail_files_open gauge") == 1
    assert 'agent_tail_files_open{component_id="b",component_kind="source",component_type="tail"} 3.0' in page
    assert ('agent_tail_read_lines_total{component_id="a",component_kind="source",component_type="tail",'
            'group="/var/log/*.log"} 10.0') in page
