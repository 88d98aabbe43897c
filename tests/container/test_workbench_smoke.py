"""The in-image workbench (entrypoint, supervisor, health) in a real container, on Docker.

A throwaway image is built here, not by torchrig's renderer, so this tests the in-image side
on its own: a Debian bookworm base bootstrapped from the mirror (torchrig.image.base; cached
under ~/.cache/torchrig/bases), python3-venv, openssh-server, tini, util-linux and passwd from
apt, JupyterLab and TensorBoard from PyPI, torchrig from this checkout, no SSH host keys. It
runs with the flags `torchrig up` uses (every capability dropped but the entrypoint's,
no-new-privileges, ports on 127.0.0.1, a state volume, a workspace bind mount, an env file)
and is checked from outside the way a person would: HTTP against JupyterLab, a real ssh
client, file owners on the host, `docker stop`.

Needs root (debootstrap, chown of the workspace to the test UID), Docker, the Debian mirror
and PyPI. Without Docker the tests fail saying how to install it, unless
TORCHRIG_SKIP_CONTAINER=1, which skips them with that reason shown. Everything made here
(containers, volumes, the image) is removed at the end; a failing test prints the engine
commands it ran, the last one being the one to paste.

    PYTHONPATH=src python -m pytest -m container tests/container/test_workbench_smoke.py
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from torchrig.engine import DockerEngine, Engine, Mount, Port, RunSpec
from torchrig.errors import ToolError
from torchrig.image.base import bootstrap_base, default_cache_dir

pytestmark = pytest.mark.container

SKIP_ENV = "TORCHRIG_SKIP_CONTAINER"
MIRRORS = {
    "debian": os.environ.get("TORCHRIG_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian"),
    "ubuntu": os.environ.get("TORCHRIG_TEST_UBUNTU_MIRROR", "http://archive.ubuntu.com/ubuntu"),
}
# More bases on request, e.g. "debian:bookworm,debian:trixie" (OpenSSH 9.2 and 10.0).
BASES = os.environ.get("TORCHRIG_TEST_WORKBENCH_BASES", "debian:bookworm").split(",")
PYPI = "https://pypi.org/simple"
ROOT = Path(__file__).resolve().parents[2]
USER, UID, GID = "alice", 4242, 4343
SECRET = "hf_never-on-disk-or-in-logs-7c1e"
HOST_FILE = "host file, must stay byte-identical\n"
# What `torchrig up` grants (plan/run.py) plus KILL: tini is root as PID 1 and must pass
# `docker stop`'s SIGTERM on to the workbench user's processes, which root may only signal
# with CAP_KILL. Without it tini dies ("Unexpected error when forwarding signal: 'Operation
# not permitted'") and nothing stops gracefully; the entrypoint warns about it.
CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "SETGID", "SETUID")
HEALTHY_WITHIN_S = 60
SSH_OPTIONS = (
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    "BatchMode=yes",
    "-o",
    "ConnectTimeout=10",
    "-o",
    "LogLevel=ERROR",
)

DOCKERFILE = """\
FROM {base}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 LC_ALL=C.UTF-8
COPY ca-certificates/ /usr/local/share/ca-certificates/
RUN apt-get update \\
 && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv \
