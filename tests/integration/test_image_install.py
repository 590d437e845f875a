"""The container image's install steps, run as the Dockerfile runs them but in directories under tmp: each stage's
COPYs (through .dockerignore) and bind mounts laid out in a directory of its own, its RUN of
packaging/image/install.sh with the image's paths moved there. The wheels come from the package index; the image's
virtualenv is then installed from them alone. What it gives is run as the container would run it: ENTRYPOINT with
`--version`, `agent validate` of the DaemonSet's pipeline, ENTRYPOINT + CMD with the image's own pipeline until the
HEALTHCHECK passes, then the STOPSIGNAL. Where a Docker engine (and the base image) is present, the image is
built and run too."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from dockerfile_model import (
    ROOT,
    Dockerfile,
    Instruction,
    Stage,
    context_files,
    load_dockerfile,
    mount_options,
    run_commands,
)

from agent import __version__

pytestmark = pytest.mark.slow  # ~15 s: pip builds and installs the wheels of the agent and its dependencies
SCRIPT = "packaging/image/install.sh"


def _inside(fs: Path, path: str) -> Path:
    """An absolute path of the image, in the directory that stands for its filesystem."""
    return fs / path.lstrip("/")


def _copy(stage: Stage, fs: Path) -> None:
    """The stage's COPYs from the build context, into ``fs``."""
    for copy in stage.all("COPY"):
        assert "from" not in copy.flags, f"line {copy.line}: COPY --from is not laid out by this test"
        *sources, dest = copy.text.split()
        for source in sources:
            for name in context_files([source]):
                if name == source:  # a file: into dest/ or as dest
                    target = dest + Path(name).name if dest.endswith("/") else dest
                else:  # a directory's content: under dest
                    target = f"{dest.rstrip('/')}/{Path(name).relative_to(source)}"
                _inside(fs, target).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, _inside(fs, target))


def _install_command(run: Instruction, fs: Path) -> list[str]:
    """The RUN's call of the install script, its image paths moved into ``fs``; the rest may only set up users
    and directories (which need the image's root)."""
    first, *rest = run_commands(run)
    assert [cmd[0] for cmd in rest] in ([], ["useradd", "mkdir", "chown"]), rest
    assert first[0] == "sh"
    return ["sh", *(str(_inside(fs, arg)) if arg.startswith("/") else arg for arg in first[1:])]


