from __future__ import annotations

import logging

import orjson

from agent.observe.logging import JsonFormatter, RateLimitFilter


def record(msg: str, level: int = logging.WARNING, **extra: object) -> logging.LogRecord:
    rec = logging.makeLogRecord({"msg": msg, "levelno": level, "levelname": logging.getLevelName(level), **extra})
    return rec


def test_records_are_json_with_level_message_and_component() -> None:
    line = JsonFormatter().format(record("delivery failed", component_id="es", retry_in_s=1.5))
    assert orjson.loads(line) | {"time": None} == {
        "time": None, "level": "warning", "message": "delivery failed", "component_id": "es", "retry_in_s": 1.5}


def test_repeated_errors_are_rate_limited_and_the_suppressed_count_is_reported(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    now = [100.0]
    monkeypatch.setattr("agent.observe.logging.time.monotonic", lambda: now[0])
    limiter = RateLimitFilter(burst=3, window=10)
    passed = [limiter.filter(record("boom", component_id="a")) for _ in range(10)]
    assert passed == [True] * 3 + [False] * 7
    assert limiter.filter(record("boom", component_id="b"))  # another component is counted apart
    assert limiter.filter(record("info line", level=logging.INFO))
    now[0] += 11
    again = record("boom", component_id="a")
    assert limiter.filter(again)
    assert again.suppressed == 7  # type: ignore[attr-defined]


def test_a_hidden_secret_is_redacted_wherever_it_appears_in_a_line() -> None:
    formatter = JsonFormatter()
    formatter.secrets = {'tok"en-1'.replace('"', '\\"')}  # as hide_secrets stores it: JSON-escaped
    line = formatter.format(record('auth failed for tok"en-1', detail={"header": 'Bearer tok"en-1'}))
    assert 'tok\\"en-1' not in line and orjson.loads(line)["detail"] == {"header": "Bearer <redacted>"}


def test_hide_secrets_applies_to_the_installed_formatter(capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from agent.observe import logging as agent_logging

    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))  # put back afterwards
    monkeypatch.setattr(agent_logging, "_formatter", JsonFormatter())
    monkeypatch.setattr(root, "level", root.level)
    agent_logging.setup_logging("info")
    agent_logging.hide_secrets({"the-api-token", "abc"})  # too short to hide safely: left alone
    logging.getLogger("agent").warning("token the-api-token rejected; abc")
    assert orjson.loads(capsys.readouterr().err.splitlines()[-1])["message"] == "token <redacted> rejected; abc"