openssh-server tini util-linux passwd procps \\
 && update-ca-certificates \\
 && rm -f /etc/ssh/ssh_host_* \\
 && rm -rf /var/lib/apt/lists/* \\
 && python3 -m venv /opt/venv
RUN PIP_CERT=/etc/ssl/certs/ca-certificates.crt /opt/venv/bin/pip install --no-cache-dir \
--disable-pip-version-check --index-url {pypi} jupyterlab tensorboard
COPY torchrig-src/ /opt/torchrig-src/
RUN PIP_CERT=/etc/ssl/certs/ca-certificates.crt /opt/venv/bin/pip install --no-cache-dir \
--disable-pip-version-check --no-deps /opt/torchrig-src && rm -rf /opt/torchrig-src
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
EXPOSE 8888 2222 6006
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \\
    CMD ["/opt/venv/bin/python", "-m", "torchrig.workbench.health"]
WORKDIR /workspace
USER 0
ENTRYPOINT ["/usr/bin/tini", "-g", "--", "/opt/venv/bin/python", "-m", \
"torchrig.workbench.entrypoint"]
LABEL io.torchrig.test=1
"""


def unavailable(what: str, how: str) -> None:
    """Fail (the default) or, with TORCHRIG_SKIP_CONTAINER=1, skip with the reason shown."""
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{what}: {how} ({SKIP_ENV}=1)")
    pytest.fail(f"{what}: {how}; or set {SKIP_ENV}=1 to skip the container tests", pytrace=False)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds it took; fails the test on timeout."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}", pytrace=False)
        time.sleep(0.25)
    return time.monotonic() - start


# --- the engine and the image ----------------------------------------------------------------


@pytest.fixture(scope="module")
def engine() -> Engine:
    if shutil.which("docker") is None:
        unavailable(
            "docker is not installed",
            "apt-get install docker.io, then start dockerd (.ci/install-engines.sh does both)",
        )
    probe = subprocess.run(["docker", "version"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no message"])[-1]
        unavailable(
            f"`docker version` failed: {last}",
            "start the daemon (dockerd >/var/log/dockerd.log 2>&1 &)",
        )
    if os.geteuid() != 0:
        unavailable("these tests need root", "debootstrap and chown of the workspace need it")
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        unavailable("no ssh client", "apt-get install openssh-client")
    return DockerEngine()


@pytest.fixture(autouse=True)
def _watch(engine: Engine, watch_engine: Callable[[Engine], None]) -> None:
    watch_engine(engine)


def build_context(context: Path, base: str) -> None:
    (context / "Dockerfile").write_text(DOCKERFILE.format(base=base, pypi=PYPI))
    cas = context / "ca-certificates"
    cas.mkdir()
    # A TLS-inspecting proxy's CA (if this machine has one) is what makes PyPI reachable.
    for crt in sorted(Path("/usr/local/share/ca-certificates").glob("*.crt")):
        shutil.copyfile(crt, cas / crt.name)
    src = context / "torchrig-src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )


@pytest.fixture(scope="module", params=BASES)
def image(
    request: pytest.FixtureRequest,
    engine: Engine,
    tmp_path_factory: pytest.TempPathFactory,
    timings: list[tuple[str, str, float]],
) -> Iterator[str]:
    distribution: str = request.param
    mirror = MIRRORS[distribution.split(":")[0]]
    started = time.monotonic()
    try:
        base = bootstrap_base(distribution, mirror, platform.machine(), None, engine)
    except ToolError as exc:
        pytest.fail(f"no {distribution} base: {exc.one_line()} (cache {default_cache_dir()})")
    timings.append(
        (f"{distribution} base (bootstrap/reuse)", engine.name, time.monotonic() - started)
    )
    context = tmp_path_factory.mktemp("wb-image")
    build_context(context, base)
    tag = f"torchrig-test/workbench-smoke:{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    try:
        engine.build(context, context / "Dockerfile", tag)
    except ToolError as exc:
        pytest.fail(f"building the smoke image failed: {exc.one_line()}", pytrace=False)
    timings.append((f"smoke image build ({distribution})", engine.name, time.monotonic() - started))
    yield tag
    engine.image_remove(tag, force=True)


# --- one workbench ---------------------------------------------------------------------------


@dataclass
class Bench:
    engine: Engine
    image: str
    root: Path
    name: str
    volume: str
    key: Path
    made: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)

    @property
    def workspace(self) -> Path:
        return self.root / "workspace"

    def spec(self, name: str, volume: str, env: dict[str, str] | None = None) -> RunSpec:
        keys = self.root / "authorized_keys"
        return RunSpec(
            image=self.image,
            name=name,
            hostname="wb",
            env={
                "TORCHRIG_USER": USER,
                "TORCHRIG_UID": str(UID),
                "TORCHRIG_GID": str(GID),
                "TORCHRIG_SERVICES": "jupyter,ssh,tensorboard",
                "TORCHRIG_AUTHORIZED_KEYS_FILE": "/run/torchrig/authorized_keys",
                **(env or {}),
            },
            env_file=self.root / "workbench.env",
            ports=(
                Port("127.0.0.1", None, 8888),
                Port("127.0.0.1", None, 2222),
                Port("127.0.0.1", None, 6006),
            ),
            mounts=(
                Mount(source=str(self.workspace), target="/workspace"),
                Mount(source=volume, target=f"/home/{USER}", kind="volume"),
                Mount(source=str(keys), target="/run/torchrig/authorized_keys", read_only=True),
            ),
            security_opt=("no-new-privileges:true",),
            cap_drop=("ALL",),
            cap_add=CAPABILITIES,
            pids_limit=2048,
            stop_timeout=20,
        )

    def start(self, name: str | None = None, volume: str | None = None) -> float:
        """Run a workbench; seconds until it is healthy."""
        name, volume = name or self.name, volume or self.volume
        if volume not in self.volumes:
            self.engine.volume_create(volume, labels={"io.torchrig.test": "1"})
            self.volumes.append(volume)
        self.made.append(name)
        started = time.monotonic()
        self.engine.run(self.spec(name, volume))
        self.wait_healthy(name)
        return time.monotonic() - started

    def wait_healthy(self, name: str | None = None) -> float:
        name = name or self.name

        def healthy() -> bool:
            info = self.engine.inspect(name) or {}
            if not (info.get("State") or {}).get("Running"):
                logs = "\n".join(self.engine.logs(name, tail=30))
                pytest.fail(f"{name} exited while starting; last lines:\n{logs}", pytrace=False)
            return self.engine.health(name) == "healthy"

        return wait_until(healthy, HEALTHY_WITHIN_S, f"{name} to be healthy")

    def port(self, container_port: int, name: str | None = None) -> int:
        bindings = self.engine.port(name or self.name)[f"{container_port}/tcp"]
        assert all(ip == "127.0.0.1" for ip, _ in bindings), bindings
        return bindings[0][1]

    def logs(self, name: str | None = None) -> str:
        return "\n".join(self.engine.logs(name or self.name))

    def exec(self, *cmd: str, user: str = f"{UID}:{GID}") -> subprocess.CompletedProcess[str]:
        return self.engine.exec(self.name, list(cmd), user=user, timeout_s=60)

    def token(self) -> str:
        done = self.exec("cat", f"/home/{USER}/.torchrig/jupyter/token")
        assert done.returncode == 0, done.stderr
        return done.stdout

    def ssh(self, *command: str, user: str = USER, extra: tuple[str, ...] = ()) -> list[str]:
        return [
            "ssh",
            "-p",
            str(self.port(2222)),
            "-i",
            str(self.key),
            *SSH_OPTIONS,
            *extra,
            f"{user}@127.0.0.1",
            *command,
        ]

    def host_key(self, name: str | None = None) -> str:
        argv = ["ssh-keyscan", "-p", str(self.port(2222, name)), "-t", "ed25519", "127.0.0.1"]
        scan = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        assert scan.stdout.strip(), f"no host key from: {' '.join(argv)}\n{scan.stderr}"
        return scan.stdout.split()[-1]


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def shown(argv: list[str], done: subprocess.CompletedProcess[str]) -> str:
    return f"$ {' '.join(argv)}\nexit {done.returncode}\n{done.stdout}{done.stderr}"


@pytest.fixture(scope="module")
def bench(
    engine: Engine,
    image: str,
    tmp_path_factory: pytest.TempPathFactory,
    timings: list[tuple[str, str, float]],
) -> Iterator[Bench]:
    root = tmp_path_factory.mktemp("wb-smoke")
    tag = uuid.uuid4().hex[:8]
    key = root / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    # A bad line among good ones: skipped with a warning, the rest still works.
    (root / "authorized_keys").write_text(
        "# the test's key\nnot-a-key at all\n" + key.with_suffix(".pub").read_text()
    )
    (root / "workbench.env").write_text(f"HF_TOKEN={SECRET}\n")
    workspace = root / "workspace"
    workspace.mkdir()
    (workspace / "hello.txt").write_text(HOST_FILE)
    os.chown(workspace, UID, GID)  # as the host user's project folder would be
    b = Bench(engine, image, root, f"torchrig-test-wb-{tag}", f"torchrig-test-wb-{tag}-state", key)
    try:
        timings.append(("workbench first start → healthy", engine.name, b.start()))
        yield b
    finally:
        for name in b.made:
            with contextlib.suppress(ToolError):
                engine.remove(name, force=True)
        for volume in b.volumes:
            with contextlib.suppress(ToolError):
                engine.volume_remove(volume, force=True)


# --- the tests, in the order a person meets them ---------------------------------------------


def test_first_start_is_healthy_and_says_what_it_did(bench: Bench) -> None:
    logs = bench.logs()
    assert "created user alice (UID 4242, GID 4343)" in logs
    assert "ssh: 1 authorized key(s) for alice" in logs
    assert "authorized_keys line 2 skipped" in logs
    assert "(made now)" in logs and "jupyter: token made" in logs
    assert "NOTE: The SHMEM allocation limit is set to the default of 64 MiB." in logs
    assert "lacks CAP_KILL" not in logs
    assert "Traceback" not in logs
    # PerSourcePenalties exactly where sshd has it (OpenSSH >= 9.8: trixie yes, bookworm no).
    version = bench.exec("/usr/sbin/sshd", "-V")
    found = re.search(r"OpenSSH_(\d+)\.(\d+)", version.stderr + version.stdout)
    assert found, version
    config = bench.exec("cat", f"/home/{USER}/.torchrig/ssh/sshd_config").stdout
    has_penalties = (int(found.group(1)), int(found.group(2))) >= (9, 8)
    assert ("PerSourcePenalties yes" in config) is has_penalties, (found.group(0), config)


def test_bad_settings_exit_64_with_one_line(bench: Bench) -> None:
    argv = [
        "docker",
        "run",
        "--rm",
        "--cap-drop=ALL",
        *[f"--cap-add={c}" for c in CAPABILITIES],
        "-e",
        "TORCHRIG_USER=alice",
        "-e",
        "TORCHRIG_UID=abc",
        "-e",
        "TORCHRIG_GID=4343",
        bench.image,
    ]
    done = run(argv)
    assert done.returncode == 64, shown(argv, done)
    assert done.stderr.strip() == (
        'torchrig: TORCHRIG_UID must be a number between 1 and 2147483646, got "abc"'
    ), shown(argv, done)


def http(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect, urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(request, timeout=15) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read().decode(errors="replace")


def test_jupyter_lets_in_only_the_token(bench: Bench) -> None:
    base = f"http://127.0.0.1:{bench.port(8888)}"
    token = bench.token()
    assert re.fullmatch(r"[0-9a-f]{64}", token), "a 256-bit hex token, no newline"
    code, _, body = http(f"{base}/api")
    assert code == 200 and '"version"' in body
    assert http(f"{base}/api/contents")[0] == 403
    assert http(f"{base}/api/contents", {"Authorization": "token wrong"})[0] == 403
    code, _, body = http(f"{base}/api/contents", {"Authorization": f"token {token}"})
    assert code == 200 and "hello.txt" in body
    code, headers, _ = http(f"{base}/lab")
    assert code == 302 and headers.get("Location", "").startswith("/login"), headers
    evil = {"Host": "evil.example", "Authorization": f"token {token}"}
    assert http(f"{base}/api/contents", evil)[0] == 403
    assert "Blocking request with non-local 'Host' evil.example" in bench.logs()


def test_tensorboard_serves(bench: Bench) -> None:
    assert http(f"http://127.0.0.1:{bench.port(6006)}/")[0] == 200


def test_the_token_and_the_secret_are_in_no_log(bench: Bench) -> None:
    logs = bench.logs()
    assert bench.token() not in logs
    assert SECRET not in logs
    assert "token=..." in logs  # Jupyter's own URL line, with the token left out


def test_the_secret_is_in_the_environment_but_on_no_disk(bench: Bench) -> None:
    assert bench.exec("printenv", "HF_TOKEN").stdout.strip() == SECRET
    argv = ["grep", "-rl", SECRET, "/etc", "/home", "/run", "/tmp", "/opt"]
    done = bench.exec(*argv, user="0:0")
    assert done.stdout == "", f"the env file's value was written to {done.stdout}"


def test_ssh_logs_in_the_workbench_user_with_its_key(bench: Bench) -> None:
    argv = bench.ssh("id -u; id -g; command -v python jupyter")
    done = run(argv)
    assert done.returncode == 0, shown(argv, done)
    assert done.stdout.split() == [
        str(UID),
        str(GID),
        "/opt/venv/bin/python",
        "/opt/venv/bin/jupyter",
    ]
    assert "Accepted publickey for alice" in bench.logs()


def test_ssh_refuses_passwords_and_root(bench: Bench) -> None:
    argv = bench.ssh(
        "true",
        extra=(
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
        ),
    )
    done = run(argv)
    assert done.returncode != 0 and "Permission denied (publickey)" in done.stderr, shown(
        argv, done
    )
    argv = bench.ssh("true", user="root")
    done = run(argv)
    assert done.returncode != 0 and "Permission denied (publickey)" in done.stderr, shown(
        argv, done
    )
    assert "User root from" in bench.logs() and "not allowed" in bench.logs()


def test_files_made_over_ssh_belong_to_the_host_user(bench: Bench) -> None:
    argv = bench.ssh("touch /workspace/made-over-ssh")
    done = run(argv)
    assert done.returncode == 0, shown(argv, done)
    made = bench.workspace / "made-over-ssh"
    assert (made.stat().st_uid, made.stat().st_gid) == (UID, GID)
    hello = bench.workspace / "hello.txt"
    assert hello.read_text() == HOST_FILE
    assert (hello.stat().st_uid, hello.stat().st_gid) == (0, 0)  # never chowned


def test_only_pid_1_runs_as_root(bench: Bench) -> None:
    done = bench.exec("ps", "-eo", "uid=,pid=,comm=")
    rows = [line.split(None, 2) for line in done.stdout.strip().splitlines()]
    root = [r for r in rows if r[0] == "0"]
    assert [r[1] for r in root] == ["1"], done.stdout
    assert root[0][2] == "tini", done.stdout
    names = {r[2] for r in rows}
    assert {"sshd", "jupyter-lab", "tensorboard"} <= names, done.stdout


def test_the_image_has_no_host_keys(bench: Bench) -> None:
    argv = ["docker", "run", "--rm", "--entrypoint", "ls", bench.image, "/etc/ssh"]
    done = run(argv)
    assert done.returncode == 0 and "ssh_host_" not in done.stdout, shown(argv, done)


def test_unhealthy_when_jupyter_does_not_serve(bench: Bench) -> None:
    pid = bench.exec("pgrep", "-o", "-f", "jupyter-lab").stdout.strip()
    assert pid.isdigit()
    bench.exec("kill", "-STOP", pid)
    try:
        wait_until(
            lambda: bench.engine.health(bench.name) == "unhealthy",
            40,
            "the workbench to turn unhealthy with Jupyter stopped",
        )
    finally:
        bench.exec("kill", "-CONT", pid)
    bench.wait_healthy()


def test_host_keys_survive_restart_and_recreate_and_differ_between_workbenches(
    bench: Bench, timings: list[tuple[str, str, float]]
) -> None:
    before = bench.host_key()
    started = time.monotonic()
    bench.engine.stop(bench.name, timeout=20)
    subprocess.run(["docker", "start", bench.name], check=True, capture_output=True)
    bench.wait_healthy()
    timings.append(("workbench restart → healthy", bench.engine.name, time.monotonic() - started))
    assert bench.host_key() == before, "restart changed the host key"
    assert "jupyter: token kept" in bench.logs()
    # Recreated with the same state volume: same key, same token, same user.
    token = bench.token()
    bench.engine.remove(bench.name, force=True)
    timings.append(("workbench recreate → healthy", bench.engine.name, bench.start()))
    assert bench.host_key() == before, "a new container on the same volume changed the host key"
    assert bench.token() == token
    # Another workbench from the same image, with its own volume: its own host key.
    other = bench.name + "-other"
    bench.start(other, bench.volume + "-other")
    assert bench.host_key(other) != before
    bench.engine.remove(other, force=True)


def test_docker_stop_is_graceful(bench: Bench) -> None:
    started = time.monotonic()
    bench.engine.stop(bench.name, timeout=20)
    took = time.monotonic() - started
    info = bench.engine.inspect(bench.name) or {}
    state = info.get("State") or {}
    logs = bench.logs()
    assert took < 20, f"docker stop took {took:.1f} s: the supervisor did not stop in time"
    assert state.get("ExitCode") == 0, (state, logs[-2000:])
    assert "received SIGTERM: stopping jupyter, ssh, tensorboard" in logs
    assert logs.rstrip().endswith("all services stopped; graceful stop complete")
    assert (bench.workspace / "hello.txt").read_text() == HOST_FILE
    assert sorted(p.name for p in bench.workspace.iterdir()) == ["hello.txt", "made-over-ssh"]
