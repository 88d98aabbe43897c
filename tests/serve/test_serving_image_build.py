"""The serving image for real: `torchrig export serving` from a CPU workbench built with
[services.serve], `docker build`, `docker run`, then from outside with httpx: /readyz and
/v1/predict answer for a tiny text classifier trained on the CPU (tests/serve/conftest.py),
it runs as a non-root user, has no sshd, Jupyter or compiler, and is smaller than the
workbench it came from. Names start with t-srvimg-."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from tests.container.workbench import cpu_spec, give_to_user, let_owners_in, torchrig

pytestmark = [pytest.mark.container, pytest.mark.network]

PREFIX = "t-srvimg-"
# What serving must not carry (serve/image.py purges them), looked up inside the image.
ABSENT = ("/usr/sbin/sshd", "/usr/bin/gcc", "/usr/bin/cc", "/opt/venv/bin/jupyter",
          "/opt/venv/bin/jupyter-lab")  # fmt: skip


def docker(*args: str, check: bool = True, timeout: float = 600) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        pytest.fail(f"docker {' '.join(args)}: {done.stderr[-3000:]}", pytrace=False)
    return done.stdout.strip()


def image_size(tag: str) -> int:
    return int(docker("image", "inspect", "--format", "{{.Size}}", tag))


def wait_ready(base: str, container: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        running = docker("inspect", "--format", "{{.State.Running}}", container, check=False)
        if running != "true":
            break
        time.sleep(0.5)
    logs = subprocess.run(["docker", "logs", container], capture_output=True, text=True)
    pytest.fail(f"the serving container never got ready:\n{logs.stderr[-3000:]}", pytrace=False)


def test_the_serving_image_builds_runs_and_answers(text_run: Path, tmp_path: Path) -> None:
    run_id = secrets.token_hex(4)
    project = let_owners_in(tmp_path) / f"{PREFIX}{run_id}"
    project.mkdir()
    extra = "\n[services.serve]\nenabled = true\n"
    (project / "torchrig.toml").write_text(cpu_spec(project.name, jupyter_port=18998, extra=extra))
    give_to_user(project, *project.iterdir())
    serving = f"{PREFIX}{run_id}:serving"
    container = f"{PREFIX}{run_id}"
    workbench = ""
    try:
        torchrig("lock", cwd=project)
        workbench = json.loads(
            torchrig("build", "--engine", "docker", "--json", cwd=project).stdout
        )["image"]
        out = tmp_path / "serving"
        torchrig("export", "serving", "--run", str(text_run), "-o", str(out), cwd=project)
        docker("build", "-q", "-t", serving, str(out))
        token = "t-srvimg-" + secrets.token_hex(16)
        token_file = tmp_path / "serve.token"
        token_file.write_text(token + "\n")
        token_file.chmod(0o644)  # the image's user (uid 10001) reads it
        docker(
            "run", "-d", "--name", container, "-p", "127.0.0.1::8000",
            "-v", f"{token_file}:/run/secrets/serve-token:ro", serving,
        )  # fmt: skip
        port = docker("port", container, "8000/tcp").splitlines()[0].rsplit(":", 1)[1]
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, container)

        auth = {"Authorization": f"Bearer {token}"}
        answer = httpx.post(
            f"{base}/v1/predict", json={"inputs": ["refund my invoice please"]}, headers=auth,
            timeout=30,
        )  # fmt: skip
        assert answer.status_code == 200, answer.text
        (result,) = answer.json()["predictions"]
        assert set(result["probabilities"]) == {"billing", "login", "shipping"}
        assert result["label"] == "billing"  # the tiny model learnt its topics
        assert (
            httpx.post(f"{base}/v1/predict", json={"inputs": ["x"]}, timeout=10).status_code == 401
        )

        uid = docker("exec", container, "id", "-u")
        assert uid not in ("", "0"), f"the server runs as uid {uid!r}"
        found = docker(
            "exec", container, "/opt/venv/bin/python", "-I", "-c",
            f"import os; print([p for p in {list(ABSENT)!r} if os.path.exists(p)])",
        )  # fmt: skip
        assert found == "[]", f"the serving image still has {found}"
        assert image_size(serving) < image_size(workbench)
    finally:
        docker("rm", "-f", container, check=False)
        docker("image", "rm", serving, check=False)
        if workbench:
            docker("image", "rm", "--no-prune", workbench, check=False)
