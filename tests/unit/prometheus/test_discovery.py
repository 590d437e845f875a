"""Service discovery: static, file_sd (YAML, JSON, globs, changes, deletion, malformed files, refresh) and
http_sd (against a loopback aiohttp server), with Prometheus's target-group rules."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from fakes.exporter import FakeExporter, Page
from helpers import wait_for

from agent.config.load import convert, parse_document
from agent.config.units import dec_hook
from agent.core.errors import ConfigError
from agent.prometheus.config import ScrapeConfig
from agent.prometheus.discovery import Discoverer, FileDiscoverer, HttpDiscoverer, discoverers_for, label_sets_of

LabelSets = list[dict[str, str]]


def job(**fields: Any) -> ScrapeConfig:
    return msgspec.convert({"job_name": "job", **fields}, ScrapeConfig, dec_hook=dec_hook)


class Recorder:
    """Runs one discoverer as a task and keeps every update it made."""

    def __init__(self, discoverer: Discoverer) -> None:
        self.discoverer = discoverer
        self.updates: list[tuple[str, LabelSets]] = []
        self.task: asyncio.Task[None] | None = None

    def __call__(self, name: str, label_sets: LabelSets) -> None:
        self.updates.append((name, label_sets))

    @property
    def last(self) -> LabelSets:
        return self.updates[-1][1]

    async def __aenter__(self) -> Recorder:
        self.task = asyncio.create_task(self.discoverer.run(self))
        await wait_for(lambda: bool(self.updates))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


def addresses(label_sets: LabelSets) -> list[str]:
    return [label_set["__address__"] for label_set in label_sets]


async def test_static_configs_one_update() -> None:
    config = job(static_configs=[{"targets": ["a:1", "b:2"], "labels": {"env": "prod"}}, {"targets": ["c:3"]}])
    [static] = discoverers_for(config, Path("."))
    async with Recorder(static) as recorder:
        await asyncio.sleep(0.05)
    assert recorder.updates == [("static/0", [{"env": "prod", "__address__": "a:1"},
                                              {"env": "prod", "__address__": "b:2"}, {"__address__": "c:3"}])]


def test_discoverers_for_names_them_per_kind(tmp_path: Path) -> None:
    config = job(static_configs=[{"targets": ["a:1"]}],
                 file_sd_configs=[{"files": ["a.json"]}, {"files": ["b.yml"]}],
                 http_sd_configs=[{"url": "http://127.0.0.1:1/sd"}],
                 kubernetes_sd_configs=[{"role": "pod", "api_server": "http://127.0.0.1:1"}])
    assert [d.name for d in discoverers_for(config, tmp_path)] == ["static/0", "file_sd/0", "file_sd/1", "http_sd/0",
                                                                   "kubernetes_sd/0"]
    assert discoverers_for(job(), tmp_path) == []


def file_sd(tmp_path: Path, *files: str, refresh: str = "5m") -> FileDiscoverer:
    config = job(file_sd_configs=[{"files": list(files), "refresh_interval": refresh}])
    [discoverer] = discoverers_for(config, tmp_path)
    assert isinstance(discoverer, FileDiscoverer)
    discoverer.poll_interval = 0.02
    return discoverer


async def test_file_sd_yaml_and_json_with_a_glob(tmp_path: Path) -> None:
    (tmp_path / "sd").mkdir()
    (tmp_path / "sd" / "a.yml").write_text("- targets: ['a:1']\n  labels: {env: prod, port: 8080, on: true}\n")
    (tmp_path / "sd" / "b.json").write_text('[{"targets": ["b:1", "b:2"], "labels": {"env": "dev"}}]')
    (tmp_path / "sd" / "c.txt").write_text("not matched")
    async with Recorder(file_sd(tmp_path, "sd/*.yml", "sd/*.json")) as recorder:
        pass
    a, b = str(tmp_path / "sd" / "a.yml"), str(tmp_path / "sd" / "b.json")
    # YAML scalars stay text as Go reads them into label values ("true", not "True").
    assert recorder.last == [
        {"env": "prod", "port": "8080", "on": "true", "__meta_filepath": a, "__address__": "a:1"},
        {"env": "dev", "__meta_filepath": b, "__address__": "b:1"},
        {"env": "dev", "__meta_filepath": b, "__address__": "b:2"},
    ]


async def test_file_sd_change_new_file_and_deletion(tmp_path: Path) -> None:
    a = tmp_path / "a.json"
    a.write_text('[{"targets": ["a:1"]}]')
    async with Recorder(file_sd(tmp_path, "*.json")) as recorder:
        a.write_text('[{"targets": ["a:1", "a:2"]}]')
        await wait_for(lambda: addresses(recorder.last) == ["a:1", "a:2"])
        (tmp_path / "b.json").write_text('[{"targets": ["b:1"]}]')
        await wait_for(lambda: addresses(recorder.last) == ["a:1", "a:2", "b:1"])
        a.unlink()
        await wait_for(lambda: addresses(recorder.last) == ["b:1"])
    assert [addresses(u) for _, u in recorder.updates] == [["a:1"], ["a:1", "a:2"], ["a:1", "a:2", "b:1"], ["b:1"]]


@pytest.mark.parametrize("bad", [
    "[{targets: [a:1]",  # not YAML
    "- targets: a:1\n",  # targets not a list
    "- targets: ['x:1']\n  labels: {'bad-name': v}\n",
    "- targets: ['x:1']\n  extra: 1\n",  # YAML files are read strictly, as yaml.UnmarshalStrict does
    "- null\n",
    "{targets: ['x:1']}\n",  # a group, not a list of groups
    "- targets: ['x:1']\n  labels: {a: [1]}\n",
])
async def test_file_sd_malformed_file_keeps_its_previous_groups(tmp_path: Path, bad: str) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("- targets: ['a:1']\n")
    b.write_text("- targets: ['b:1']\n")
    discoverer = file_sd(tmp_path, "*.yaml")
    async with Recorder(discoverer) as recorder:
        a.write_text(bad)
        await wait_for(lambda: discoverer.errors == 1)
        b.write_text("- targets: ['b:2']\n")
        await wait_for(lambda: addresses(recorder.last) == ["a:1", "b:2"])
        a.write_text("- targets: ['a:3']\n")
        await wait_for(lambda: addresses(recorder.last) == ["a:3", "b:2"])
    assert discoverer.errors == 2  # every file is re-read when one changes: the bad one failed twice
    assert all("x:1" not in addresses(u) for _, u in recorder.updates)


async def test_file_sd_malformed_at_start_gives_nothing_for_that_file(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{not json")
    (tmp_path / "b.json").write_text('[{"targets": ["b:1"], "labels": {"x": "y"}, "ignored": 1}]')
    discoverer = file_sd(tmp_path, "*.json")
    async with Recorder(discoverer) as recorder:
        pass
    assert addresses(recorder.last) == ["b:1"] and discoverer.errors == 1


async def test_file_sd_empty_and_missing_files_give_an_empty_update(tmp_path: Path) -> None:
    (tmp_path / "empty.yml").write_text("")
    async with Recorder(file_sd(tmp_path, "empty.yml", "missing/*.json")) as recorder:
        pass
    assert recorder.updates == [("file_sd/0", [])]


async def test_file_sd_refresh_interval_rereads_an_unchanged_looking_file(tmp_path: Path) -> None:
    a = tmp_path / "a.json"
    a.write_text('[{"targets": ["a:1"]}]')
    stat = a.stat()
    discoverer = file_sd(tmp_path, "a.json", refresh="200ms")
    async with Recorder(discoverer) as recorder:
        a.write_text('[{"targets": ["a:2"]}]')  # same size, and the old mtime put back: only a refresh sees it
        os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert a.stat().st_ino == stat.st_ino
        await wait_for(lambda: addresses(recorder.last) == ["a:2"])


def test_label_sets_of_target_address_wins_over_a_group_label() -> None:
    groups = [{"targets": ["a:1"], "labels": {"__address__": "group:1", "l": "v"}}]
    assert label_sets_of(groups, {"__meta_url": "u"}, strict=False) == [
        {"__address__": "a:1", "l": "v", "__meta_url": "u"}]
    assert label_sets_of(None, {}, strict=True) == []
    with pytest.raises(ValueError, match="nil target group"):
        label_sets_of([None], {}, strict=False)
    with pytest.raises(ValueError, match="not a string"):
        label_sets_of([{"targets": ["a:1"], "labels": {"n": 1}}], {}, strict=False)


JSON = "application/json"


@pytest.fixture
async def sd_server() -> AsyncIterator[FakeExporter]:
    async with FakeExporter() as server:
        yield server


def http_sd(server: FakeExporter, tmp_path: Path, **fields: Any) -> HttpDiscoverer:
    config = job(http_sd_configs=[{"url": server.url("/sd"), "refresh_interval": "50ms", **fields}])
    [discoverer] = discoverers_for(config, tmp_path)
    assert isinstance(discoverer, HttpDiscoverer)
    return discoverer


def headers(server: FakeExporter) -> list[dict[str, str]]:
    return [h for path, h in server.requests if path == "/sd"]


async def test_http_sd_list_and_changes(sd_server: FakeExporter, tmp_path: Path) -> None:
    sd_server.serve("/sd", '[{"targets": ["a:1"], "labels": {"env": "prod"}}, {"targets": ["b:1"]}]', content_type=JSON)
    url = sd_server.url("/sd")
    async with Recorder(http_sd(sd_server, tmp_path)) as recorder:
        assert recorder.last == [{"env": "prod", "__meta_url": url, "__address__": "a:1"},
                                 {"__meta_url": url, "__address__": "b:1"}]
        sd_server.serve("/sd", '[{"targets": ["c:1"]}]', content_type=JSON)
        await wait_for(lambda: addresses(recorder.last) == ["c:1"])
        polled = len(headers(sd_server))
        await wait_for(lambda: len(headers(sd_server)) >= polled + 2)  # polled, unchanged: no update
    assert [addresses(u) for _, u in recorder.updates] == [["a:1", "b:1"], ["c:1"]]
    assert headers(sd_server)[0]["accept"] == "application/json"
    assert headers(sd_server)[0]["x-prometheus-refresh-interval-seconds"] == "0.05"


@pytest.mark.parametrize("page", [
    Page(b"[]", JSON, status=500),
    Page(b"[]", "text/plain"),
    Page(b"[{", JSON),
    Page(b'{"targets": []}', JSON),
    Page(b'[{"targets": ["x:1"], "labels": {"0bad": "v"}}]', JSON),
    Page(b"[]", JSON, reset=True),
])
async def test_http_sd_error_keeps_the_previous_list(sd_server: FakeExporter, tmp_path: Path, page: Page) -> None:
    sd_server.serve("/sd", '[{"targets": ["a:1"]}]', content_type=JSON)
    discoverer = http_sd(sd_server, tmp_path)
    async with Recorder(discoverer) as recorder:
        sd_server.pages["/sd"] = page
        await wait_for(lambda: discoverer.errors >= 2)
        sd_server.serve("/sd", '[{"targets": ["b:1"]}]', content_type=JSON)
        await wait_for(lambda: addresses(recorder.last) == ["b:1"])
    assert [addresses(u) for _, u in recorder.updates] == [["a:1"], ["b:1"]]


async def test_http_sd_unreachable_at_start_gives_an_empty_update(tmp_path: Path) -> None:
    config = job(http_sd_configs=[{"url": "http://127.0.0.1:1/sd", "refresh_interval": "50ms"}])
    [discoverer] = discoverers_for(config, tmp_path)
    async with Recorder(discoverer) as recorder:
        pass
    assert recorder.updates == [("http_sd/0", [])]


async def test_http_sd_basic_auth_password_file_read_at_each_refresh(sd_server: FakeExporter,
                                                                     tmp_path: Path) -> None:
    sd_server.serve("/sd", "[]", content_type=JSON)
    (tmp_path / "pw").write_text("first\n")
    discoverer = http_sd(sd_server, tmp_path, basic_auth={"username": "u", "password_file": "pw"})
    second = "Basic " + base64.b64encode(b"u:second").decode()
    async with Recorder(discoverer):
        (tmp_path / "pw").write_text("second\n")
        await wait_for(lambda: second in [h.get("authorization") for h in headers(sd_server)])
    assert headers(sd_server)[0]["authorization"] == "Basic " + base64.b64encode(b"u:first").decode()


@pytest.mark.parametrize(("fields", "expected"), [
    ({"authorization": {"credentials": "tok"}}, "Bearer tok"),
    ({"authorization": {"type": "Token", "credentials_file": "secret"}}, "Token from-file"),
    ({"bearer_token_file": "secret"}, "Bearer from-file"),
    ({"bearer_token": "tok"}, "Bearer tok"),
])
async def test_http_sd_authorization_header(sd_server: FakeExporter, tmp_path: Path, fields: dict[str, Any],
                                            expected: str) -> None:
    sd_server.serve("/sd", "[]", content_type=JSON)
    (tmp_path / "secret").write_text(" from-file \n")
    async with Recorder(http_sd(sd_server, tmp_path, **fields)):
        pass
    assert headers(sd_server)[0]["authorization"] == expected


@pytest.mark.parametrize(("fields", "message"), [
    ({"file_sd_configs": [{"files": []}]}, "at least one path name"),
    ({"file_sd_configs": [{"files": ["targets.txt"]}]}, "not valid for file discovery"),
    ({"file_sd_configs": [{"files": ["*/targets.json"]}]}, "not valid for file discovery"),
    ({"http_sd_configs": [{"url": "ftp://h/sd"}]}, "scheme must be"),
    ({"http_sd_configs": [{"url": "http:///sd"}]}, "host is missing"),
    ({"http_sd_configs": [{"url": "http://h/sd", "refresh_interval": "0s"}]}, "refresh_interval must be greater"),
    ({"static_configs": [{"targets": ["http://h:9100/metrics"]}]}, "not a valid hostname"),
])
def test_discovery_config_errors_as_prometheus(fields: dict[str, Any], message: str) -> None:
    data, lines = parse_document(yaml.safe_dump({"job_name": "j", **fields}), file="p.yaml")
    with pytest.raises(ConfigError, match=message) as error:
        convert(data, ScrapeConfig, file="p.yaml", lines=lines)
    assert str(error.value).startswith("p.yaml:")


def test_a_url_target_is_accepted_when_relabelling_may_rewrite_it() -> None:
    job(static_configs=[{"targets": ["http://h/x"]}], relabel_configs=[{"target_label": "a", "replacement": "b"}])
    job(file_sd_configs=[{"files": ["sd/*.json", "/abs/a.yml", "b.YAML"]}], http_sd_configs=[{"url": "https://h"}])
