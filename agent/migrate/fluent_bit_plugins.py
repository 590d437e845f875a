"""Fluent Bit plugins and parser definitions, one translation each, into the agent's component configs.

Every translation reads its section through a :class:`Plugin`, which marks the properties it used; any property
left unread is reported as not translated, with its file:line. Keys written are only those of the agent's own
config structs (``agent/sources/tail``, ``agent/transforms``, ``agent/sinks``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from agent.expr.paths import format_path
from agent.migrate.fluent_bit_conf import Prop, Section

TRUE = {"on", "true", "yes", "1"}
FALSE = {"off", "false", "no", "0"}
STOCK_DOCKER = {"docker": "docker", "cri": "cri"}  # stock parser names that are the tail's own formats
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
IN_CLUSTER = {"kube_url": ("https://kubernetes.default.svc", "https://kubernetes.default.svc:443",
                           "https://kubernetes.default.svc.cluster.local:443"),
              "kube_ca_file": (f"{SA_DIR}/ca.crt",), "kube_token_file": (f"{SA_DIR}/token",)}
_SIZE = re.compile(r"(?i)^\s*(\d+(?:\.\d+)?)\s*([kmg]?)b?\s*$")
_TYPES = {"integer": "int", "bool": "bool", "float": "float", "string": "string"}
_ACCESSOR = re.compile(r"\['([^']*)'\]|\[\"([^\"]*)\"\]|\[(\d+)\]")
_TEMPLATE = ("{{", "%{")  # text a modify value would read as a reference


@dataclass
class Notes:
    """What a translation left out (file, line, why), in the order found, each once."""

    left_out: list[tuple[str, int, str]] = field(default_factory=list)

    def add(self, file: str, line: int, why: str) -> None:
        """Record one thing left out."""
        if (file, line, why) not in self.left_out:
            self.left_out.append((file, line, why))


class Plugin:
    """One section being translated: its properties taken one by one, its comments, what it left out."""

    def __init__(self, section: Section, notes: Notes) -> None:
        self.section, self.notes = section, notes
        self.used: set[int] = set()
        self.comments: list[str] = []

    def take(self, key: str, default: str | None = None) -> str | None:
        """The last value of ``key`` (lower-case), every ``key`` marked as used."""
        found = self.take_all(key)
        return found[-1].value if found else default

    def take_all(self, key: str) -> list[Prop]:
        """Every ``key`` property, in order, marked as used."""
        found = [p for p in self.section.props if p.name == key]
        self.used.update(id(p) for p in found)
        return found

    def flag(self, key: str, default: bool = False) -> bool:
        """``key`` read as Fluent Bit's On/Off (a value that is neither is reported and read as the default)."""
        prop = self.prop(key)
        if prop is None:
            return default
        value = prop.value.strip().lower()
        if value in TRUE | FALSE:
            return value in TRUE
        self.left_out(prop, f"{prop.value!r} is not On or Off; {'On' if default else 'Off'} assumed")
        return default

    def prop(self, key: str) -> Prop | None:
        """The last ``key`` property, marked as used."""
        found = self.take_all(key)
        return found[-1] if found else None

    def left_out(self, prop: Prop | None, why: str) -> None:
        """Report ``prop`` (or the whole section) as not translated, and why."""
        where = prop or self.section
        label = f"{prop.key} {prop.value}".strip() if prop else f"[{self.section.kind.upper()}] {self.section.plugin}"
        self.notes.add(where.file, where.line, f"{label}: {why}")

    def comment(self, text: str) -> None:
        """A comment for the user above the component (a setting translated by meaning, not by name)."""
        if text not in self.comments:
            self.comments.append(text)

    def ignore(self, keys: dict[str, str]) -> None:
        """Take ``keys`` that change nothing in what is delivered, each noted in a comment with why."""
        for key, why in keys.items():
            prop = self.prop(key)
            if prop is not None:
                self.comment(f"{prop.key} {prop.value}: {why}")

    def finish(self) -> None:
        """Report every property no translation read."""
        for prop in self.section.props:
            if id(prop) not in self.used and prop.name not in ("name", "match", "match_regex", "alias"):
                self.left_out(prop, f"no equivalent for {self.section.plugin}'s {prop.key}")


# -- values ------------------------------------------------------------------------------------------------


