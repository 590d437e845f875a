"""The Dockerfile read as the image it makes: two stages on a slim Python 3.11, the wheel built in the first, no
compiler in the last, `agent` as entrypoint with a CMD that `agent run` accepts, a HEALTHCHECK that works with
what the slim image has, SIGTERM to stop, root by default with a non-root build ARG. No image is built here
(tests/integration/test_image_install.py runs the same install steps, and builds the image where an engine is)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from dockerfile_model import (
    ROOT,
    Dockerfile,
    Instruction,
    context_files,
    dockerignore_patterns,
    ignored,
    load_dockerfile,
    mount_options,
    parse_dockerfile,
    run_commands,
)

from agent.cli import _parser

INSTALL_SCRIPT = "packaging/image/install.sh"
COMPILERS = re.compile(r"\b(gcc|g\+\+|cc|clang|make|build-essential|python3?-dev|libc6?-dev|cargo|rustc)\b")


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return load_dockerfile()


def test_the_parser_reads_continuations_comments_flags_and_global_args() -> None:
    parsed = parse_dockerfile("""\
# syntax=docker/dockerfile:1
ARG BASE=python:3.11-slim
FROM ${BASE} AS one
RUN a \\
    # a comment inside a continuation
    && b
FROM $BASE
COPY --from=one /x /y
""")
    assert parsed.global_args == {"BASE": "python:3.11-slim"}
    assert [(s.base, s.name) for s in parsed.stages] == [("python:3.11-slim", "one"), ("python:3.11-slim", None)]
    assert run_commands(parsed.stages[0].one("RUN")) == [["a"], ["b"]]
    copy = parsed.stages[1].one("COPY")
    assert (copy.flags, copy.text) == ({"from": ["one"]}, "/x /y")


def test_two_stages_on_a_slim_python_3_11(dockerfile: Dockerfile) -> None:
    assert len(dockerfile.stages) == 2
    for stage in dockerfile.stages:
        assert re.fullmatch(r"python:3\.11-slim(-\w+)?", stage.base), stage.base
    assert [stage.name for stage in dockerfile.stages] == ["build", "agent"]


def test_the_first_stage_builds_the_wheels_with_the_install_script(dockerfile: Dockerfile) -> None:
    build = dockerfile.stage("build")
    copies = {ins.text.split()[-1]: ins.text.split()[:-1] for ins in build.all("COPY")}
    script = next(dest for dest, sources in copies.items() if sources == [INSTALL_SCRIPT])
    [command] = [cmd for ins in build.all("RUN") for cmd in run_commands(ins)]
    assert command[:3] == ["sh", script, "wheel"]
    source_dir = command[3]
    assert copies[source_dir + "/"] == ["pyproject.toml", "README.md"]  # what setuptools reads (readme =)
    assert copies[source_dir + "/agent"] == ["agent"]


def test_the_install_script_takes_binary_wheels_and_installs_without_an_index() -> None:
    script = (ROOT / INSTALL_SCRIPT).read_text()
    assert re.search(r"pip wheel --only-binary=:all: ", script)  # no dependency is compiled, even in stage 1
    assert re.search(r"pip install --no-index --find-links ", script)
    assert not COMPILERS.search(re.sub(r"(?m)#.*$", "", script))


def test_the_last_stage_installs_stage_one_wheels_and_has_no_compiler(dockerfile: Dockerfile) -> None:
    final = dockerfile.stages[-1]
    [run] = final.all("RUN")
    mounts = mount_options(run)
    wheels = next(m for m in mounts if m.get("from") == "build")
    assert wheels["source"] == run_commands(dockerfile.stage("build").one("RUN"))[0][-1]  # the wheel dir
    script = next(m["target"] for m in mounts if m.get("source") == INSTALL_SCRIPT)
    assert run_commands(run)[0] == ["sh", script, "install", wheels["target"], "/opt/agent"]
    assert "/opt/agent/bin" in final.one("ENV").text  # `agent` and `python` on PATH
    # Bind mounts leave neither wheels nor the script in a layer; nothing is copied from the build stage.
    assert not [ins for ins in final.all("COPY") if "from" in ins.flags]
    for ins in final.instructions:
        assert not COMPILERS.search(ins.text), f"line {ins.line}: {ins.text}"
        assert not re.search(r"\b(apt-get|apt|apk)\b", ins.text), f"line {ins.line}: packages installed"


def test_entrypoint_is_agent_and_cmd_is_what_agent_run_takes(dockerfile: Dockerfile) -> None:
    final = dockerfile.stages[-1]
    assert final.one("ENTRYPOINT").exec_form() == ["agent"]
    cmd = final.one("CMD").exec_form()
    args = _parser().parse_args(cmd)
    assert args.command == "run" and args.config == ["/etc/agent/pipeline.yaml"]
    # The image ships a pipeline there: the embedded default (mount your own over it).
    copied = {ins.text.split()[1]: ins.text.split()[0] for ins in final.all("COPY")}
    assert copied["/etc/agent/pipeline.yaml"] == "agent/default_pipeline.yaml"
    assert "AGENT_DATA_DIR=/var/lib/agent" in final.one("ENV").text


def test_stopsignal_is_sigterm(dockerfile: Dockerfile) -> None:
    assert dockerfile.stages[-1].one("STOPSIGNAL").text == "SIGTERM"


def test_root_by_default_with_a_non_root_build_arg(dockerfile: Dockerfile) -> None:
    final = dockerfile.stages[-1]
    assert final.args()["AGENT_USER"] == "root"
    assert final.one("USER").text == "${AGENT_USER}"
    [run] = final.all("RUN")
    [useradd] = [cmd for cmd in run_commands(run) if cmd[0] == "useradd"]
    assert useradd[-1] == "agent" and "--uid" in useradd and "adm" in useradd
    assert ["chown", "agent:agent", "/var/lib/agent"] in run_commands(run)  # its data_dir is its own
    assert "--build-arg AGENT_USER=agent" in (ROOT / "README.md").read_text()


# -- the HEALTHCHECK, run as the container would run it --------------------------------------------------------


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/health" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def _healthcheck(dockerfile: Dockerfile, url: str) -> int:
    healthcheck = dockerfile.stages[-1].one("HEALTHCHECK")
    form, _, rest = healthcheck.text.partition(" ")
    assert form == "CMD"
    command = Instruction("CMD", {}, rest, healthcheck.line).exec_form()
    assert command[0] == "python"  # no curl or wget in a slim image; the venv's python is on PATH
    env = {**os.environ, "AGENT_HEALTH_URL": url}
    return subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, timeout=30).returncode


def test_the_healthcheck_asks_health_on_the_default_api_port(dockerfile: Dockerfile) -> None:
    healthcheck = dockerfile.stages[-1].one("HEALTHCHECK")
    assert "'http://127.0.0.1:2020/health'" in healthcheck.text
    assert "AGENT_API_ADDRESS=0.0.0.0:2020" in dockerfile.stages[-1].one("ENV").text
    assert set(healthcheck.flags) >= {"interval", "timeout", "retries"}


def test_the_healthcheck_passes_on_200_and_fails_otherwise(dockerfile: Dockerfile,
                                                           health_server: ThreadingHTTPServer) -> None:
    url = f"http://127.0.0.1:{health_server.server_address[1]}"
    assert _healthcheck(dockerfile, url + "/health") == 0
    _Health.status = 503
    try:
        assert _healthcheck(dockerfile, url + "/health") != 0
    finally:
        _Health.status = 200
    assert _healthcheck(dockerfile, url + "/elsewhere") != 0
    health_server.shutdown()
    health_server.server_close()
    assert _healthcheck(dockerfile, url + "/health") != 0  # nothing listening


# -- the build context -----------------------------------------------------------------------------------------


def test_dockerignore_semantics() -> None:
    patterns = ["*", "!agent/", "**/__pycache__"]
    assert ignored("tests/x.py", patterns) and ignored(".venv/bin/python", patterns)
    assert not ignored("agent/cli.py", patterns)
    assert ignored("agent/__pycache__/cli.cpython-311.pyc", patterns)


def test_the_context_holds_what_the_dockerfile_copies_and_nothing_else(dockerfile: Dockerfile) -> None:
    sources = [src for stage in dockerfile.stages for ins in stage.all("COPY") if "from" not in ins.flags
               for src in ins.text.split()[:-1]]
    sources += [m["source"] for stage in dockerfile.stages for ins in stage.all("RUN") for m in mount_options(ins)
                if "from" not in m]
    files = context_files(sources)
    for source in sources:
        assert any(f == source or f.startswith(source + "/") for f in files), f"{source} is not in the context"
    assert "agent/cli.py" in files and "agent/default_pipeline.yaml" in files
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
    patterns = dockerignore_patterns()
    for path in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "benchmarks/RESULTS.md", "data/lock",
                 "agent.egg-info/PKG-INFO", "build/lib/agent/cli.py"):
        assert ignored(path, patterns), path
