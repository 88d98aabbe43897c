"""The engine layer against real Docker and Podman: what a person would observe.

One Debian bookworm base is bootstrapped per session (from the mirror, no registry; the
tarball is cached under $TORCHRIG_CACHE/bases and reused by later runs) and imported into
each engine; a tiny image is built from it, and containers are started, inspected, exec'd
into, logged, health-checked, stopped and removed. Everything a test creates is removed
afterwards, also when it fails; a failing test lists the engine commands it ran.

Needs root (debootstrap), the mirror, and both engines: `.ci/install-engines.sh` sets up a
Debian/Ubuntu machine. A missing engine fails the tests with how to install it, unless
TORCHRIG_SKIP_CONTAINER=1, which skips them with that reason shown.

    TORCHRIG_PODMAN_RUNTIME=runc PYTHONPATH=src python -m pytest -m container tests/container
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from torchrig.engine import (
    BuildFailed,
    DockerEngine,
    Engine,
    HealthCheck,
    Mount,
    PodmanEngine,
    Port,
    RunSpec,
)
from torchrig.engine.cli import CliEngine
from torchrig.errors import ToolError
from torchrig.image.base import Bootstrapper, default_cache_dir

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytestmark = pytest.mark.container

Timings = list[tuple[str, str, float]]

SKIP_ENV = "TORCHRIG_SKIP_CONTAINER"
DISTRIBUTION = "debian:bookworm"
MIRROR = os.environ.get("TORCHRIG_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
TEST_LABEL = {"io.torchrig.test": "1"}
INSTALL = {
    "docker": "apt-get install docker.io, then start dockerd (.ci/install-engines.sh does both)",
    "podman": "apt-get install podman runc catatonit (.ci/install-engines.sh does it)",
}


def unavailable(what: str, how: str) -> None:
    """Fail (the default) or, with TORCHRIG_SKIP_CONTAINER=1, skip with the reason shown."""
    message = f"{what}: {how}"
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{message} ({SKIP_ENV}=1)")
    pytest.fail(f"{message}; or set {SKIP_ENV}=1 to skip the container tests", pytrace=False)


def engine_problem(name: str) -> str | None:
    path = shutil.which(name)
    if path is None:
        return f"{name} is not installed"
    check = [path, "version"] if name == "docker" else [path, "info"]
    try:
        proc = subprocess.run(check, capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return f"`{' '.join(check)}` did not answer within 30 s"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        return f"`{' '.join(check)}` failed: {last}"
    return None


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.25)


def unique(prefix: str) -> str:
    return f"torchrig-test-{prefix}-{uuid.uuid4().hex[:8]}"


# --- session: engines, the base, a tiny image -----------------------------------------------


@pytest.fixture(scope="session", params=["docker", "podman"])
def engine(request: pytest.FixtureRequest) -> Engine:
    name: str = request.param
    problem = engine_problem(name)
    if problem:
        unavailable(problem, f"install it: {INSTALL[name]}")
    return DockerEngine() if name == "docker" else PodmanEngine()


@pytest.fixture(scope="session", autouse=True)
def _prune_test_layers(engine: Engine) -> Iterator[None]:
    """Builds leave untagged layers behind (a failed build's finished steps, for one); test
    Dockerfiles label theirs right after FROM, so they can be pruned without touching
    anyone else's images."""
    yield
    assert isinstance(engine, CliEngine)
    prune = [
        *engine.base_argv(),
        "image",
        "prune",
        "--force",
        "--filter",
        "label=io.torchrig.test=1",
    ]
    subprocess.run(prune, capture_output=True, check=False, timeout=120)


@pytest.fixture(scope="session")
def base_bootstrapper() -> Bootstrapper:
    if os.geteuid() != 0:
        unavailable("bootstrapping a base needs root", "run the container tests as root")
    if shutil.which("debootstrap") is None and not Path("/usr/sbin/debootstrap").exists():
        unavailable("debootstrap is not installed", "apt-get install debootstrap")
    return Bootstrapper()


@pytest.fixture(scope="session")
def base_image(engine: Engine, base_bootstrapper: Bootstrapper, timings: Timings) -> str:
    """The bookworm base in this engine; the tarball is bootstrapped once and cached."""
    marks: dict[str, float] = {}

    def note(line: str) -> None:
        # Bootstrapper announces each phase: "cached …" ends the tarball, "importing …" and
        # "… already has …" start the engine's part.
        for phase in ("cached ", "importing ", f"{engine.name} already has "):
            if line.startswith(phase):
                marks.setdefault(phase.split()[0], time.monotonic())

    started = time.monotonic()
    base = base_bootstrapper.bootstrap(
        DISTRIBUTION, MIRROR, "x86_64", default_cache_dir(), engine, progress=note
    )
    ended = time.monotonic()
    engine_part = marks.get("cached", started)
    if not base.reused_tar:
        timings.append(("bootstrap + clean + tar", "-", engine_part - started))
    what = "base lookup (already imported)" if base.reused_image else "import rootfs tarball"
    timings.append((what, engine.name, ended - engine_part))
    return base.tag


@pytest.fixture(scope="session")
def tiny_image(
    engine: Engine,
    base_image: str,
    tmp_path_factory: pytest.TempPathFactory,
    timings: Timings,
) -> Iterator[str]:
    context = tmp_path_factory.mktemp(f"tiny-{engine.name}")
    dockerfile = context / "Dockerfile"
    dockerfile.write_text(
        f"FROM {base_image}\n"
        "LABEL io.torchrig.test=1\n"
        'RUN echo "built by torchrig tests" > /built.txt\n'
        'CMD ["sh", "-c", "echo started; exec sleep infinity"]\n'
    )
    tag = f"torchrig-test/tiny:{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    try:
        image_id = engine.build(
            context, dockerfile, tag, labels=TEST_LABEL, no_cache=True, network="host"
        )
    except ToolError as exc:
        pytest.fail(f"{exc.one_line()}", pytrace=False)
    timings.append(("small build (no cache)", engine.name, time.monotonic() - started))
    assert image_id.startswith("sha256:")
    yield tag
    engine.image_remove(tag, force=True)


class Tracker:
    """Remembers what a test creates and removes it all at the end, whatever happened."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.containers: list[str] = []
        self.volumes: list[str] = []
        self.images: list[str] = []

    def run(self, spec: RunSpec) -> str:
        if spec.name:
            self.containers.append(spec.name)
        container = self.engine.run(spec)
        if not spec.name:
            self.containers.append(container)
        return container

    def volume(self, prefix: str) -> str:
        name = unique(prefix)
        self.volumes.append(name)
        self.engine.volume_create(name, labels=TEST_LABEL)
        return name

    def clean_up(self) -> list[str]:
        problems: list[str] = []
        for remove, items in (
            (lambda c: self.engine.remove(c, force=True), self.containers),
            (lambda v: self.engine.volume_remove(v, force=True), self.volumes),
            (lambda i: self.engine.image_remove(i, force=True), self.images),
        ):
            for item in reversed(items):
                try:
                    remove(item)
                except ToolError as exc:
                    problems.append(exc.one_line())
        return problems


@pytest.fixture(autouse=True)
def _show_commands_on_failure(engine: Engine, watch_engine: Callable[[Engine], None]) -> None:
    watch_engine(engine)


@pytest.fixture
def tracker(engine: Engine) -> Iterator[Tracker]:
    tracked = Tracker(engine)
    yield tracked
    problems = tracked.clean_up()
    assert not problems, f"clean-up failed: {problems}"


# --- tests ----------------------------------------------------------------------------------


def test_base_image_is_the_bootstrapped_distribution(engine: Engine, base_image: str) -> None:
    info = engine.image_inspect(base_image)
    labels = info["Config"]["Labels"]
    assert labels["io.torchrig.base.distribution"] == DISTRIBUTION
    assert base_image.endswith(labels["io.torchrig.base.rootfs-sha256"][:12])
    assert engine.image_exists(base_image)
    assert not engine.image_exists(f"torchrig-test/absent:{uuid.uuid4().hex[:8]}")


def test_container_lifecycle(
    engine: Engine, tiny_image: str, tracker: Tracker, tmp_path: Path, timings: Timings
) -> None:
    volume = tracker.volume("data")
    assert engine.volume_exists(volume)
    (tmp_path / "hello.txt").write_text("from the host\n")
    name = unique("life")
    spec = RunSpec(
        image=tiny_image,
        name=name,
        labels={**TEST_LABEL, "io.torchrig.case": "lifecycle"},
        ports=(Port("127.0.0.1", None, 8888),),
        mounts=(
            Mount(volume, "/data", kind="volume"),
            Mount(str(tmp_path), "/host", read_only=True),
        ),
        env={"TORCHRIG_TEST": "yes"},
        security_opt=("no-new-privileges",),
        stop_timeout=1,
    )
    started = time.monotonic()
    container = tracker.run(spec)
    timings.append(("container start (run --detach)", engine.name, time.monotonic() - started))
    assert len(container) == 64

    info = engine.inspect(name)
    assert info is not None and info["Id"] == container
    assert info["State"]["Running"] is True
    assert info["Config"]["Labels"]["io.torchrig.case"] == "lifecycle"

    ports = engine.port(name)
    assert list(ports) == ["8888/tcp"]
    [(host_ip, host_port)] = ports["8888/tcp"]
    assert host_ip == "127.0.0.1" and 0 < host_port < 65536

    done = engine.exec(name, ["cat", "/built.txt", "/host/hello.txt"])
    assert (done.returncode, done.stdout) == (0, "built by torchrig tests\nfrom the host\n")
    assert engine.exec(name, ["sh", "-c", 'echo "$TORCHRIG_TEST $X"'], env={"X": "1"}).stdout == (
        "yes 1\n"
    )
    assert engine.exec(name, ["id", "-un"], user="nobody").stdout == "nobody\n"
    assert engine.exec(name, ["pwd"], workdir="/data").stdout == "/data\n"
    assert engine.exec(name, ["cat"], input="through stdin\n").stdout == "through stdin\n"
    assert engine.exec(name, ["sh", "-c", "exit 7"]).returncode == 7
    assert engine.exec(name, ["touch", "/host/nope"]).returncode != 0  # mounted read-only
    assert engine.exec(name, ["sh", "-c", "echo kept > /data/kept.txt"]).returncode == 0

    wait_until(lambda: "started" in list(engine.logs(name)), 10, "the container's first line")
    assert list(engine.logs(name, tail=1)) == ["started"]
    assert engine.health(name) == "none"

    # sleep is PID 1 without an init: it ignores SIGTERM, so stop waits out the timeout.
    started = time.monotonic()
    engine.stop(name, timeout=1)
    took = time.monotonic() - started
    timings.append(("stop (1 s timeout, SIGKILL)", engine.name, took))
    assert 0.8 < took < 15
    stopped = engine.inspect(name)
    assert stopped is not None and stopped["State"]["Running"] is False

    engine.remove(name)
    assert engine.inspect(name) is None
    engine.remove(name)  # already gone: fine

    # The volume outlives the container.
    reader = tracker.run(
        RunSpec(
            image=tiny_image,
            name=unique("reader"),
            mounts=(Mount(volume, "/data", kind="volume", read_only=True),),
            labels=TEST_LABEL,
        )
    )
    assert engine.exec(reader, ["cat", "/data/kept.txt"]).stdout == "kept\n"
    engine.remove(reader, force=True)
    engine.volume_remove(volume)
    assert not engine.volume_exists(volume)


def test_init_forwards_sigterm(engine: Engine, tiny_image: str, tracker: Tracker) -> None:
    name = unique("init")
    tracker.run(RunSpec(image=tiny_image, name=name, init=True, labels=TEST_LABEL))
    wait_until(lambda: "started" in list(engine.logs(name)), 10, "the container's first line")
    started = time.monotonic()
    engine.stop(name, timeout=20)
    assert time.monotonic() - started < 10, "the init did not pass SIGTERM on to the process"


def test_health_check_override(engine: Engine, tiny_image: str, tracker: Tracker) -> None:
    name = unique("health")
    check = HealthCheck("test -e /tmp/ready", interval_s=1, timeout_s=2, retries=2)
    tracker.run(RunSpec(image=tiny_image, name=name, healthcheck=check, labels=TEST_LABEL))
    wait_until(lambda: engine.health(name) == "unhealthy", 30, "the check to fail twice")
    assert engine.exec(name, ["touch", "/tmp/ready"]).returncode == 0
    wait_until(lambda: engine.health(name) == "healthy", 30, "the check to pass")


def test_failed_start_leaves_no_container(
    engine: Engine, tiny_image: str, tracker: Tracker
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        name = unique("busy")
        with pytest.raises(ToolError) as caught:
            tracker.run(
                RunSpec(
                    image=tiny_image,
                    name=name,
                    ports=(Port("127.0.0.1", port, 8888),),
                    labels=TEST_LABEL,
                )
            )
    assert "reproduce with:" in (caught.value.fix or "")
    assert engine.inspect(name) is None


def test_foreground_run(engine: Engine, tiny_image: str, tracker: Tracker) -> None:
    container = engine.run(RunSpec(image=tiny_image, detach=False, remove=True, command=("true",)))
    assert len(container) == 64
    with pytest.raises(ToolError, match="exited with status 3"):
        engine.run(
            RunSpec(image=tiny_image, detach=False, remove=True, command=("sh", "-c", "exit 3"))
        )


def test_failing_build_names_the_step(engine: Engine, base_image: str, tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        f"FROM {base_image}\n"
        "LABEL io.torchrig.test=1\n"  # the failed build's layers are pruned by this label
        "RUN echo first step\n"
        "RUN echo about to fail && exit 3\n"
        "RUN echo never\n"
    )
    tag = f"torchrig-test/broken:{uuid.uuid4().hex[:8]}"
    lines: list[str] = []
    try:
        with pytest.raises(BuildFailed) as caught:
            engine.build(tmp_path, dockerfile, tag, progress=lines.append, no_cache=True)
    finally:
        engine.image_remove(tag, force=True)
    error = caught.value
    assert error.step == "4/5 RUN echo about to fail && exit 3", error.message
    assert "failed at step 4/5 RUN echo about to fail && exit 3" in error.message
    assert any("about to fail" in line for line in error.log_tail)
    assert error.log_tail == lines[-len(error.log_tail) :]
    assert "never" not in "\n".join(lines)
    assert error.command.split()[-1] == str(tmp_path)


def test_missing_things(engine: Engine) -> None:
    ghost = unique("ghost")
    assert engine.inspect(ghost) is None
    assert not engine.volume_exists(ghost)
    engine.remove(ghost)
    engine.volume_remove(ghost)
    engine.image_remove(f"torchrig-test/{ghost}:1")
    with pytest.raises(ToolError):
        engine.remove(ghost, missing_ok=False)
    with pytest.raises(ToolError):
        engine.stop(ghost)
    with pytest.raises(ToolError):
        list(engine.logs(ghost))