def size(text: str) -> str | int | None:
    """A Fluent Bit size (``50MB``, ``32k``: powers of 1024, as Fluent Bit counts) as the agent's, or None."""
    match = _SIZE.match(text)
    if not match:
        return None
    number, unit = match[1], match[2].upper()
    if not unit:
        return int(float(number))
    return f"{number}{unit}iB"


def seconds(text: str) -> str | None:
    """A Fluent Bit interval in seconds (``5``, ``0.5``) as a duration, or None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return f"{value:g}s" if value >= 0 else None


def field_path(key: str) -> tuple[str | int, ...]:
    """A record key or a record accessor (``$kubernetes['labels']['app']``) as a path of keys."""
    key = key.strip()
    if not key.startswith("$"):
        return (key,)
    head, _, rest = key[1:].partition("[")
    keys: list[str | int] = [head]
    for match in _ACCESSOR.finditer("[" + rest if rest else ""):
        keys.append(int(match[3]) if match[3] is not None else (match[1] if match[1] is not None else match[2]))
    return tuple(keys)


def key_value(prop: Prop) -> tuple[str, str]:
    """``KEY VALUE`` split at the first white space (the value may be empty)."""
    key, _, value = prop.value.strip().partition(" ")
    return key, value.strip()


@dataclass
class Fields:
    """How one chain names the record's fields: Fluent Bit's line key (``log``) is the agent's ``message``
    until a stage may have replaced it by a parsed field of the same name (then the name is ambiguous)."""

    line_key: str = "log"
    ambiguous: bool = False

    def path(self, key: str, plugin: Plugin) -> str:
        """The agent's field path for the Fluent Bit key (or record accessor) ``key``."""
        keys = field_path(key)
        if keys[0] == self.line_key:
            keys = ("message", *keys[1:])
            if self.ambiguous:
                plugin.comment(f"{key} -> message: the line when it did not parse, as in Fluent Bit; when it "
                               f"did, Fluent Bit's `{self.line_key}` is the application's own field of that name "
                               "and `message` is the application's `message`")
        return format_path(keys)


# -- parser definitions -----------------------------------------------------------------------------------


def parser_options(section: Section, notes: Notes) -> dict[str, Any] | None:
    """A ``[PARSER]`` as the parse stage's options (codec, pattern, time_key, ...), or None (reported)."""
    plugin = Plugin(section, notes)
    plugin.take("name")
    fmt = (plugin.take("format") or "").lower()
    options: dict[str, Any] = {}
    if fmt == "json":
        options["codec"] = "json"
    elif fmt == "regex":
        options.update(codec="regex", pattern=plugin.take("regex") or "")
    elif fmt == "logfmt":
        options["codec"] = "logfmt"
    else:
        plugin.left_out(section.prop("format"), f"parser format {fmt or '(none)'} has no equivalent")
        return None
    time_key, time_format = plugin.take("time_key"), plugin.take("time_format")
    if time_key and time_format:
        options.update(time_key=time_key, time_format=time_format)
        if plugin.flag("time_keep"):
            options["time_keep"] = True
    elif time_key or time_format:
        plugin.left_out(section.prop("time_key") or section.prop("time_format"),
                        "Time_Key and Time_Format go together; the time is not read")
    types = plugin.prop("types")
    if types is not None:
        converted = {}
        for item in types.value.split():
            name, _, kind = item.partition(":")
            if kind.lower() in _TYPES:
                converted[name] = _TYPES[kind.lower()]
            else:
                plugin.left_out(types, f"type {kind or '(none)'} of {name} has no equivalent")
        if converted:
            options["types"] = converted
    plugin.ignore({"time_strict": "a time that does not parse is counted, and the event keeps going"})
    plugin.finish()
    return options


# -- inputs --------------------------------------------------------------------------------------------------


@dataclass
class Input:
    """A translated input: its source config, tag, the stages that must follow it alone, its Mem_Buf_Limit."""

    cid: str
    plugin: Plugin
    body: dict[str, Any]
    tags: list[str]
    first_stages: list[dict[str, Any]] = field(default_factory=list)
    buffer_bytes: str | int | None = None
    fields: Fields = field(default_factory=Fields)


