"""From config text to typed structs, with every error located by file, line and key path.

``interpolate`` expands ``${...}`` references in the raw text, ``parse_document`` turns YAML (or
JSON) into plain data plus a ``LineIndex``, and ``convert`` validates that data into msgspec
structs, rewriting msgspec's ``ValidationError`` into a ``ConfigError`` such as
``pipeline.yaml:14: sinks.es.batch.max_bytes: expected a size like "5MiB", got "lots"``.
"""

from __future__ import annotations

import ast
import difflib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import msgspec.inspect as mi
import yaml

from agent.config import units
from agent.core.errors import ConfigError

T = TypeVar("T")
PathKey = str | int
KeyPath = tuple[PathKey, ...]

# -- interpolation ------------------------------------------------------------------------------------

_REFERENCE = re.compile(
    r"""
    (?P<escape>\$\$\{)
    | \$\{ (?: file:(?P<path>[^}\n]+) | (?P<var>[A-Za-z_][A-Za-z0-9_]*) (?::-(?P<default>[^}\n]*))? ) \}
    | (?P<bad>\$\{[^}\n]*\}?)
    """,
    re.VERBOSE,
)


UNRESOLVED = "unresolved"  # what a reference that cannot be expanded becomes when errors are collected


def interpolate(text: str, *, file: str, env: Mapping[str, str] | None = None,
                substituted: set[str] | None = None, errors: list[ConfigError] | None = None) -> str:
    """Expand ``${VAR}``, ``${VAR:-default}``, ``${file:PATH}`` and the ``$${`` escape in ``text``.

    ``PATH`` is relative to the directory of ``file``; its trailing newline is dropped. A default
    applies when the variable is unset or empty. A reference that cannot be expanded raises
    ``ConfigError`` at its line; with ``errors`` given, every such error is appended there instead and
    the reference becomes ``UNRESOLVED`` (so the rest of the document can still be checked).
    Every value put in is added to ``substituted`` so that errors can redact it (it may be a secret).
    """
    environ = os.environ if env is None else env
    base = Path(file).parent

    def expand(match: re.Match[str]) -> str:
        try:
            value = _expand(match, environ, base)
        except ValueError as exc:
            error = ConfigError(str(exc), file=file, line=text.count("\n", 0, match.start()) + 1)
            if errors is None:
                raise error from None
            errors.append(error)
            return UNRESOLVED
        if substituted is not None and not match["escape"]:
            substituted.add(value)
        return value

    return _REFERENCE.sub(expand, text)


def _expand(match: re.Match[str], environ: Mapping[str, str], base: Path) -> str:
    """The replacement for one reference; ``ValueError`` explains a bad one."""
    if match["escape"]:
        return "${"
    if match["path"]:
        return _read_file(base / match["path"], match["path"])
    if match["var"]:
        value = environ.get(match["var"])
        if match["default"] is not None and not value:
            return match["default"]
        if value is None:
            raise ValueError(f'environment variable "{match["var"]}" is not set')
        return value
    raise ValueError(f'invalid reference "{match["bad"]}" (write "$${{" for a literal "${{")')


def _read_file(path: Path, shown: str) -> str:
    """The text of ``path`` without its trailing newline."""
    try:
        return path.read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")
    except OSError as exc:
        raise ValueError(f'cannot read file "{shown}": {exc.strerror}') from None
    except UnicodeDecodeError:
        raise ValueError(f'cannot read file "{shown}": not UTF-8 text') from None