def _environment(stage: Stage, fs: Path) -> dict[str, str]:
    """This process's environment as a container would have it: the stage's ENV, with PATH's image directories
    moved into ``fs``, and nothing that points Python at this checkout."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    for ins in stage.all("ENV"):
        for word in shlex.split(ins.text):
            name, _, value = word.partition("=")
            env[name] = value
    env["PATH"] = ":".join(str(_inside(fs, part)) for part in env["PATH"].split(":") if part.startswith("/"))
    env["PATH"] += ":" + os.environ["PATH"]
    return env


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dockerfile, Path]:
    """The Dockerfile's two stages carried out under tmp; returns the Dockerfile and the final stage's root."""
    dockerfile = load_dockerfile()
    build, final = dockerfile.stage("build"), dockerfile.stages[-1]
    build_fs, image_fs = tmp_path_factory.mktemp("build"), tmp_path_factory.mktemp("image")
    scripts = {"PYTHON": sys.executable}  # the interpreter of the image is python3.11 as this one

    _copy(build, build_fs)
    result = subprocess.run(_install_command(build.one("RUN"), build_fs), capture_output=True, text=True,
                            timeout=400, env={**os.environ, **scripts})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    run = final.one("RUN")
    for mount in mount_options(run):
        source = _inside(build_fs, mount["source"]) if mount.get("from") == "build" else ROOT / mount["source"]
        target = _inside(image_fs, mount["target"])
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)
    # Only the wheels of stage 1: no index, no find-links from this machine's pip config.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_") and key != "PYTHONPATH"}
    env.update(scripts, PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1")
    result = subprocess.run(_install_command(run, image_fs), capture_output=True, text=True, timeout=400, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.strip().endswith(f"agent {__version__}")
    _copy(final, image_fs)
    return dockerfile, image_fs


def _agent(image: tuple[Dockerfile, Path], *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    dockerfile, fs = image
    entrypoint = dockerfile.stages[-1].one("ENTRYPOINT").exec_form()
    return subprocess.run([*entrypoint, *args], capture_output=True, text=True, timeout=60,
                          env={**_environment(dockerfile.stages[-1], fs), **env})


def test_the_wheel_holds_the_agent_and_the_venv_uses_it(image: tuple[Dockerfile, Path]) -> None:
    _, fs = image
    assert [p.name for p in _inside(fs, "/wheels").glob("agent-*.whl")] == [f"agent-{__version__}-py3-none-any.whl"]
    result = _agent(image, "--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"agent {__version__}")
    located = subprocess.run([str(_inside(fs, "/opt/agent/bin/python")), "-c", "import agent; print(agent.__file__)"],
                             capture_output=True, text=True, timeout=60, cwd=fs,
                             env=_environment(image[0].stages[-1], fs))
    assert located.stdout.startswith(str(_inside(fs, "/opt/agent/lib/"))), located  # installed, not this checkout


def test_the_installed_agent_validates_the_daemonset_pipeline(image: tuple[Dockerfile, Path], tmp_path: Path) -> None:
    config_map = yaml.safe_load((ROOT / "packaging/kubernetes/20-configmap.yaml").read_text())
    path = tmp_path / "pipeline.yaml"
    path.write_text(config_map["data"]["pipeline.yaml"])
    result = _agent(image, "validate", "--deny-warnings", "-c", str(path), AGENT_API_TOKEN="t", DD_API_KEY="k")
    assert result.returncode == 0, result.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text(path.read_text().replace("memory_limit: 200MiB", "memory_limit: lots"))
    result = _agent(image, "validate", "-c", str(broken), AGENT_API_TOKEN="t", DD_API_KEY="k")
    assert result.returncode == 78 and "memory_limit" in result.stderr


def test_entrypoint_and_cmd_run_until_healthy_and_the_stopsignal_drains(image: tuple[Dockerfile, Path],
                                                                       tmp_path: Path, free_port: int) -> None:
    dockerfile, fs = image
    final = dockerfile.stages[-1]
    env = _environment(final, fs)
    env.update(AGENT_DATA_DIR=str(tmp_path / "data"), AGENT_API_ADDRESS=f"127.0.0.1:{free_port}",
               AGENT_HEALTH_URL=f"http://127.0.0.1:{free_port}/health")
    cmd = [_inside(fs, arg).as_posix() if arg.startswith("/") else arg for arg in final.one("CMD").exec_form()]
    healthcheck = Instruction("CMD", {}, final.one("HEALTHCHECK").text.partition("CMD ")[2], 0).exec_form()
    process = subprocess.Popen([*final.one("ENTRYPOINT").exec_form(), *cmd], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(healthcheck, env=env, capture_output=True, timeout=30).returncode != 0:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the HEALTHCHECK never passed"
            time.sleep(0.2)
        process.send_signal(getattr(signal, final.one("STOPSIGNAL").text))
        assert process.wait(timeout=40) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        if process.stderr:
            process.stderr.close()


# -- with a Docker engine ------------------------------------------------------------------------------------------


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def test_the_image_builds_and_runs_where_an_engine_is() -> None:
    if shutil.which("docker") is None or _docker("info").returncode != 0:
        pytest.skip("no Docker engine reachable (`docker info` fails)")
    base = load_dockerfile().global_args["PYTHON_IMAGE"]
    if _docker("image", "inspect", base).returncode != 0 and _docker("pull", base, timeout=300).returncode != 0:
        pytest.skip(f"the base image {base} is not here and cannot be pulled")
    tag = f"agent-test:{__version__}"
    built = _docker("build", "-t", tag, str(ROOT), timeout=900)
    assert built.returncode == 0, built.stderr[-3000:]
    try:
        ran = _docker("run", "--rm", tag, "--version")
        assert (ran.returncode, ran.stdout.strip()) == (0, f"agent {__version__}")
        user = _docker("image", "inspect", "--format", "{{.Config.User}} {{.Config.StopSignal}}", tag)
        assert user.stdout.split() == ["root", "SIGTERM"]
    finally:
        _docker("rmi", "-f", tag)