def tail(plugin: Plugin, cid: str, parsers: dict[str, Section], notes: Notes, default_tag: str) -> Input:
    """``tail``: Path, Exclude_Path, Parser / multiline.parser docker|cri, Mem_Buf_Limit, Skip_Long_Lines, ..."""
    paths = [p.strip() for prop in plugin.take_all("path") for p in prop.value.split(",") if p.strip()]
    body: dict[str, Any] = {"type": "tail", "include": paths}
    excluded = [p.strip() for prop in plugin.take_all("exclude_path") for p in prop.value.split(",") if p.strip()]
    if excluded:
        body["exclude"] = excluded
    tag = plugin.take("tag") or default_tag
    tags = [tag.replace("*", p.lstrip("/").replace("/", ".")) for p in paths] if "*" in tag else [tag]
    result = Input(cid, plugin, body, tags)
    _tail_format(plugin, result, parsers, notes)
    if plugin.flag("read_from_head"):
        body["read_from"] = "beginning"
    _tail_lines(plugin, body)
    for key, target in (("refresh_interval", "glob_interval"), ("rotate_wait", "rotate_wait"),
                        ("docker_mode_flush", "partial_flush_timeout")):
        prop = plugin.prop(key)
        if prop is not None:
            value = seconds(prop.value)
            if value is None:
                plugin.left_out(prop, "not a number of seconds")
            else:
                body[target] = value
    if not plugin.flag("inotify_watcher", True):
        body["inotify"] = False
    limit = plugin.prop("mem_buf_limit")
    if limit is not None:
        result.buffer_bytes = size(limit.value)
        plugin.comment(f"Mem_Buf_Limit {limit.value}: the buffers after this source hold at most that much; "
                       "when they are full the file waits (nothing is dropped)")
    db = plugin.prop("db")
    if db is not None:
        plugin.comment(f"DB {db.value}: file positions are checkpointed under data_dir (committed once delivered)")
    else:
        plugin.comment("Fluent Bit had no DB (it forgot positions on restart); the agent checkpoints them in data_dir")
    path_key = plugin.take("path_key")
    if path_key:
        result.first_stages.append({"type": "modify", "move": {"file": path_key}})
        plugin.comment(f"Path_Key {path_key}: the tail's `file` field, moved to {path_key}")
    line_key = plugin.take("key")
    if line_key:
        result.fields.line_key = line_key
    plugin.ignore({
        "buffer_chunk_size": "read sizes are the agent's own (read_bytes)",
        "docker_mode": "partial Docker and CRI lines are always joined",
        "db.sync": "checkpoints are written atomically", "db.locking": "data_dir is locked",
        "db.journal_mode": "checkpoints are not SQLite", "file_cache_advise": "no effect here",
        "threaded": "no effect here", "static_batch_size": "no effect here", "exit_on_eof": "no effect here",
        "storage.type": "the file is the buffer: a full pipeline pauses reading"})
    plugin.finish()
    return result


def _tail_format(plugin: Plugin, result: Input, parsers: dict[str, Section], notes: Notes) -> None:
    body = result.body
    multiline = plugin.prop("multiline.parser")
    parser = plugin.prop("parser")
    if multiline is not None:
        names = {n.strip().lower() for n in multiline.value.split(",") if n.strip()}
        if names <= {"docker", "cri"}:
            body["format"] = names.pop() if len(names) == 1 else "auto"
        else:
            plugin.left_out(multiline, "only the docker and cri multiline parsers are translated "
                                       "(see the tail source's multiline option)")
            body["format"] = "auto"
        if parser is not None:
            plugin.comment(f"Parser {parser.value}: ignored by Fluent Bit when multiline.parser is set")
        return
    if parser is None:
        body["format"] = "raw"
        return
    name = parser.value.strip()
    if name.lower() in STOCK_DOCKER and (name not in parsers or _is_stock(name, parsers[name])):
        body["format"] = STOCK_DOCKER[name.lower()]
        if not plugin.flag("docker_mode"):
            plugin.comment(f"Parser {name}: a line the runtime split (Docker's 16 KiB pieces, CRI's P lines) is "
                           "joined here; Fluent Bit without Docker_Mode / multiline.parser kept each piece apart")
        return
    body["format"] = "raw"
    definition = parsers.get(name)
    options = parser_options(definition, notes) if definition is not None else None
    if definition is None:
        plugin.left_out(parser, f"parser {name} is defined in no parsers file read")
        return
    if options is None:
        plugin.left_out(parser, f"parser {name} is not translated")
        return
    result.first_stages.append({"type": "parse", **options})
    plugin.comment(f"Parser {name}: the parse stage after it; a line that does not parse goes on as "
                   "`message` marked with `parse_error` (Fluent Bit keeps it as `log`)")