# -- YAML with line numbers ---------------------------------------------------------------------------

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class LineIndex:
    """Maps key paths of a parsed document to the 1-based lines where they appear."""

    def __init__(self, lines: Mapping[KeyPath, int] | None = None) -> None:
        self._lines = dict(lines or {})

    def line_for(self, path: Sequence[PathKey]) -> int | None:
        """The line of ``path``, or of its deepest prefix found in the document."""
        path = tuple(path)
        for end in range(len(path), 0, -1):
            line = self._lines.get(path[:end])
            if line is not None:
                return line
        return None

    def has(self, path: Sequence[PathKey]) -> bool:
        """Whether ``path`` itself is a key written in the document."""
        return tuple(path) in self._lines

    def key_at(self, line: int) -> KeyPath:
        """The deepest key path written on ``line``, else the last one before it (``()`` if none)."""
        best: tuple[int, int, int] = (0, 0, 0)
        found: KeyPath = ()
        for order, (path, at) in enumerate(self._lines.items()):
            if at <= line and (at, len(path), order) > best:
                best, found = (at, len(path), order), path
        return found


def parse_document(text: str, *, file: str, errors: list[ConfigError] | None = None) -> tuple[Any, LineIndex]:
    """Parse YAML or JSON into plain data and a ``LineIndex``; an empty document gives ``{}``.

    A key given twice in one mapping (YAML would silently keep the last) is an error naming both
    lines: appended to ``errors`` when given (the document is still returned), else raised.
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        duplicates = list(_duplicate_keys(node, (), file, set())) if node is not None else []
        if duplicates and errors is None:
            raise duplicates[0]
        if errors is not None:
            errors.extend(duplicates)
        data = loader.construct_document(node) if node is not None else None
        lines = dict(_node_lines(loader, node, (), set())) if node is not None else {}
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, text, file) from None
    finally:
        loader.dispose()
    if data is None:
        return {}, LineIndex()
    if not isinstance(data, dict):
        line = node.start_mark.line + 1 if node is not None else None
        raise ConfigError(f"expected a mapping at the top level, got {kind_name(data)}", file=file, line=line)
    return data, LineIndex(lines)


def _node_lines(
    loader: yaml.SafeLoader, node: yaml.Node, path: KeyPath, active: set[int]
) -> Iterator[tuple[KeyPath, int]]:
    """Yield ``(key path, line)`` for every key and list item under ``node``."""
    if id(node) in active:  # an alias to one of its own ancestors
        return
    active.add(id(node))
    if isinstance(node, yaml.MappingNode):
        children = [(loader.construct_object(key, deep=True), key, value) for key, value in node.value]
    elif isinstance(node, yaml.SequenceNode):
        children = [(index, item, item) for index, item in enumerate(node.value)]
    else:
        children = []
    for key, key_node, value_node in children:
        yield (*path, key), key_node.start_mark.line + 1
        yield from _node_lines(loader, value_node, (*path, key), active)
    active.discard(id(node))


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _duplicate_keys(node: yaml.Node, path: KeyPath, file: str, active: set[int]) -> Iterator[ConfigError]:
    """A ``ConfigError`` for every scalar key repeated in a mapping, at the repeat's line.

    Runs on the composed tree, before merge keys (``<<``) are flattened: overriding a merged key
    is not a duplicate.
    """
    if id(node) in active:  # an alias to one of its own ancestors
        return
    active.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[tuple[str, str], int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) and key.tag != _MERGE_TAG else None
            child = (*path, name) if name is not None else path
            line = key.start_mark.line + 1
            if name is not None and (key.tag, name) in first:
                yield ConfigError(f'"{name}" is defined twice, at lines {first[key.tag, name]} and {line} '
                                  "(YAML would keep only the last)", file=file, line=line, key=key_path_str(child))
            elif name is not None:
                first[key.tag, name] = line
            yield from _duplicate_keys(value, child, file, active)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*path, index), file, active)
    active.discard(id(node))


def _yaml_error(exc: yaml.YAMLError, text: str, file: str) -> ConfigError:
    """A ``ConfigError`` for a YAML syntax error, at the line of its problem."""
    if not isinstance(exc, yaml.MarkedYAMLError):  # a bad character, located by its offset
        position = getattr(exc, "position", None)
        line = text.count("\n", 0, position) + 1 if isinstance(position, int) else None
        return ConfigError(f"invalid YAML: {str(exc).splitlines()[0]}", file=file, line=line)
    mark = exc.problem_mark or exc.context_mark
    context, problem = exc.context or "", exc.problem or ""
    if context.startswith("while"):  # "... while scanning a quoted scalar"
        message = f"{problem} {context}"
    else:  # "expected a single document in the stream, but found another document"
        message = f"{context}, {problem}" if context else problem
    return ConfigError(f"invalid YAML: {message.strip()}", file=file, line=mark.line + 1 if mark else None)


# -- conversion to structs ----------------------------------------------------------------------------

_VALIDATION = re.compile(r"(?P<message>.*?)(?: - at (?P<key>`key` in )?`\$(?P<path>[^`]*)`)?", re.DOTALL)
_SEGMENT = re.compile(r"\.(?P<name>[^.\[]+)|\[(?P<index>[0-9]+)\]|(?P<any>\[\.\.\.\])")
_EXPECTED = re.compile(r"Expected `(?P<expected>[^`]+)`(?P<rest>.*?)(?:, got `(?P<got>[^`]+)`)?", re.DOTALL)
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<name>.*)`", re.DOTALL)
_MISSING = re.compile(r"Object missing required field `(?P<name>.*)`", re.DOTALL)
_KEY = r"(?P<key>[A-Za-z_@][\w@-]*(?:\.[A-Za-z_@][\w@-]*)*)"
# a component's own check naming the key it is about: "routes.errors: column 10: ..."
_INNER_KEY = re.compile(rf"{_KEY}: (?P<rest>.+)", re.DOTALL)
# or starting with the key's name: "threshold must be at least 1"
_LEADING_KEY = re.compile(rf"{_KEY}\b")
_INVALID = re.compile(r"Invalid (?:enum )?value (?P<value>.*)", re.DOTALL)
_TYPE_NAMES = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "a boolean",
    "array": "a list",
    "object": "a mapping",
    "datetime": "a datetime",
    "date": "a date",
    "time": "a time",
    "duration": "a duration",
    "uuid": "a UUID",
    "decimal": "a decimal",
}


def key_path_str(path: Sequence[PathKey]) -> str:
    """Render a key path as ``sinks.es.batch[0].max_bytes``."""
    parts = [f"[{key}]" if isinstance(key, int) else f".{key}" for key in path]
    return "".join(parts).removeprefix(".")


def convert(data: Any, type_: type[T], *, file: str, lines: LineIndex, prefix: KeyPath = ()) -> T:
    """Validate ``data`` (found at ``prefix`` in ``file``) into ``type_``, or raise ``ConfigError``."""
    try:
        return msgspec.convert(data, type_, strict=True, dec_hook=units.dec_hook)
    except msgspec.ValidationError as exc:
        raise _config_error(str(exc), data, type_, file, lines, prefix) from None


def _config_error(
    text: str, data: Any, type_: type, file: str, lines: LineIndex, prefix: KeyPath
) -> ConfigError:
    """Turn the text of a msgspec ``ValidationError`` into a located ``ConfigError``."""
    parsed = _VALIDATION.fullmatch(text)
    assert parsed is not None  # the pattern matches any text
    message = parsed["message"]
    segments = _segments(parsed["path"] or "") + ([None] if parsed["key"] else [])
    path = _resolve(data, type_, segments, text)
    key_path, line_path = path, path
    if parsed["key"]:
        resolved = len(path) == len(segments)
        key_path = path[:-1] if resolved else path
        shown = f" {_show(path[-1])}" if resolved else ""
        message = f"invalid key{shown}: {_rewrite(message)}"
    elif unknown := _UNKNOWN.fullmatch(message):
        line_path = (*path, unknown["name"])
        message = f'unknown key "{unknown["name"]}"{did_you_mean(unknown["name"], _keys(type_, data, path))}'
    elif missing := _MISSING.fullmatch(message):
        message = f'missing required key "{missing["name"]}"'
    elif invalid := _INVALID.fullmatch(message):
        message = _invalid_value(_literal(invalid["value"]), _choices(type_, data, path))
    else:
        message = _rewrite(message)
        inner = _INNER_KEY.fullmatch(message)
        named = inner or _LEADING_KEY.match(message)
        if named is not None and lines.has(keys := (*prefix, *line_path, *named["key"].split("."))):
            line_path = keys[len(prefix):]  # the line of the key the check names, not the component's
            if inner is not None:  # "routes.errors: ...": the key path says the key, the message the rest
                key_path, message = line_path, inner["rest"]
    return ConfigError(
        message,
        file=file,
        line=lines.line_for((*prefix, *line_path)),
        key=key_path_str((*prefix, *key_path)),
    )


def _segments(path: str) -> list[PathKey | None]:
    """Parse msgspec's ``.a[0][...]`` path notation; ``None`` stands for a dict key it left out."""
    segments: list[PathKey | None] = []
    for match in _SEGMENT.finditer(path):
        if match["name"] is not None:
            segments.append(match["name"])
        elif match["index"] is not None:
            segments.append(int(match["index"]))
        else:
            segments.append(None)
    return segments


