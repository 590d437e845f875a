"""`agent migrate fluent-bit`: each plugin and setting translated into the agent's keys, what has no equivalent named
with its file:line, Match wiring, the YAML format, exit codes; every translation validates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.cli import main
from agent.config.pipeline import load_texts
from agent.migrate.fluent_bit import Migration, migrate

EXAMPLES = Path(__file__).parent / "examples"  # copies of ../shared/examples/
PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"

TAIL = """\
[INPUT]
    Name tail
    Path /var/log/containers/*.log
    Parser docker
    Tag kube.*
"""
STDOUT = """\
[OUTPUT]
    Name stdout
    Match *
    Format json_lines
"""


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_API_TOKEN", "placeholder")
    monkeypatch.setenv("DD_API_KEY", "placeholder")
    monkeypatch.setenv("HOSTNAME", "node-1")


def translate(tmp_path: Path, text: str, name: str = "fluent-bit.conf", parsers: str | None = None,
              extra: tuple[str, ...] = ()) -> tuple[Migration, dict[str, Any]]:
    """The translation of ``text`` (written to ``name``, with ``parsers.conf`` when given), checked to validate."""
    if parsers is not None:
        (tmp_path / "parsers.conf").write_text(parsers)
    path = tmp_path / name
    path.write_text(text)
    migration = migrate(str(path), extra)
    load_texts([(migration.text, "migrated.yaml")])
    return migration, yaml.safe_load(migration.text)


def left_out(migration: Migration) -> list[str]:
    return [f"{Path(file).name}:{line}: {why}" for file, line, why in migration.left_out]


def transforms(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return list(doc.get("transforms", {}).values())


# -- the example DaemonSet --------------------------------------------------------------------------------


def test_the_example_translates_whole_into_a_pipeline_that_validates() -> None:
    migration = migrate(str(EXAMPLES / "fluent-bit.conf"))
    assert migration.left_out == []
    pipeline = load_texts([(migration.text, "migrated.yaml")])
    doc = yaml.safe_load(migration.text)
    assert doc["api"] == {"address": "0.0.0.0:2020", "auth_token": "${AGENT_API_TOKEN}"}
    assert doc["sources"] == {"containers": {
        "type": "tail", "include": ["/var/log/containers/*_mobius-production_*.log"],
        "exclude": ["/var/log/containers/*_kube-system_*.log", "/var/log/containers/*_kube-public_*.log"],
        "format": "docker", "glob_interval": "5s"}}
    k8s = doc["transforms"]["kubernetes"]
    assert k8s["inputs"] == ["containers"] and k8s["compat"] == "fluent-bit"
    assert (k8s["merge_log"], k8s["keep_log"], k8s["exclude_annotation"], k8s["parser_annotation"]) == (
        True, False, True, True)
    assert k8s["parsers"] == {
        "json_parser": {"codec": "json", "time_key": "timestamp", "time_format": "%Y-%m-%dT%H:%M:%S.%LZ"},
        "mobius_app_parser": {"codec": "regex", "pattern": r"^(?<timestamp>[^ ]+) (?<level>[^ ]+) \[(?<service>"
                              r"[^\]]+)\] (?<message>.*)$", "time_key": "timestamp",
                              "time_format": "%Y-%m-%dT%H:%M:%S.%LZ"}}
    assert k8s["buffer"] == {"max_bytes": "50MiB"}  # Mem_Buf_Limit
    assert doc["transforms"]["lift"] == {"type": "nest", "inputs": ["kubernetes"], "operation": "lift",
                                         "nested_under": "log"}  # the application's own `log` object
    assert doc["transforms"]["modify"]["add"] == {"cluster_name": "production", "environment": "production"}
    es, dd = doc["sinks"]["elasticsearch"], doc["sinks"]["datadog"]
    assert es["inputs"] == dd["inputs"] == ["modify"]
    assert es["endpoints"] == ["http://elasticsearch.logging.svc.cluster.local:9200"]
    assert (es["index"], es["suppress_type_name"], es["batch"]) == ("mobius-%Y.%m.%d", False, {"timeout": "5s"})
    assert dd == {"type": "datadog_logs", "inputs": ["modify"], "api_key": "${DD_API_KEY}", "site": "datadoghq.com",
                  "compression": "gzip", "service": "mobius", "ddsource": "kubernetes", "ddtags": "env:production",
                  "batch": {"timeout": "5s"}}
    assert "# Retry_Limit 5: Fluent Bit drops a chunk after 5 failed tries; here retries go on" in migration.text
    assert pipeline.components["kubernetes"].type == "kubernetes"


def test_the_daemonset_pipeline_is_the_translation_of_the_example() -> None:
    translated = yaml.safe_load(migrate(str(EXAMPLES / "fluent-bit.conf")).text)
    shipped = yaml.safe_load((PIPELINES / "kubernetes-daemonset.yaml").read_text())
    for kind in ("sources", "transforms", "sinks"):
        assert shipped[kind] == translated[kind], kind


# -- tail --------------------------------------------------------------------------------------------------


def test_tail_settings(tmp_path: Path) -> None:
    migration, doc = translate(tmp_path, """\
[INPUT]
    Name tail
    Path /var/log/a.log,/var/log/b/*.log
    Exclude_Path *.gz
    Read_from_Head On
    Refresh_Interval 10
    Rotate_Wait 30
    Buffer_Max_Size 64k
    Skip_Long_Lines On
    Inotify_Watcher false
    DB /var/log/flb.db
    DB.sync normal
    Path_Key filename
    Tag app
""" + STDOUT)
    assert doc["sources"]["tail"] == {"type": "tail", "include": ["/var/log/a.log", "/var/log/b/*.log"],
                                      "exclude": ["*.gz"], "format": "raw", "read_from": "beginning",
                                      "max_line_bytes": "64KiB", "glob_interval": "10s", "rotate_wait": "30s",
                                      "inotify": False}
    assert doc["transforms"]["tail_modify"] == {"type": "modify", "inputs": ["tail"], "move": {"file": "filename"}}
    assert doc["sinks"]["console"]["inputs"] == ["tail_modify"]
    assert "DB /var/log/flb.db: file positions are checkpointed under data_dir" in migration.text
    assert "Skip_Long_Lines On: Fluent Bit skipped lines longer than Buffer_Max_Size (64k)" in migration.text
    assert migration.left_out == []


@pytest.mark.parametrize(("line", "fmt"), [("multiline.parser cri", "cri"), ("multiline.parser docker, cri", "auto"),
                                           ("Parser cri", "cri"), ("Parser docker", "docker"), ("", "raw")])
def test_tail_container_formats(tmp_path: Path, line: str, fmt: str) -> None:
    migration, doc = translate(tmp_path, f"[INPUT]\n    Name tail\n    Path /x/*.log\n    {line}\n" + STDOUT)
    assert doc["sources"]["tail"]["format"] == fmt
    assert migration.left_out == []


def test_a_tail_parser_of_the_parsers_file_is_a_parse_stage_after_the_source(tmp_path: Path) -> None:
    parsers = "[PARSER]\n    Name app\n    Format regex\n    Regex ^(?<level>\\w+) (?<msg>.*)$\n"
    migration, doc = translate(tmp_path, "[SERVICE]\n    Parsers_File parsers.conf\n" + TAIL.replace("docker", "app")
                               + STDOUT, parsers=parsers)
    assert doc["transforms"]["containers_parse"] == {"type": "parse", "inputs": ["containers"], "codec": "regex",
                                                     "pattern": "^(?<level>\\w+) (?<msg>.*)$"}
    assert doc["sources"]["containers"]["format"] == "raw"
    assert migration.left_out == []


def test_other_multiline_parsers_are_left_out(tmp_path: Path) -> None:
    migration, _ = translate(tmp_path, "[INPUT]\n    Name tail\n    Path /x.log\n    multiline.parser java\n" + STDOUT)
    assert left_out(migration) == ["fluent-bit.conf:4: multiline.parser java: only the docker and cri multiline "
                                   "parsers are translated (see the tail source's multiline option)"]


# -- filters -----------------------------------------------------------------------------------------------


def filtered(tmp_path: Path, body: str, parsers: str | None = None) -> tuple[Migration, list[dict[str, Any]]]:
    head = "[SERVICE]\n    Parsers_File parsers.conf\n" if parsers else ""
    migration, doc = translate(tmp_path, head + TAIL + body + STDOUT, parsers=parsers)
    return migration, [{k: v for k, v in t.items() if k != "inputs"} for t in transforms(doc)]


def test_grep_one_rule_is_a_map_and_the_line_key_is_message(tmp_path: Path) -> None:
    _, stages = filtered(tmp_path, "[FILTER]\n    Name grep\n    Match *\n    Exclude log ^GET /health\n")
    assert stages == [{"type": "filter", "exclude": {"message": "^GET /health"}}]


def test_grep_rules_keep_their_order_and_legacy_drops_what_fluent_bit_never_reads(tmp_path: Path) -> None:
    migration, stages = filtered(tmp_path, """\
[FILTER]
    Name grep
    Match *
    Exclude $kubernetes['labels']['tier'] ^db$
    Regex level ^(info|error)$
    Exclude msg boom
""")
    assert stages == [{"type": "filter", "rules": [{"exclude": {"kubernetes.labels.tier": "^db$"}},
                                                   {"regex": {"level": "^(info|error)$"}}]}]
    assert "Exclude msg boom: never evaluated by Fluent Bit 4.2.8" in migration.text
    assert migration.left_out == []


@pytest.mark.parametrize("op", ["and", "or"])
def test_grep_logical_op(tmp_path: Path, op: str) -> None:
    _, stages = filtered(tmp_path, f"[FILTER]\n    Name grep\n    Match *\n    Logical_Op {op}\n"
                                   "    Regex a x\n    Regex b y\n")
    assert stages == [{"type": "filter", "rules": [{"regex": {"a": "x"}}, {"regex": {"b": "y"}}], "logical_op": op}]


def test_modify_rules_run_in_the_order_written(tmp_path: Path) -> None:
    migration, stages = filtered(tmp_path, """\
[FILTER]
    Name modify
    Match *
    Add cluster production
    Rename msg text
    Copy level severity
    Hard_copy a b
    Set env prod
    Hard_rename c d
    Remove secret
    Remove log
""")
    assert stages == [
        {"type": "modify", "add": {"cluster": "production"}},
        {"type": "modify", "rename": {"msg": "text"}, "add": {"severity": "{{ level }}"}},
        {"type": "modify", "copy": {"a": "b"}, "set": {"env": "prod"}},
        {"type": "modify", "move": {"c": "d"}, "remove": ["secret", "message"]},
    ]
    assert migration.left_out == []


def test_modify_left_out_conditions_and_values_read_as_references(tmp_path: Path) -> None:
    migration, _ = filtered(tmp_path, "[FILTER]\n    Name modify\n    Match *\n    Condition Key_exists a\n"
                                      "    Set b 1\n[FILTER]\n    Name modify\n    Match *\n    Set c {{ x }}\n"
                                      "    Set d 2\n")
    assert left_out(migration) == [
        "fluent-bit.conf:9: Condition Key_exists a: conditions have no equivalent in modify: the whole filter is left out",
        "fluent-bit.conf:14: Set c {{ x }}: the value would be read as a field reference ({{ }} or %{ })"]


def test_nest_and_lift(tmp_path: Path) -> None:
    _, stages = filtered(tmp_path, """\
[FILTER]
    Name nest
    Match *
    Operation nest
    Wildcard Mem.*
    Wildcard log
    Nest_under memory
    Remove_prefix Mem.
[FILTER]
    Name nest
    Match *
    Operation lift
    Nested_under kubernetes
    Add_prefix k8s_
""")
    assert stages == [{"type": "nest", "operation": "nest", "wildcard": ["Mem.*", "message"], "nest_under": "memory",
                       "remove_prefix": "Mem."},
                      {"type": "nest", "operation": "lift", "nested_under": "kubernetes", "add_prefix": "k8s_"}]


def test_record_modifier(tmp_path: Path) -> None:
    migration, stages = filtered(tmp_path, "[FILTER]\n    Name record_modifier\n    Match *\n    Record host ${HOSTNAME}\n"
                                           "    Remove_key stream\n    Allowlist_key log\n")
    assert stages == [{"type": "modify", "set": {"host": "${HOSTNAME}"}, "remove": ["stream"]}]
    assert left_out(migration) == ["fluent-bit.conf:11: Allowlist_key log: no stage keeps only the named keys"]


def test_throttle_by_meaning(tmp_path: Path) -> None:
    migration, stages = filtered(tmp_path, "[FILTER]\n    Name throttle\n    Match *\n    Rate 800\n    Window 3\n"
                                           "    Interval 1s\n    Print_Status true\n")
    assert stages == [{"type": "throttle", "threshold": 2400, "window": "3s"}]
    assert "Rate 800 per 1s over a sliding Window of 3: here 2400 events per fixed 3s window" in migration.text
    assert migration.left_out == []


PARSERS = """\
[PARSER]
    Name app
    Format regex
    Regex ^(?<time>[^ ]+) (?<pid>\\d+) (?<msg>.*)$
    Time_Key time
    Time_Format %Y-%m-%dT%H:%M:%S.%L%z
    Time_Keep On
    Types pid:integer ok:bool
[PARSER]
    Name kv
    Format logfmt
[PARSER]
    Name tsv
    Format ltsv
"""


def test_the_parser_filter_and_parser_definitions(tmp_path: Path) -> None:
    migration, stages = filtered(tmp_path, "[FILTER]\n    Name parser\n    Match *\n    Key_Name log\n    Parser app\n"
                                           "    Reserve_Data On\n    Preserve_Key On\n", parsers=PARSERS)
    assert stages == [{"type": "parse", "field": "message", "codec": "regex",
                       "pattern": "^(?<time>[^ ]+) (?<pid>\\d+) (?<msg>.*)$", "time_key": "time",
                       "time_format": "%Y-%m-%dT%H:%M:%S.%L%z", "time_keep": True,
                       "types": {"pid": "int", "ok": "bool"}, "keep_original": True}]
    assert migration.left_out == []


def test_the_parser_filter_reports_what_it_cannot_mean(tmp_path: Path) -> None:
    migration, stages = filtered(tmp_path, "[FILTER]\n    Name parser\n    Match *\n    Key_Name log\n    Parser kv\n"
                                           "    Parser app\n[FILTER]\n    Name parser\n    Match *\n    Key_Name x\n"
                                           "    Parser tsv\n    Reserve_Data On\n", parsers=PARSERS)
    assert stages == [{"type": "parse", "field": "message", "codec": "logfmt"}]
    assert left_out(migration) == [
        "fluent-bit.conf:13: Parser app: only one parser per stage: Fluent Bit's fallback to the next parser has "
        "no equivalent",
        "fluent-bit.conf:8: [FILTER] parser: Reserve_Data Off (the default) drops the record's other fields; here "
        "they are kept (set Reserve_Data On to mean that)",
        "parsers.conf:14: Format ltsv: parser format ltsv has no equivalent",
        "fluent-bit.conf:18: Parser tsv: parser tsv is not defined or not translated"]


def test_a_filter_without_an_equivalent_is_named_with_its_line(tmp_path: Path) -> None:
    migration, doc = translate(tmp_path, TAIL + "[FILTER]\n    Name lua\n    Match *\n    script a.lua\n"
                                                "    call f\n[FILTER]\n    Name rewrite_tag\n    Match *\n" + STDOUT)
    assert "transforms" not in doc
    assert left_out(migration) == [
        "fluent-bit.conf:6: [FILTER] lua: Lua scripts cannot run in the agent; rewrite the script as "
        "modify/filter/route stages",
        "fluent-bit.conf:11: [FILTER] rewrite_tag: tags are resolved once, when translating: a tag rewritten per "
        "record has no equivalent; use a route stage"]
    assert "#   " + migration.left_out[0][0] + ":6: [FILTER] lua" in migration.text


def test_a_setting_without_an_equivalent_is_named_with_its_line(tmp_path: Path) -> None:
    migration, _ = translate(tmp_path, TAIL + "    Ignore_Older 1d\n" + STDOUT)
    assert left_out(migration) == ["fluent-bit.conf:6: Ignore_Older 1d: no equivalent for tail's Ignore_Older"]


# -- the kubernetes filter -------------------------------------------------------------------------------


def test_kubernetes_filter_keys(tmp_path: Path) -> None:
    migration, stages = filtered(tmp_path, """\
[FILTER]
    Name kubernetes
    Match kube.*
    Merge_Log On
    Merge_Log_Key app
    Keep_Log Off
    Labels Off
    Namespace_Labels On
    K8S-Logging.Exclude On
    Kube_URL https://10.0.0.1:6443
    Use_Kubelet On
""")
    assert stages == [{"type": "kubernetes", "merge_log": True, "merge_log_key": "app", "keep_log": False,
                       "labels": False, "namespace_labels": True, "exclude_annotation": True, "compat": "fluent-bit"}]
    assert [why.split(":")[0] for _, _, why in migration.left_out] == ["Kube_URL https"]
    assert "Use_Kubelet On: pods come from the API server's node-scoped watch" in migration.text


# -- outputs -----------------------------------------------------------------------------------------------


def sinks(tmp_path: Path, body: str) -> tuple[Migration, dict[str, dict[str, Any]]]:
    migration, doc = translate(tmp_path, "[SERVICE]\n    Flush 2\n" + TAIL + body)
    return migration, {cid: {k: v for k, v in s.items() if k != "inputs"} for cid, s in doc.get("sinks", {}).items()}


def test_outputs(tmp_path: Path) -> None:
    migration, got = sinks(tmp_path, """\
[OUTPUT]
    Name es
    Match *
    Host es.local
    Port 9243
    Path /proxy
    Index logs
    HTTP_User elastic
    HTTP_Passwd ${ES_PASSWORD}
    tls On
    tls.verify Off
    Suppress_Type_Name On
    Workers 2
    Retry_Limit False
[OUTPUT]
    Name http
    Match *
    Host collector
    Port 8080
    URI /ingest
    Format json_lines
    Header X-Team a
    compress gzip
[OUTPUT]
    Name datadog
    Match *
    Host proxy.local
    apikey k
[OUTPUT]
    Name file
    Match *
    Path /tmp/out
    File all.log
    Format plain
[OUTPUT]
    Name null
    Match *
[OUTPUT]
    Name stdout
    Match *
""".replace("${ES_PASSWORD}", "secret"))
    assert got == {
        "elasticsearch": {"type": "elasticsearch", "endpoints": ["https://es.local:9243/proxy"], "index": "logs",
                          "suppress_type_name": True, "auth": {"strategy": "basic", "user": "elastic",
                                                               "password": "secret"},
                          "tls": {"verify_certificate": False}, "request": {"concurrency": 2}, "id": "auto",
                          "batch": {"timeout": "2s"}},
        "http": {"type": "http", "uri": "http://collector:8080/ingest", "encoding": "ndjson",
                 "request": {"headers": {"X-Team": "a"}}, "compression": "gzip", "batch": {"timeout": "2s"}},
        "datadog": {"type": "datadog_logs", "api_key": "k", "endpoint": "http://proxy.local:80", "compression": "none",
                    "batch": {"timeout": "2s"}},
        "file": {"type": "file", "path": "/tmp/out/all.log", "encoding": "json"},
        "blackhole": {"type": "blackhole"},
        "console": {"type": "console", "encoding": "json"},
    }
    assert migration.left_out == []
    assert "Format msgpack: Fluent Bit printed `[n] tag: [time, {record}]`" in migration.text


def test_outputs_left_out(tmp_path: Path) -> None:
    migration, got = sinks(tmp_path, "[OUTPUT]\n    Name kafka\n    Match *\n[OUTPUT]\n    Name prometheus_remote_write\n"
                                     "    Match *\n    Host prom\n[OUTPUT]\n    Name http\n    Match *\n" + STDOUT)
    assert list(got) == ["http", "console"]
    assert left_out(migration) == [
        "fluent-bit.conf:8: [OUTPUT] kafka: output kafka has no equivalent",
        "fluent-bit.conf:11: [OUTPUT] prometheus_remote_write: its inputs are logs; prometheus_remote_write takes "
        "metrics",
        "fluent-bit.conf:15: [OUTPUT] http: format msgpack has no equivalent (json or json_lines)"]


# -- Match wiring ------------------------------------------------------------------------------------------


def test_match_wires_each_input_to_the_filters_and_outputs_of_its_tag(tmp_path: Path) -> None:
    migration, doc = translate(tmp_path, """\
[INPUT]
    Name tail
    Path /var/log/containers/*.log
    Tag kube.*
[INPUT]
    Name tail
    Path /var/log/syslog
    Tag host.syslog
[FILTER]
    Name modify
    Match kube.*
    Add source k8s
[FILTER]
    Name modify
    Match *
    Add cluster c1
[OUTPUT]
    Name null
    Match_Regex ^host\\.
[OUTPUT]
    Name stdout
    Match *
""")
    wiring = {cid: c["inputs"] for kind in ("transforms", "sinks") for cid, c in doc[kind].items()}
    assert wiring == {"modify_containers": ["containers"], "modify_containers_2": ["modify_containers"],
                      "modify_tail": ["tail"], "blackhole": ["modify_tail"],
                      "console": ["modify_containers_2", "modify_tail"]}
    assert migration.left_out == []


def test_a_match_that_takes_only_some_files_of_an_input_is_reported(tmp_path: Path) -> None:
    migration, doc = translate(tmp_path, TAIL + "[OUTPUT]\n    Name null\n    Match kube.var.log.containers.app*\n")
    assert doc["sinks"]["blackhole"]["inputs"] == ["containers"]
    assert left_out(migration) == ["fluent-bit.conf:8: Match kube.var.log.containers.app* matches only some of input "
                                   "containers's files (tags kube.var.log.containers.*.log); here it takes all of them"]


# -- reading -----------------------------------------------------------------------------------------------


CLASSIC = """\
@SET cluster=eu-1
[SERVICE]
    Flush        3
    Log_Level    debug
@INCLUDE inputs.conf
[FILTER]
    Name modify
    Match *
    Add cluster ${cluster}
    Add key ${DD_API_KEY}
[OUTPUT]
    Name http
    Match *
    Host h
    Format json
"""
YAML = """\
env:
  cluster: eu-1
service:
  flush: 3
  log_level: debug
includes:
  - inputs.yaml
pipeline:
  filters:
    - name: modify
      match: '*'
      add:
        - cluster ${cluster}
        - key ${DD_API_KEY}
  outputs:
    - name: http
      match: '*'
      host: h
      format: json
"""


def test_the_yaml_format_translates_as_the_classic_one(tmp_path: Path) -> None:
    (tmp_path / "inputs.conf").write_text(TAIL)
    (tmp_path / "inputs.yaml").write_text("pipeline:\n  inputs:\n    - name: tail\n      path: /var/log/containers/*.log\n"
                                          "      parser: docker\n      tag: kube.*\n")
    classic, classic_doc = translate(tmp_path, CLASSIC)
    yaml_, yaml_doc = translate(tmp_path, YAML, name="fluent-bit.yaml")
    assert classic_doc == yaml_doc
    assert classic_doc["log_level"] == "debug"
    assert classic_doc["transforms"]["modify"]["add"] == {"cluster": "eu-1", "key": "${DD_API_KEY}"}
    assert classic_doc["sinks"]["http"]["batch"] == {"timeout": "3s"}
    assert classic.left_out == yaml_.left_out == []


def test_yaml_lines_are_named(tmp_path: Path) -> None:
    migration, _ = translate(tmp_path, "pipeline:\n  inputs:\n    - name: tail\n      path: /x.log\n"
                                       "      ignore_older: 1d\n  outputs:\n    - name: stdout\n      match: '*'\n",
                             name="fb.yaml")
    assert left_out(migration) == ["fb.yaml:5: ignore_older 1d: no equivalent for tail's ignore_older"]


def test_parsers_given_on_the_command_line_are_read(tmp_path: Path) -> None:
    (tmp_path / "extra.conf").write_text(PARSERS)
    _, doc = translate(tmp_path, TAIL.replace("docker", "kv") + STDOUT, extra=(str(tmp_path / "extra.conf"),))
    assert transforms(doc)[0] == {"type": "parse", "inputs": ["containers"], "codec": "logfmt"}


def test_the_output_is_the_same_every_time() -> None:
    path = str(EXAMPLES / "fluent-bit.conf")
    assert migrate(path).text == migrate(path).text


# -- the command ---------------------------------------------------------------------------------------------


def test_the_command_exits_0_only_when_nothing_was_left_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "fluent-bit", str(EXAMPLES / "fluent-bit.conf")]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["sources"]["containers"]["type"] == "tail"
    partial = tmp_path / "partial.conf"
    partial.write_text(TAIL + "[FILTER]\n    Name lua\n    Match *\n" + STDOUT)
    assert main(["migrate", "fluent-bit", str(partial)]) == 1
    captured = capsys.readouterr()
    assert f"#   {partial}:6: [FILTER] lua" in captured.out
    assert captured.err.startswith(f"error: 1 setting(s) of {partial} not translated")
    assert main(["migrate", "fluent-bit", "--allow-partial", str(partial)]) == 0
    assert capsys.readouterr().err == ""


def test_the_command_reads_parsers_files_and_exits_78_on_a_file_it_cannot_read(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "p.conf").write_text(PARSERS)
    config = tmp_path / "fb.conf"
    config.write_text(TAIL.replace("docker", "kv") + STDOUT)
    assert main(["migrate", "fluent-bit", str(config), "--parsers", str(tmp_path / "p.conf")]) == 0
    assert "codec: logfmt" in capsys.readouterr().out
    assert main(["migrate", "fluent-bit", str(tmp_path / "missing.conf")]) == 78
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'missing.conf'}: cannot read")
    config.write_text(TAIL + "@INCLUDE nowhere.conf\n")
    assert main(["migrate", "fluent-bit", str(config)]) == 78
    assert f"{config}:6: @INCLUDE nowhere.conf: no such file" in capsys.readouterr().err


def test_a_parser_defined_twice_keeps_its_first_definition(tmp_path: Path) -> None:
    (tmp_path / "more.conf").write_text("[PARSER]\n    Name kv\n    Format json\n")
    migration, doc = translate(tmp_path, "[SERVICE]\n    Parsers_File parsers.conf\n    Parsers_File more.conf\n"
                               + TAIL.replace("docker", "kv") + STDOUT, parsers=PARSERS)
    assert transforms(doc)[0]["codec"] == "logfmt"  # as Fluent Bit: the first definition is the one used
    assert "[PARSER] kv at " in migration.text and migration.left_out == []


def test_comments_name_what_differs_in_meaning(tmp_path: Path) -> None:
    migration, _ = translate(tmp_path, TAIL + "[OUTPUT]\n    Name http\n    Match *\n    Format json\n")
    assert "# Parser docker: a line the runtime split (Docker's 16 KiB pieces, CRI's P lines) is joined here" \
        in migration.text
    assert "# Retry_Limit 1 (the default): Fluent Bit drops a chunk after 1 failed try; here retries go on" \
        in migration.text
    assert "# Fluent Bit added the record's time as `date`" in migration.text
