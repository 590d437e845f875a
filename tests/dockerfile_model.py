"""The Dockerfile and .dockerignore as the packaging tests read them: stages of instructions, and the files of the
build context that a COPY would send.

Enough of the Dockerfile reference for this repository's own Dockerfile: comments, line continuations, ARGs
before the first FROM (substituted into FROM), `FROM image AS name`, leading `--flag=value` options, and the
exec (JSON) form of ENTRYPOINT, CMD and HEALTHCHECK's CMD.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Instruction:
    """One instruction: its keyword (upper case), leading ``--flag=value`` options and the rest of its text."""

    keyword: str
    flags: dict[str, list[str]]
    text: str
    line: int

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form ENTRYPOINT/CMD (ValueError for the shell form)."""
        if not self.text.startswith("["):
            raise ValueError(f"line {self.line}: {self.keyword} is in shell form: {self.text}")
        value = json.loads(self.text)
        assert isinstance(value, list) and all(isinstance(item, str) for item in value)
        return value


@dataclass
class Stage:
    """A build stage: its base image (ARGs substituted), its name and its instructions after FROM."""

    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [ins for ins in self.instructions if ins.keyword == keyword]

    def one(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert len(found) == 1, f"stage {self.name}: {len(found)} {keyword} instructions"
        return found[0]

    def args(self) -> dict[str, str | None]:
        """The stage's ARGs with their defaults."""
        out: dict[str, str | None] = {}
        for ins in self.all("ARG"):
            name, _, default = ins.text.partition("=")
            out[name] = default if "=" in ins.text else None
        return out


@dataclass
class Dockerfile:
    """A parsed Dockerfile: the ARGs declared before the first FROM, and the stages in order."""

    global_args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        return next(stage for stage in self.stages if stage.name == name)


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, joined text) of each instruction: comments dropped, continuations joined."""
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # a comment line inside a continuation is skipped too, as Docker does
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        out.append((start, " ".join(pending)))
        pending = []
    assert not pending, "the Dockerfile ends inside a line continuation"
    return out


def _split_flags(text: str) -> tuple[dict[str, list[str]], str]:
    flags: dict[str, list[str]] = {}
    while match := re.match(r"--([a-z-]+)(?:=(\S*))?\s+", text):
        flags.setdefault(match.group(1), []).append(match.group(2) or "")
        text = text[match.end():]
    return flags, text


def _substitute(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: values.get(m.group(1), m.group(0)), text)


def parse_dockerfile(text: str) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for number, line in _logical_lines(text):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        flags, rest = _split_flags(rest.strip())
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=_substitute(words[0], global_args), name=name))
        elif not stages:
            assert keyword == "ARG", f"line {number}: {keyword} before the first FROM"
            arg_name, _, default = rest.partition("=")
            global_args[arg_name] = default
        else:
            stages[-1].instructions.append(Instruction(keyword, flags, rest, number))
    return Dockerfile(global_args, stages)


def load_dockerfile() -> Dockerfile:
    return parse_dockerfile((ROOT / "Dockerfile").read_text())


def run_commands(instruction: Instruction) -> list[list[str]]:
    """The commands of a shell-form RUN, split on ``&&``, each as its words."""
    return [shlex.split(part) for part in instruction.text.split("&&")]


def mount_options(instruction: Instruction) -> list[dict[str, str]]:
    """RUN's ``--mount=k=v,k=v`` options, each as a dict."""
    return [dict(item.split("=", 1) for item in mount.split(",")) for mount in instruction.flags.get("mount", [])]


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps ``path`` (relative, with /) out of the build context: the last match wins, and a
    pattern matching a directory matches everything under it."""
    verdict = False
    parts = path.split("/")
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            verdict = not negated
    return verdict


def context_files(sources: list[str]) -> list[str]:
    """The files under the COPY ``sources`` (relative to the repository) that the build context holds."""
    patterns = dockerignore_patterns()
    files: list[str] = []
    for source in sources:
        path = ROOT / source
        candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        files += [rel for p in candidates if not ignored(rel := p.relative_to(ROOT).as_posix(), patterns)]
    return files