def _resolve(data: Any, type_: type, segments: Sequence[PathKey | None], text: str) -> KeyPath:
    """Fill in the dict keys msgspec renders as ``[...]``; stops at one it cannot find.

    msgspec stops at the first invalid entry of a dict, so the culprit is the first key that,
    kept alone in its dict, reproduces the very same error.
    """
    path: list[PathKey] = []
    for segment in segments:
        if segment is None:
            culprit = _culprit(data, type_, path, text)
            if culprit is None:
                break
            data, segment = culprit
        path.append(segment)
    return tuple(path)


def _culprit(data: Any, type_: type, path: Sequence[PathKey], text: str) -> tuple[Any, PathKey] | None:
    """The first key of the dict at ``path`` that alone reproduces ``text``, with the narrowed data."""
    mapping = _lookup(data, path)
    for key in mapping if isinstance(mapping, dict) else ():
        narrowed = _replace(data, path, key)
        if _error_text(narrowed, type_) == text:
            return narrowed, key
    return None


def _lookup(data: Any, path: Sequence[PathKey]) -> Any:
    """The value at ``path`` in ``data``, or ``None`` if there is none."""
    for key in path:
        try:
            data = data[key]
        except (LookupError, TypeError):
            return None
    return data


def _replace(data: Any, path: Sequence[PathKey], key: Any) -> Any:
    """A copy of ``data`` where the dict at ``path`` keeps only ``key``."""
    if not path:
        return {key: data[key]}
    copy: Any = dict(data) if isinstance(data, dict) else list(data)
    copy[path[0]] = _replace(data[path[0]], path[1:], key)
    return copy