def _is_stock(name: str, section: Section) -> bool:
    """Whether a parsers file's ``docker``/``cri`` definition is Fluent Bit's stock one (JSON / the CRI regex)."""
    fmt = (section.get("format") or "").lower()
    return fmt == "json" if name.lower() == "docker" else fmt == "regex"


def _tail_lines(plugin: Plugin, body: dict[str, Any]) -> None:
    skip = plugin.flag("skip_long_lines")
    limit = plugin.prop("buffer_max_size")
    limit_bytes = size(limit.value) if limit is not None else None
    if limit_bytes is not None:
        body["max_line_bytes"] = limit_bytes
    shown = limit.value if limit is not None else "32k, its default"
    if skip:
        plugin.comment(f"Skip_Long_Lines On: Fluent Bit skipped lines longer than Buffer_Max_Size ({shown}); "
                       "here a line past max_line_bytes is cut, marked truncated, and counted")
    elif limit is not None:
        plugin.comment(f"Buffer_Max_Size {limit.value}: Fluent Bit stopped reading a file at a longer line; "
                       "here the line is cut, marked truncated, and counted")


# -- filters -------------------------------------------------------------------------------------------------


def kubernetes(plugin: Plugin, fields: Fields, parsers: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """``kubernetes`` as the agent's transform, compat: fluent-bit (the fluentbit.io/ annotations honoured)."""
    body: dict[str, Any] = {"type": "kubernetes"}
    merge = plugin.flag("merge_log")
    if merge:
        body["merge_log"] = True
        merge_key = plugin.take("merge_log_key")
        if merge_key:
            body["merge_log_key"] = merge_key
        if not plugin.flag("keep_log", True):
            body["keep_log"] = False
            if not merge_key:
                fields.ambiguous = True
        plugin.ignore({"merge_log_trim": "the line's trailing newline is already gone"})
    for key, target in (("labels", "labels"), ("annotations", "annotations")):
        if not plugin.flag(key, True):
            body[target] = False
    for key, target in (("namespace_labels", "namespace_labels"), ("namespace_annotations", "namespace_annotations")):
        if plugin.flag(key):
            body[target] = True
    if plugin.flag("k8s-logging.exclude"):
        body["exclude_annotation"] = True
    if plugin.flag("k8s-logging.parser"):
        body["parser_annotation"] = True
        if parsers:
            body["parsers"] = parsers
    body["compat"] = "fluent-bit"
    for key, defaults in IN_CLUSTER.items():
        prop = plugin.prop(key)
        if prop is not None and prop.value.rstrip("/") not in defaults:
            plugin.left_out(prop, "the agent reaches the API server in-cluster (service account) or through "
                                  "a kubeconfig (kubeconfig:, context:); set one of those")
    plugin.comment("the API server in-cluster (service account token and CA); a node-scoped list+watch "
                   "replaces Fluent Bit's per-pod GETs")
    prefix = plugin.take("kube_tag_prefix")
    if prefix:
        plugin.comment(f"Kube_Tag_Prefix {prefix}: pod, namespace and container come from the kubelet's "
                       "file name (/var/log/containers/<pod>_<namespace>_<container>-<id>.log), not the tag")
    plugin.ignore({
        "buffer_size": "the watch reads whole pod objects (no per-pod GET buffer)",
        "use_kubelet": "pods come from the API server's node-scoped watch", "kubelet_port": "not used",
        "kubelet_host": "not used", "kube_meta_cache_ttl": "the cache follows the watch; deleted pods are kept "
        "until their files are read", "kube_token_ttl": "the token file is re-read when it rotates",
        "owner_references": "owner is always written"})
    plugin.finish()
    return [body]


def parser_filter(plugin: Plugin, fields: Fields, parsers: dict[str, Section], notes: Notes
                  ) -> list[dict[str, Any]] | None:
    """``parser``: Key_Name parsed by Parser into the record; Reserve_Data Off has no equivalent."""
    key = plugin.take("key_name")
    names = plugin.take_all("parser")
    if not key or not names:
        plugin.left_out(None, "Key_Name and Parser are required")
        return None
    if len(names) > 1:
        plugin.left_out(names[1], "only one parser per stage: Fluent Bit's fallback to the next parser "
                                  "has no equivalent")
    definition = parsers.get(names[0].value.strip())
    options = parser_options(definition, notes) if definition is not None else None
    if options is None:
        plugin.left_out(names[0], f"parser {names[0].value} is not defined or not translated")
        return None
    body: dict[str, Any] = {"type": "parse", "field": fields.path(key, plugin), **options}
    if plugin.flag("preserve_key"):
        body["keep_original"] = True
    elif field_path(key)[0] == fields.line_key:
        fields.ambiguous = True
    if not plugin.flag("reserve_data"):
        plugin.left_out(plugin.section.prop("reserve_data"),
                        "Reserve_Data Off (the default) drops the record's other fields; here they are kept "
                        "(set Reserve_Data On to mean that)")
    plugin.comment("a value that does not parse: the event goes on marked with `parse_error` "
                   "(Fluent Bit passes it unchanged)")
    plugin.ignore({"unescape_key": "no effect on parsed JSON"})
    plugin.finish()
    return [body]


def grep(plugin: Plugin, fields: Fields) -> list[dict[str, Any]] | None:
    """``grep``: Regex/Exclude rules in order, with Logical_Op."""
    op = (plugin.take("logical_op") or "legacy").lower()
    if op not in ("legacy", "and", "or"):
        plugin.left_out(plugin.section.prop("logical_op"), "not legacy, and or or")
        return None
    rules: list[dict[str, dict[str, str]]] = []
    for prop in plugin.section.props:
        if prop.name not in ("regex", "exclude"):
            continue
        plugin.used.add(id(prop))
        key, pattern = key_value(prop)
        if not pattern:
            plugin.left_out(prop, "wants KEY REGEX")
            return None
        if op == "legacy" and any("regex" in rule for rule in rules):
            plugin.comment(f"{prop.key} {prop.value}: never evaluated by Fluent Bit 4.2.8 (with Logical_Op "
                           "legacy a Regex rule decides at once), so left out")
            continue
        rules.append({prop.name: {fields.path(key, plugin): pattern}})
    if not rules:
        plugin.left_out(None, "no Regex or Exclude rule")
        return None
    body: dict[str, Any] = {"type": "filter"}
    if len(rules) == 1:
        body.update(rules[0])
    else:
        body["rules"] = rules
        if op != "legacy":
            body["logical_op"] = op
    plugin.finish()
    return [body]


_MODIFY_ORDER = ("rename", "move", "copy", "add", "set", "remove")
_MODIFY_RULES = {"rename": "rename", "hard_rename": "move", "hard_copy": "copy", "copy": "add", "add": "add",
                 "set": "set", "remove": "remove"}


def modify(plugin: Plugin, fields: Fields) -> list[dict[str, Any]] | None:
    """``modify``: its rules in the order written, as one modify stage per run the agent's fixed order keeps."""
    if plugin.take_all("condition"):
        plugin.left_out(plugin.section.prop("condition"), "conditions have no equivalent in modify: "
                                                          "the whole filter is left out")
        return None
    stages: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    last = -1
    for prop in plugin.section.props:
        op = _MODIFY_RULES.get(prop.name)
        if op is None:
            continue
        plugin.used.add(id(prop))
        key, value = key_value(prop)
        path = fields.path(key, plugin)
        if op == "remove":
            entry: tuple[str, Any] = (path, None)
        elif not value:
            plugin.left_out(prop, "wants KEY VALUE")
            continue
        elif op in ("add", "set") and prop.name != "copy" and any(t in value for t in _TEMPLATE):
            plugin.left_out(prop, "the value would be read as a field reference ({{ }} or %{ })")
            continue
        elif prop.name == "copy":
            entry = (fields.path(value, plugin), "{{ " + path + " }}")
        elif op in ("rename", "move", "copy"):
            entry = (path, fields.path(value, plugin))
        else:
            entry = (path, value)
        order = _MODIFY_ORDER.index(op)
        target = current.get(op)
        if order < last or (target is not None and entry[0] in target):
            stages.append(current)
            current, last = {}, -1
        last = order
        if op == "remove":
            current.setdefault(op, []).append(entry[0])
        else:
            current.setdefault(op, {})[entry[0]] = entry[1]
    if current:
        stages.append(current)
    if not stages:
        plugin.left_out(None, "no rule translated")
        return None
    if len(stages) > 1:
        plugin.comment("its rules run in the order written, so they span several modify stages")
    plugin.finish()
    return [{"type": "modify", **stage} for stage in stages]


def nest(plugin: Plugin, fields: Fields) -> list[dict[str, Any]] | None:
    """``nest``: Operation nest (Wildcard, Nest_under) or lift (Nested_under), with Add_/Remove_prefix."""
    operation = (plugin.take("operation") or "").lower()
    body: dict[str, Any] = {"type": "nest", "operation": operation}
    if operation == "nest":
        body["wildcard"] = [_top(p.value.strip(), fields) for p in plugin.take_all("wildcard")]
        body["nest_under"] = plugin.take("nest_under")
    elif operation == "lift":
        nested = plugin.take("nested_under") or ""
        body["nested_under"] = nested if fields.ambiguous else _top(nested, fields)
    else:
        plugin.left_out(plugin.section.prop("operation"), "not nest or lift")
        return None
    for key in ("add_prefix", "remove_prefix"):
        value = plugin.take(key)
        if value:
            body[key] = value
    plugin.finish()
    return [body]


def _top(key: str, fields: Fields) -> str:
    """A top-level key: the line key is ``message`` while it still holds the line."""
    return "message" if key == fields.line_key and not fields.ambiguous else key


def record_modifier(plugin: Plugin, fields: Fields) -> list[dict[str, Any]] | None:
    """``record_modifier``: Record (set) and Remove_key; Allowlist_key has no equivalent."""
    body: dict[str, Any] = {"type": "modify"}
    for prop in plugin.take_all("record"):
        key, value = key_value(prop)
        if any(t in value for t in _TEMPLATE):
            plugin.left_out(prop, "the value would be read as a field reference ({{ }} or %{ })")
            continue
        body.setdefault("set", {})[fields.path(key, plugin)] = value
    for prop in plugin.take_all("remove_key"):
        body.setdefault("remove", []).append(fields.path(prop.value.strip(), plugin))
    for key in ("allowlist_key", "whitelist_key"):
        for prop in plugin.take_all(key):
            plugin.left_out(prop, "no stage keeps only the named keys")
    plugin.finish()
    return [body] if len(body) > 1 else None


def throttle(plugin: Plugin) -> list[dict[str, Any]] | None:
    """``throttle``: Rate per Interval averaged over Window intervals, as a budget per fixed window."""
    try:
        rate = float(plugin.take("rate") or "")
        window = int(plugin.take("window") or "5")
        interval = seconds(plugin.take("interval") or "1") or "1s"
    except ValueError:
        plugin.left_out(None, "Rate and Window must be numbers")
        return None
    span = float(interval[:-1]) * window
    plugin.comment(f"Rate {rate:g} per {interval} over a sliding Window of {window}: here "
                   f"{int(rate * window)} events per fixed {span:g}s window")
    plugin.ignore({"print_status": "the stage's drops are counted in agent_component_discarded_events_total"})
    plugin.finish()
    return [{"type": "throttle", "threshold": max(1, int(rate * window)), "window": f"{span:g}s"}]


# -- outputs -------------------------------------------------------------------------------------------------


def _endpoint(plugin: Plugin, default_port: int, path_key: str | None = None, path: str = "") -> str:
    tls = plugin.flag("tls")
    host = plugin.take("host") or "127.0.0.1"
    port = plugin.take("port") or str(default_port)
    if path_key:
        path = plugin.take(path_key) or path
    scheme = "https" if tls else "http"
    return f"{scheme}://{host}:{port}{path}"


def _tls(plugin: Plugin, body: dict[str, Any]) -> None:
    tls: dict[str, Any] = {}
    if not plugin.flag("tls.verify", True):
        tls["verify_certificate"] = False
    if not plugin.flag("tls.verify_hostname", True):
        tls["verify_hostname"] = False
    for key, target in (("tls.ca_file", "ca_file"), ("tls.crt_file", "cert_file"), ("tls.key_file", "key_file")):
        value = plugin.take(key)
        if value:
            tls[target] = value
    if tls:
        body["tls"] = tls


def _basic_auth(plugin: Plugin, body: dict[str, Any], user_key: str, password_key: str) -> None:
    user, password = plugin.take(user_key), plugin.take(password_key)
    if user:
        body["auth"] = {"strategy": "basic", "user": user, "password": password or ""}


def _compression(plugin: Plugin, body: dict[str, Any]) -> None:
    value = (plugin.take("compress") or "").lower()
    if value in ("gzip", "zstd"):
        body["compression"] = value
    elif value:
        plugin.left_out(plugin.section.prop("compress"), f"compression {value} has no equivalent")


def _delivery(plugin: Plugin, body: dict[str, Any]) -> None:
    """The keys every Fluent Bit output shares: Retry_Limit, Workers."""
    retry = plugin.prop("retry_limit")
    value = retry.value.strip().lower() if retry is not None else "1"
    if value not in ("false", "no_limits", "no_retries"):
        written = f"Retry_Limit {value}" if retry is not None else "Retry_Limit 1 (the default)"
        plugin.comment(f"{written}: Fluent Bit drops a chunk after {value} failed "
                       f"{'try' if value == '1' else 'tries'}; here retries go on until it is delivered "
                       "(events it refuses for good go to the dead letter)")
    elif value == "no_retries":
        plugin.comment("Retry_Limit no_retries: Fluent Bit drops a chunk at its first failure; here "
                       "retries go on until it is delivered")
    workers = plugin.take("workers")
    if workers and workers.isdigit() and int(workers) > 0:
        body.setdefault("request", {})["concurrency"] = int(workers)


def es(plugin: Plugin) -> dict[str, Any] | None:
    """``es``: Host/Port/Path, Index or Logstash_Format/_Prefix/_DateFormat, auth, TLS, type name."""
    body: dict[str, Any] = {"type": "elasticsearch", "endpoints": [_endpoint(plugin, 9200, "path")]}
    if plugin.flag("logstash_format"):
        prefix = plugin.take("logstash_prefix") or "logstash"
        separator = plugin.take("logstash_prefix_separator") or "-"
        body["index"] = f"{prefix}{separator}{plugin.take('logstash_dateformat') or '%Y.%m.%d'}"
        plugin.comment("Logstash_Format: one index a day, from each event's time")
    else:
        body["index"] = plugin.take("index") or "fluent-bit"
    type_name = plugin.take("type") or "_doc"
    if plugin.flag("suppress_type_name"):
        body["suppress_type_name"] = True
    elif type_name == "_doc":
        body["suppress_type_name"] = False
        plugin.comment("Type _doc is sent as Fluent Bit sends it (Elasticsearch 7); use suppress_type_name: "
                       "true for Elasticsearch 8 and OpenSearch")
    else:
        plugin.left_out(plugin.section.prop("type"), "only the type name _doc can be sent")
    pipeline = plugin.take("pipeline")
    if pipeline:
        body["pipeline"] = pipeline
    _basic_auth(plugin, body, "http_user", "http_passwd")
    _tls(plugin, body)
    _compression(plugin, body)
    _delivery(plugin, body)
    body["id"] = "auto"
    plugin.comment("id: auto: each event gets a deterministic _id, so a retry never duplicates it"
                   + (" (Generate_ID)" if plugin.flag("generate_id") else ""))
    plugin.ignore({"buffer_size": "the agent reads whole _bulk responses", "trace_output": "see `agent tap`",
                   "trace_error": "refused events are logged and dead-lettered"})
    plugin.finish()
    return body


def datadog(plugin: Plugin) -> dict[str, Any] | None:
    """``datadog`` as ``datadog_logs``: the site from Host, apikey, dd_service/dd_source/dd_tags, gzip."""
    body: dict[str, Any] = {"type": "datadog_logs", "api_key": plugin.take("apikey") or ""}
    host = plugin.take("host") or "http-intake.logs.datadoghq.com"
    tls = plugin.flag("tls")
    if host.startswith("http-intake.logs.") and tls:
        body["site"] = host.removeprefix("http-intake.logs.")
    else:
        body["endpoint"] = f"{'https' if tls else 'http'}://{host}:{plugin.take('port') or (443 if tls else 80)}"
    plugin.take("port")
    compress = (plugin.take("compress") or "").lower()
    body["compression"] = "gzip" if compress == "gzip" else "none"
    for key, target in (("dd_service", "service"), ("dd_source", "ddsource"), ("dd_tags", "ddtags"),
                        ("dd_hostname", "hostname")):
        value = plugin.take(key)
        if value:
            body[target] = value
    message_key = plugin.prop("dd_message_key")
    if message_key is not None and message_key.value not in ("log", "message"):
        plugin.left_out(message_key, "the agent sends `message` as the log's message")
    _delivery(plugin, body)
    plugin.ignore({"json_date_key": "the event's time is sent as Datadog reads it"})
    plugin.finish()
    return body


def http(plugin: Plugin) -> dict[str, Any] | None:
    """``http``: Host/Port/URI, Format json|json_lines, Header, auth, TLS, compress."""
    body: dict[str, Any] = {"type": "http", "uri": _endpoint(plugin, 80, "uri", "/")}
    fmt = (plugin.take("format") or "msgpack").lower()
    if fmt in ("json", "json_lines", "json_stream"):
        body["encoding"] = "json" if fmt == "json" else "ndjson"
    else:
        plugin.left_out(plugin.section.prop("format"), f"format {fmt} has no equivalent (json or json_lines)")
        body["encoding"] = "ndjson"
    headers = {k: v for k, v in (key_value(p) for p in plugin.take_all("header"))}
    if headers:
        body.setdefault("request", {})["headers"] = headers
    _basic_auth(plugin, body, "http_user", "http_passwd")
    _tls(plugin, body)
    _compression(plugin, body)
    _delivery(plugin, body)
    date_key = plugin.take("json_date_key") or "date"
    if fmt.startswith("json") and date_key.lower() not in ("false", "off"):
        plugin.comment(f"Fluent Bit added the record's time as `{date_key}`; events here carry their own time fields")
    plugin.ignore({"json_date_format": "no date key is added"})
    plugin.finish()
    return body


def prometheus_remote_write(plugin: Plugin) -> dict[str, Any] | None:
    """``prometheus_remote_write``: Host/Port/Uri, headers, basic auth, add_label."""
    body: dict[str, Any] = {"type": "prometheus_remote_write", "url": _endpoint(plugin, 80, "uri", "/")}
    headers = {k: v for k, v in (key_value(p) for p in plugin.take_all("header"))}
    if headers:
        body["headers"] = headers
    labels = {k: v for k, v in (key_value(p) for p in plugin.take_all("add_label"))}
    if labels:
        body["external_labels"] = labels
    user, password = plugin.take("http_user"), plugin.take("http_passwd")
    if user:
        body["basic_auth"] = {"username": user, "password": password or ""}
    _delivery(plugin, {})
    plugin.finish()
    return body


def stdout(plugin: Plugin) -> dict[str, Any] | None:
    """``stdout`` as ``console`` (JSON lines)."""
    fmt = (plugin.take("format") or "msgpack").lower()
    if not fmt.startswith("json"):
        plugin.comment(f"Format {fmt}: Fluent Bit printed `[n] tag: [time, {{record}}]`; here each event "
                       "is one JSON line")
    plugin.ignore({"json_date_key": "no date key is added", "json_date_format": "no date key is added"})
    plugin.finish()
    return {"type": "console", "encoding": "json"}


def file(plugin: Plugin, tag: str) -> dict[str, Any] | None:
    """``file``: Path + File (else the tag) as one JSON-lines file."""
    fmt = (plugin.take("format") or "out_file").lower()
    if fmt not in ("out_file", "plain"):
        plugin.left_out(plugin.section.prop("format"), f"format {fmt} has no equivalent (JSON lines)")
        return None
    directory = plugin.take("path") or "."
    name = plugin.take("file") or tag
    if plugin.section.get("file") is None:
        plugin.comment(f"Fluent Bit names the file by the tag; here it is {name}")
    if fmt == "out_file":
        plugin.comment("Format out_file wrote `tag: [time, {record}]`; here each event is one JSON line "
                       "(Format plain)")
    plugin.ignore({"mkdir": "the directory is made when missing"})
    plugin.finish()
    return {"type": "file", "path": f"{directory.rstrip('/')}/{name}", "encoding": "json"}


def null(plugin: Plugin) -> dict[str, Any] | None:
    """``null`` as ``blackhole``."""
    plugin.finish()
    return {"type": "blackhole"}

