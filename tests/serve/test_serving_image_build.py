"""The serving image for real: `torchrig export serving` from a CPU workbench built with
[services.serve], `docker build`, `docker run`, then from outside with httpx: /readyz and
/v1/predict answer for a tiny text classifier trained on the CPU (tests/serve/conftest.py),
it runs as a non-root user, has no sshd, Jupyter or compiler, and is smaller than the
workbench it came from. `torchrig run serve` in the running workbench answers on its
published 127.0.0.1 port, with Docker and with Podman. Names start with t-srvimg-."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.container.workbench import GID, UID, cpu_spec, give_to_user, let_owners_in, torchrig

pytestmark = [pytest.mark.container, pytest.mark.network]

PREFIX = "t-srvimg-"
# Podman builds the workbench itself (Docker's image copied in with `docker save | podman
# load` was not used: `up` built again, once under another tag, as the tag hashes the base
# reference each engine has): 26-50 s with its layer cache warm, as on the CI machine after
# a first run (2026-12-07); TORCHRIG_TEST_SERVE_ENGINES=docker narrows it.
SERVE_ENGINES = os.environ.get("TORCHRIG_TEST_SERVE_ENGINES", "docker,podman").split(",")
# What serving must not carry (serve/image.py purges them), looked up inside the image.
ABSENT = ("/usr/sbin/sshd", "/usr/bin/gcc", "/usr/bin/cc", "/opt/venv/bin/jupyter",
          "/opt/venv/bin/jupyter-lab")  # fmt: skip


def engine_cli(engine: str, *args: str, check: bool = True, timeout: float = 600) -> str:
    done = subprocess.run([engine, *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        pytest.fail(f"{engine} {' '.join(args)}: {done.stderr[-3000:]}", pytrace=False)
    return done.stdout.strip()


def docker(*args: str, check: bool = True, timeout: float = 600) -> str:
    return engine_cli("docker", *args, check=check, timeout=timeout)


def image_size(tag: str) -> int:
    return int(docker("image", "inspect", "--format", "{{.Size}}", tag))


def wait_ready(
    base: str, container: str, log: Path | None = None, timeout: float = 120, engine: str = "docker"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        running = engine_cli(
            engine, "inspect", "--format", "{{.State.Running}}", container, check=False
        )
        if running != "true":
            break
        time.sleep(0.5)
    if log is not None:  # a job's output (torchrig run) is its log file, not the engine's
        said = log.read_text() if log.exists() else "(no output yet)"
    else:
        said = subprocess.run([engine, "logs", container], capture_output=True, text=True).stderr
    pytest.fail(f"the server never got ready:\n{said[-3000:]}", pytrace=False)


@dataclass
class Built:
    project: Path
    image: str  # the workbench image `torchrig build` made


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    """A CPU workbench with [services.serve], locked and built once for both tests."""
    project = let_owners_in(tmp_path_factory.mktemp("srvimg")) / f"{PREFIX}{secrets.token_hex(4)}"
    project.mkdir()
    extra = "\n[services.serve]\nenabled = true\nport = 18800\n"
    (project / "torchrig.toml").write_text(cpu_spec(project.name, jupyter_port=18998, extra=extra))
    give_to_user(project, *project.iterdir())
    torchrig("lock", cwd=project)
    done = torchrig("build", "--engine", "docker", "--json", cwd=project)
    image = json.loads(done.stdout)["image"]
    try:
        yield Built(project, image)
    finally:
        # The workbench's container (torchrig-NAME) must be gone before its image can go.
        docker("rm", "-f", f"torchrig-{project.name}", check=False)
        docker("image", "rm", "--no-prune", image, check=False)


def predict(base: str, token: str) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {token}"}
    body = {"inputs": ["refund my invoice please"]}
    answer = httpx.post(f"{base}/v1/predict", json=body, headers=auth, timeout=30)
    assert answer.status_code == 200, answer.text
    (result,) = answer.json()["predictions"]
    assert set(result["probabilities"]) == {"billing", "login", "shipping"}
    assert httpx.post(f"{base}/v1/predict", json=body, timeout=10).status_code == 401
    return dict(result)


def test_the_serving_image_builds_runs_and_answers(
    built: Built, text_run: Path, tmp_path: Path
) -> None:
    name = f"{built.project.name}-image"
    serving = f"{name}:serving"
    try:
        out = tmp_path / "serving"
        torchrig("export", "serving", "--run", str(text_run), "-o", str(out), cwd=built.project)
        docker("build", "-q", "-t", serving, str(out))
        token = "t-srvimg-" + secrets.token_hex(16)
        token_file = tmp_path / "serve.token"
        token_file.write_text(token + "\n")
        token_file.chmod(0o644)  # the image's user (uid 10001) reads it
        docker(
            "run", "-d", "--name", name, "-p", "127.0.0.1::8000",
            "-v", f"{token_file}:/run/secrets/serve-token:ro", serving,
        )  # fmt: skip
        port = docker("port", name, "8000/tcp").splitlines()[0].rsplit(":", 1)[1]
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, name)
        assert predict(base, token)["label"] == "billing"  # the tiny model learnt its topics

        uid = docker("exec", name, "id", "-u")
        assert uid not in ("", "0"), f"the server runs as uid {uid!r}"
        found = docker(
            "exec", name, "/opt/venv/bin/python", "-I", "-c",
            f"import os; print([p for p in {list(ABSENT)!r} if os.path.exists(p)])",
        )  # fmt: skip
        assert found == "[]", f"the serving image still has {found}"
        assert image_size(serving) < image_size(built.image)
    finally:
        docker("rm", "-f", name, check=False)
        docker("image", "rm", serving, check=False)


@pytest.mark.parametrize("engine", SERVE_ENGINES)
def test_run_serve_in_the_workbench_answers_on_the_published_port(
    built: Built, text_run: Path, engine: str
) -> None:
    """`torchrig run serve RUN`: a detached job in the running workbench, reached from the
    host on the 127.0.0.1 port `up` published for [services.serve]."""
    runs = built.project / "runs"
    if not runs.exists():  # the second engine serves the same run
        shutil.copytree(text_run / "final", runs / "tickets")
        for path in (runs, *runs.rglob("*")):
            os.chown(path, UID, GID)
    up: dict[str, Any] = {}
    try:
        up = json.loads(torchrig("up", "--engine", engine, "--json", cwd=built.project).stdout)
        port = up["ports"]["serve"]  # the spec's 18800, or the next free one
        bound = engine_cli(engine, "port", up["name"], "8000/tcp").splitlines()
        assert bound == [f"127.0.0.1:{port}"], bound  # loopback only
        torchrig("run", "--engine", engine, "--name", f"srv-{engine}", "serve", "runs/tickets",
                 cwd=built.project)  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        log = built.project / ".torchrig" / "jobs" / f"srv-{engine}" / "output.log"
        wait_ready(base, up["name"], log, engine=engine)
        token_file = f"/home/{up['user']}/.config/torchrig/serve.token"
        token = engine_cli(engine, "exec", "-u", f"{UID}:{GID}", up["name"], "cat", token_file)
        assert predict(base, token)["label"] == "billing"
    finally:
        torchrig("down", "--engine", engine, "--purge", cwd=built.project, check=False)
        if engine != "docker" and "image" in up:  # its own build; the fixture removes Docker's
            engine_cli(engine, "image", "rm", up["image"], check=False)