def _error_text(data: Any, type_: type) -> str | None:
    """The text of the ``ValidationError`` converting ``data`` raises, if any."""
    try:
        msgspec.convert(data, type_, strict=True, dec_hook=units.dec_hook)
    except msgspec.ValidationError as exc:
        return str(exc)
    return None


def _rewrite(message: str) -> str:
    """Reword one of msgspec's ``Expected ...`` messages; lowercase the first letter of others."""
    expected = _EXPECTED.fullmatch(message)
    if expected is None:
        return message[:1].lower() + message[1:] if message[1:2].islower() else message
    got = f", got {_type_names(expected['got'])}" if expected["got"] else ""
    return f"expected {_type_names(expected['expected'])}{expected['rest']}{got}"


def _type_names(types: str) -> str:
    """``int | null`` -> ``an integer or null``."""
    names = [_TYPE_NAMES.get(name, name) for name in types.split(" | ")]
    return " or ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else names[0]


def _invalid_value(value: Any, choices: Sequence[Any]) -> str:
    """``invalid value "x", expected one of: a, b``."""
    allowed = f", expected one of: {', '.join(str(choice) for choice in choices)}" if choices else ""
    return f"invalid value {_show(value)}{allowed}"


def _literal(text: str) -> Any:
    """The value msgspec printed with ``repr``, or the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def did_you_mean(name: str, known: Sequence[str]) -> str:
    """``; did you mean "rate"?`` when ``name`` looks like a misspelling of one of ``known``, else ``""``."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f'; did you mean "{close[0]}"?' if close else ""


