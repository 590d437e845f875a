"""The Datadog fake enforces the documented intake limits and records every violation."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import sys
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import zstandard
from fakes.datadog import FakeDatadog

FAKE_SCRIPT = Path(__file__).resolve().parents[2] / "fakes" / "datadog.py"
KEY = "test-key"
JSON = {"Content-Type": "application/json", "DD-API-KEY": KEY}


async def post(url: str, body: bytes, headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, Any, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s:
        data = io.BytesIO(body) if len(body) > 1_000_000 else body  # aiohttp warns about big raw bodies
        async with s.post(url, data=data, headers=JSON if headers is None else headers) as r:
            text = await r.text()
            return r.status, (json.loads(text) if text else None), r.headers


def logs_url(dd: FakeDatadog, query: str = "") -> str:
    return f"{dd.url}/api/v2/logs{query}"


def series_url(dd: FakeDatadog) -> str:
    return f"{dd.url}/api/v2/series"


def series_body(*, ts: float | None = None, **overrides: Any) -> bytes:
    point = {"timestamp": int(ts if ts is not None else time.time()), "value": 1.5}
    s = {"metric": "agent.up", "type": 3, "points": [point], "tags": ["env:test"],
         "resources": [{"name": "host1", "type": "host"}], **overrides}
    return json.dumps({"series": [s]}).encode()


@pytest.fixture
async def dd() -> AsyncIterator[FakeDatadog]:
    async with FakeDatadog(api_key=KEY) as fake:
        yield fake


async def test_logs_gzip_array_accepted(dd: FakeDatadog) -> None:
    logs = [{"message": f"line {n}", "ddsource": "agent", "ddtags": "env:test,team:a", "hostname": "h1",
             "service": "svc", "status": "info", "kube": {"pod": "p"}} for n in range(3)]
    raw = json.dumps(logs).encode()
    status, body, _ = await post(logs_url(dd, "?ddtags=cluster:c1"), gzip.compress(raw),
                                 {**JSON, "Content-Encoding": "gzip"})
    assert status == 202 and body == {}
    assert [entry["message"] for entry in dd.logs] == ["line 0", "line 1", "line 2"]
    assert dd.logs[0]["ddtags"] == "env:test,team:a,cluster:c1" and dd.logs[0]["kube"] == {"pod": "p"}
    rec = dd.log_requests[0]
    assert rec.compressed and rec.content_encoding == "gzip" and rec.entries == 3
    assert rec.decoded_size == len(raw) and rec.raw_size < rec.decoded_size and rec.query == {"ddtags": "cluster:c1"}
    assert rec.headers["dd-api-key"] == KEY and rec.status == 202 and dd.violations == []


async def test_logs_single_object_and_deflate(dd: FakeDatadog) -> None:
    status, _, _ = await post(logs_url(dd), zlib.compress(b'{"message":"solo"}'), {**JSON, "Content-Encoding": "deflate"})
    assert status == 202 and dd.logs == [{"message": "solo"}]


async def test_logs_api_key_missing_401_wrong_403(dd: FakeDatadog) -> None:
    status, body, _ = await post(logs_url(dd), b"[]", {"Content-Type": "application/json"})
    assert status == 401 and body["errors"][0]["status"] == "401" and set(body["errors"][0]) == {"status", "title", "detail"}
    status, body, _ = await post(logs_url(dd), b"[]", {**JSON, "DD-API-KEY": "nope"})
    assert status == 403 and body["errors"][0]["title"] == "Forbidden"


async def test_logs_more_than_1000_entries_is_a_violation(dd: FakeDatadog) -> None:
    status, body, _ = await post(logs_url(dd), json.dumps([{"message": "m"}] * 1001).encode())
    assert status == FakeDatadog.TOO_MANY_ENTRIES_STATUS and body["errors"][0]["status"] == str(status)
    assert dd.logs == [] and dd.violations == ["logs: 1001 entries in one request (max 1000)"]
    status, _, _ = await post(logs_url(dd), json.dumps([{"message": "m"}] * 1000).encode())
    assert status == 202 and len(dd.logs) == 1000 and len(dd.violations) == 1


async def test_logs_payload_over_5mb_is_413(dd: FakeDatadog) -> None:
    logs = [{"message": "x" * 900_000} for _ in range(6)]
    status, body, _ = await post(logs_url(dd), gzip.compress(json.dumps(logs).encode()), {**JSON, "Content-Encoding": "gzip"})
    assert status == 413 and body["errors"][0]["title"] == "Payload Too Large"
    assert dd.logs == [] and dd.violations == ["logs: decompressed payload exceeds 5000000 bytes"]


async def test_logs_over_1mb_are_truncated_but_accepted(dd: FakeDatadog) -> None:
    logs = [{"message": "small"}, {"message": "y" * 1_200_000, "service": "s"}]
    status, _, _ = await post(logs_url(dd), json.dumps(logs).encode())
    assert status == 202 and len(dd.logs) == 2 and dd.logs[0] == {"message": "small"}
    assert len(json.dumps(dd.logs[1])) <= FakeDatadog.MAX_LOG_BYTES and dd.logs[1]["message"].startswith("yyy")
    assert dd.truncated_logs == [{"index": 1, "original_size": len(json.dumps(logs[1], separators=(",", ":")))}]
    assert any("truncated" in v for v in dd.violations)


async def test_logs_field_violations_are_recorded(dd: FakeDatadog) -> None:
    old = time.time() - 19 * 3600
    status, _, _ = await post(logs_url(dd), json.dumps([{"message": "m", "ddtags": ["a:b"], "timestamp": old * 1000}]).encode())
    assert status == 202 and len(dd.violations) == 2
    assert "'ddtags' is a list" in dd.violations[0] and "18 h in the past" in dd.violations[1]


async def test_logs_bad_json_is_400(dd: FakeDatadog) -> None:
    status, body, _ = await post(logs_url(dd), b'[{"message": ')
    assert status == 400 and body["errors"][0]["status"] == "400" and dd.violations[0].startswith("logs: body is not valid JSON")


@pytest.mark.parametrize("encoding", ["identity", "gzip", "deflate", "zstd1"])
async def test_series_accepted_in_every_encoding(dd: FakeDatadog, encoding: str) -> None:
    raw = series_body(interval=10, unit="second")
    data = {"identity": raw, "gzip": gzip.compress(raw), "deflate": zlib.compress(raw),
            "zstd1": zstandard.ZstdCompressor().compress(raw)}[encoding]
    status, body, _ = await post(series_url(dd), data, {**JSON, "Content-Encoding": encoding})
    assert status == 202 and body == {"errors": []}
    assert dd.series[0]["metric"] == "agent.up" and dd.series[0]["resources"] == [{"name": "host1", "type": "host"}]
    assert dd.series_requests[0].decoded_size == len(raw) and dd.series_requests[0].entries == 1 and dd.violations == []


async def test_series_zstd_must_be_called_zstd1(dd: FakeDatadog) -> None:
    data = zstandard.ZstdCompressor().compress(series_body())
    status, body, _ = await post(series_url(dd), data, {**JSON, "Content-Encoding": "zstd"})
    assert status == 415 and isinstance(body["errors"][0], str) and dd.series == []
    assert dd.violations == ["series: unsupported Content-Encoding 'zstd'"]


@pytest.mark.parametrize(("overrides", "problem"), [
    ({"metric": ""}, "'metric' is required"),
    ({"points": []}, "'points' is required"),
    ({"type": 7}, "'type' must be 0, 1, 2 or 3"),
    ({"tags": "env:test"}, "'tags' must be a list of strings"),
    ({"resources": [{"name": "h"}]}, "'resources' must be a list"),
    ({"interval": "10s"}, "'interval' must be an integer"),
])
async def test_series_schema_errors_are_400(dd: FakeDatadog, overrides: dict[str, Any], problem: str) -> None:
    status, body, _ = await post(series_url(dd), series_body(**overrides))
    assert status == 400 and problem in body["errors"][0] and dd.series == []
    assert len(dd.violations) == 1 and problem in dd.violations[0]


@pytest.mark.parametrize(("offset", "problem"), [(-3700, "1 hour in the past"), (700, "10 minutes in the future")])
async def test_series_timestamps_out_of_window_are_400(dd: FakeDatadog, offset: int, problem: str) -> None:
    status, body, _ = await post(series_url(dd), series_body(ts=time.time() + offset))
    assert status == 400 and problem in body["errors"][0] and problem in dd.violations[0]


async def test_series_size_limits_are_413(dd: FakeDatadog) -> None:
    many = [{"metric": f"m.{n}", "points": [{"timestamp": int(time.time()), "value": n}], "tags": [f"k:{n}" * 10]}
            for n in range(4000)]
    raw = json.dumps({"series": many}).encode()
    assert len(raw) > 512_000
    status, _, _ = await post(series_url(dd), raw)
    assert status == 413 and "as sent exceeds 512000" in dd.violations[0]
    huge = json.dumps({"series": many * 20}).encode()
    packed = zstandard.ZstdCompressor().compress(huge)
    assert len(packed) < 512_000 < 5_242_880 < len(huge)
    status, _, _ = await post(series_url(dd), packed, {**JSON, "Content-Encoding": "zstd1"})
    assert status == 413 and "decompressed payload exceeds 5242880" in dd.violations[1] and dd.series == []


async def test_series_wrong_key_is_403(dd: FakeDatadog) -> None:
    status, body, _ = await post(series_url(dd), series_body(), {"Content-Type": "application/json"})
    assert status == 403 and body == {"errors": ["Forbidden"]}


async def test_validate_endpoint(dd: FakeDatadog) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(dd.url + "/api/v1/validate", headers={"DD-API-KEY": KEY}) as r:
            assert r.status == 200 and await r.json() == {"valid": True}
        async with s.get(dd.url + "/api/v1/validate", headers={"DD-API-KEY": "bad"}) as r:
            assert r.status == 403 and await r.json() == {"errors": ["Forbidden"]}


@pytest.mark.parametrize("status", [429, 500, 503, 408])
async def test_fail_next_requests(dd: FakeDatadog, status: int) -> None:
    dd.fail_next_requests(2, status=status, retry_after=7 if status == 429 else None)
    for _ in range(2):
        got, body, headers = await post(logs_url(dd), b'[{"message":"m"}]')
        assert got == status and body["errors"][0]["status"] == str(status)
        if status == 429:
            assert headers["Retry-After"] == "7" and headers["X-RateLimit-Remaining"] == "0"
            assert {"X-RateLimit-Limit", "X-RateLimit-Period", "X-RateLimit-Reset", "X-RateLimit-Name"} <= set(headers)
    assert dd.logs == []
    got, _, _ = await post(logs_url(dd), b'[{"message":"m"}]')
    assert got == 202 and len(dd.logs) == 1


async def test_scripted_failure_on_series_uses_the_metrics_error_shape(dd: FakeDatadog) -> None:
    dd.fail_next_requests(1, status=429)
    got, body, headers = await post(series_url(dd), series_body())
    assert got == 429 and body == {"errors": ["Too Many Requests"]} and "Retry-After" not in headers


async def test_slow_and_go_down_come_back(dd: FakeDatadog) -> None:
    dd.slow(1.0, requests=1)
    with pytest.raises(asyncio.TimeoutError):
        await post(logs_url(dd), b'[{"message":"late"}]', timeout=0.2)
    assert (await post(logs_url(dd), b'[{"message":"quick"}]', timeout=2))[0] == 202
    port = dd.port
    await dd.go_down()
    with pytest.raises(aiohttp.ClientConnectorError):
        await post(logs_url(dd), b"[]", timeout=2)
    await dd.come_back()
    assert dd.port == port and (await post(logs_url(dd), b'[{"message":"back"}]'))[0] == 202
    assert [entry["message"] for entry in dd.logs] == ["late", "quick", "back"]


async def test_reset(dd: FakeDatadog) -> None:
    await post(logs_url(dd), json.dumps([{"message": "m"}] * 1001).encode())
    dd.reset()
    assert dd.logs == dd.series == dd.violations == dd.requests == []


async def test_subprocess_mode_prints_ready_and_serves(free_port: int) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(FAKE_SCRIPT), "--port", str(free_port), "--api-key", KEY,
        stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 15)
        assert line.decode().strip() == f"ready {free_port}"
        status, _, _ = await post(f"http://127.0.0.1:{free_port}/api/v2/logs", b'[{"message":"m"}]')
        assert status == 202
    finally:
        if proc.returncode is None:
            proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