def _show(value: Any) -> str:
    """Render a config value for a message: strings in double quotes."""
    return f'"{value}"' if isinstance(value, str) else repr(value)


def kind_name(value: Any) -> str:
    """``a list``, ``a string``... for the type of a parsed YAML value."""
    names = {list: "array", dict: "object", str: "str", int: "int", float: "float", bool: "bool"}
    return _type_names(names.get(type(value), type(value).__name__))


# -- allowed values of an enum, Literal or union tag, found by walking the type -----------------------


def _choices(type_: type, data: Any, path: Sequence[PathKey]) -> list[Any]:
    """The values allowed at ``path`` (a Literal, an Enum or a tagged union's tag)."""
    types, _ = _types_at(type_, data, path)
    return [value for member in types for value in _literal_values(member)]


def _keys(type_: type, data: Any, path: Sequence[PathKey]) -> list[str]:
    """The keys a mapping at ``path`` may have (the fields of the struct expected there)."""
    types, data = _types_at(type_, data, path)
    return [field.encode_name for member in types if isinstance(member, mi.StructType)
            if _tag_matches(member, data) for field in member.fields]


def _types_at(type_: type, data: Any, path: Sequence[PathKey]) -> tuple[list[mi.Type], Any]:
    """The types allowed at ``path`` and the data found there."""
    types = _members(mi.type_info(type_))
    for key in path:
        types = [child for parent in types for child in _members(*_child(parent, key, data))]
        data = _lookup(data, [key])
    return types, data


def _members(*types: mi.Type) -> list[mi.Type]:
    """Flatten unions and strip ``Annotated`` metadata."""
    flat: list[mi.Type] = []
    for type_ in types:
        if isinstance(type_, mi.Metadata):
            flat += _members(type_.type)
        elif isinstance(type_, mi.UnionType):
            flat += _members(*type_.types)
        else:
            flat.append(type_)
    return flat


def _child(parent: mi.Type, key: PathKey, data: Any) -> list[mi.Type]:
    """The types ``parent`` allows at ``key``; ``data`` is the value of ``parent``."""
    if isinstance(parent, mi.StructType):
        return _struct_child(parent, key, data)
    if isinstance(parent, mi.DictType):
        return [parent.value_type]
    if isinstance(parent, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
        return [parent.item_type]
    if isinstance(parent, mi.TupleType) and isinstance(key, int) and key < len(parent.item_types):
        return [parent.item_types[key]]
    return []


def _struct_child(parent: mi.StructType, key: PathKey, data: Any) -> list[mi.Type]:
    """The type of field ``key``; the tag field reads as a one-value Literal.

    A tagged struct whose tag differs from the one in ``data`` is the wrong union member: no types.
    """
    if parent.tag_field is not None and key == parent.tag_field:
        return [mi.LiteralType(values=(parent.tag,))]
    if not _tag_matches(parent, data):
        return []
    return [field.type for field in parent.fields if field.encode_name == key]


def _tag_matches(struct: mi.StructType, data: Any) -> bool:
    """False when ``data`` names another member of a tagged union than ``struct``."""
    if struct.tag_field is None or not isinstance(data, dict):
        return True
    return bool(data.get(struct.tag_field, struct.tag) == struct.tag)


def _literal_values(type_: mi.Type) -> list[Any]:
    """The values of a Literal or Enum type, else nothing."""
    if isinstance(type_, mi.LiteralType):
        return list(type_.values)
    if isinstance(type_, mi.EnumType):
        return [member.value for member in type_.cls]
    return []
