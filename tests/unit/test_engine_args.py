"""The engine layer without an engine: the exact commands Docker and Podman would run, how
their answers are read, the recording fake, and how an engine is chosen."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from torchrig.engine import (
    BuildFailed,
    DockerEngine,
    HealthCheck,
    Mount,
    PodmanEngine,
    Port,
    RecordingEngine,
    RunSpec,
    choose_engine,
)
from torchrig.engine.base import check_gpus, health_from_inspect, ports_from_inspect
from torchrig.engine.cli import BuildLog, Runner, command_line, error_detail
from torchrig.engine.fake import failing_build
from torchrig.errors import HostError, ToolError, UsageError
from torchrig.host.facts import Engine as EngineFacts
from torchrig.host.facts import HostFacts

if TYPE_CHECKING:
    from collections.abc import Generator, Mapping, Sequence

# A workbench as the run plan will ask for it: every RunSpec field that has a flag is set.
WORKBENCH = RunSpec(
    image="torchrig/demo:2.9.1-cu128",
    name="torchrig-demo",
    command=("torchrig-entrypoint", "lab"),
    entrypoint="/usr/bin/tini",
    hostname="demo",
    workdir="/workspace",
    user="1000:1000",
    group_add=("users",),
    env={"TZ": "UTC", "JUPYTER_TOKEN_FILE": "/run/secrets/token"},
    env_file=Path("/home/ada/demo/.torchrig/secrets.env"),
    labels={"io.torchrig.project": "demo"},
    ports=(Port("127.0.0.1", 8888, 8888), Port("127.0.0.1", None, 22)),
    mounts=(
        Mount("/home/ada/demo", "/workspace"),
        Mount("torchrig-demo-state", "/var/lib/torchrig", kind="volume"),
        Mount("/home/ada/.cache/hf", "/cache/hf", read_only=True),
        Mount("", "/tmp", kind="tmpfs", options=("tmpfs-size=1g",)),
    ),
    gpus="all",
    shm_size="16g",
    ulimits={"memlock": -1, "stack": 67108864, "nofile": (65536, 65536)},
    security_opt=("no-new-privileges",),
    cap_drop=("ALL",),
    cap_add=("CHOWN", "SETUID", "SETGID"),
    pids_limit=4096,
    memory="64g",
    cpus=8.0,
    stop_timeout=120,
    init=True,
    healthcheck=HealthCheck("curl -fsS http://127.0.0.1:8888/api", interval_s=10, timeout_s=5),
    restart="unless-stopped",
)

WORKBENCH_TAIL = [
    "--detach",
    "--name",
    "torchrig-demo",
    "--hostname",
    "demo",
    "--init",
    "--user",
    "1000:1000",
    "--group-add",
    "users",
    "--workdir",
    "/workspace",
    "--env-file",
    "/home/ada/demo/.torchrig/secrets.env",
    "--env",
    "TZ=UTC",
    "--env",
    "JUPYTER_TOKEN_FILE=/run/secrets/token",
    "--label",
    "io.torchrig.project=demo",
    "--publish",
    "127.0.0.1:8888:8888/tcp",
    "--publish",
    "127.0.0.1::22/tcp",
    "--mount",
    "type=bind,source=/home/ada/demo,target=/workspace",
    "--mount",
    "type=volume,source=torchrig-demo-state,target=/var/lib/torchrig",
    "--mount",
    "type=bind,source=/home/ada/.cache/hf,target=/cache/hf,ro=true",
    "--mount",
    "type=tmpfs,target=/tmp,tmpfs-size=1g",
]
LIMITS_TAIL = [
    "--shm-size",
    "16g",
    "--ulimit",
    "memlock=-1",
    "--ulimit",
    "stack=67108864",
    "--ulimit",
    "nofile=65536:65536",
    "--security-opt",
    "no-new-privileges",
    "--cap-drop",
    "ALL",
    "--cap-add",
    "CHOWN",
    "--cap-add",
    "SETUID",
    "--cap-add",
    "SETGID",
    "--pids-limit",
    "4096",
    "--memory",
    "64g",
    "--cpus",
    "8.0",
    "--stop-timeout",
    "120",
    "--restart",
    "unless-stopped",
    "--health-cmd",
    "curl -fsS http://127.0.0.1:8888/api",
    "--health-interval",
    "10s",
    "--health-timeout",
    "5s",
    "--health-retries",
    "3",
    "--health-start-period",
    "0s",
    "--entrypoint",
    "/usr/bin/tini",
    "torchrig/demo:2.9.1-cu128",
    "torchrig-entrypoint",
    "lab",
]


class ScriptedRunner(Runner):
    """Records every command; answers from `answers` (first matching argv prefix wins)."""

    def __init__(self, answers: Sequence[tuple[Sequence[str], int, str, str]] = ()) -> None:
        self.answers = [(list(p), rc, out, err) for p, rc, out, err in answers]
        self.calls: list[list[str]] = []
        self.envs: list[Mapping[str, str] | None] = []
        self.stream_lines: list[str] = []
        self.stream_rc = 0

    def _answer(self, argv: Sequence[str]) -> tuple[int, str, str]:
        for prefix, rc, out, err in self.answers:
            if list(argv[: len(prefix)]) == prefix:
                return rc, out, err
        return 0, "", ""

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        input: str | None = None,
        capture: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(argv))
        self.envs.append(env)
        rc, out, err = self._answer(argv)
        return subprocess.CompletedProcess(list(argv), rc, out, err)

    def lines(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None = None
    ) -> Generator[str, None, int]:
        self.calls.append(list(argv))
        self.envs.append(env)
        yield from self.stream_lines
        return self.stream_rc


def docker(runner: Runner | None = None, buildkit: bool = False) -> DockerEngine:
    return DockerEngine("docker", runner=runner or ScriptedRunner(), buildkit=buildkit)


def podman(runner: Runner | None = None, runtime: str = "") -> PodmanEngine:
    return PodmanEngine("podman", runner=runner or ScriptedRunner(), runtime=runtime, systemd=True)


# --- run ------------------------------------------------------------------------------------


def test_docker_run_arguments_for_a_workbench() -> None:
    assert docker().run_argv(WORKBENCH) == [
        "docker",
        "run",
        *WORKBENCH_TAIL,
        "--gpus",
        "all",
        *LIMITS_TAIL,
    ]


def test_podman_run_arguments_for_a_workbench() -> None:
    assert podman(runtime="runc").run_argv(WORKBENCH) == [
        "podman",
        "--runtime",
        "runc",
        "run",
        *WORKBENCH_TAIL,
        "--device",
        "nvidia.com/gpu=all",
        *LIMITS_TAIL,
    ]


def test_minimal_run_is_only_detach_and_image() -> None:
    spec = RunSpec(image="busybox")
    assert docker().run_argv(spec) == ["docker", "run", "--detach", "busybox"]
    assert podman().run_argv(spec) == ["podman", "run", "--detach", "busybox"]


def test_foreground_run_arguments() -> None:
    spec = RunSpec(
        image="img",
        detach=False,
        remove=True,
        interactive=True,
        tty=True,
        no_healthcheck=True,
        healthcheck=HealthCheck("true"),
        userns="keep-id",
        network="none",
        command=("python", "-c", "print('hi there')"),
    )
    assert podman().run_argv(spec, cidfile=Path("/tmp/x/cid")) == [
        "podman",
        "run",
        "--cidfile",
        "/tmp/x/cid",
        "--rm",
        "--interactive",
        "--tty",
        "--userns",
        "keep-id",
        "--network",
        "none",
        "--no-healthcheck",
        "img",
        "python",
        "-c",
        "print('hi there')",
    ]


# GPU selectors: Docker's --gpus (CSV: a device list must be quoted as one field), Podman's CDI.
GPU_CASES = [
    (None, [], []),
    (0, [], []),
    ((), [], []),
    ("all", ["--gpus", "all"], ["--device", "nvidia.com/gpu=all"]),
    (2, ["--gpus", "2"], ["--device", "nvidia.com/gpu=0", "--device", "nvidia.com/gpu=1"]),
    ((1,), ["--gpus", "device=1"], ["--device", "nvidia.com/gpu=1"]),
    (
        (0, 3),
        ["--gpus", '"device=0,3"'],
        ["--device", "nvidia.com/gpu=0", "--device", "nvidia.com/gpu=3"],
    ),
    (
        ("GPU-8d2a",),
        ["--gpus", "device=GPU-8d2a"],
        ["--device", "nvidia.com/gpu=GPU-8d2a"],
    ),
]


@pytest.mark.parametrize(("gpus", "docker_args", "podman_args"), GPU_CASES)
def test_gpu_selection(gpus: object, docker_args: list[str], podman_args: list[str]) -> None:
    spec = RunSpec(image="img", gpus=gpus)  # type: ignore[arg-type]
    assert docker().run_argv(spec) == ["docker", "run", "--detach", *docker_args, "img"]
    assert podman().run_argv(spec) == ["podman", "run", "--detach", *podman_args, "img"]


@pytest.mark.parametrize("gpus", [-1, (-1,), ("0,1",), ("",), ("a b",), True, 1.5, "some"])
def test_bad_gpu_selection_is_a_usage_error(gpus: object) -> None:
    with pytest.raises(UsageError):
        check_gpus(gpus)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (RunSpec(image="i", ports=(Port("", 8888, 8888),)), "no host address"),
        (RunSpec(image="i", ports=(Port("127.0.0.1", 70000, 8888),)), "outside 1–65535"),
        (RunSpec(image="i", mounts=(Mount("rel/path", "/w"),)), "not an absolute path"),
        (RunSpec(image="i", mounts=(Mount("/a", "w"),)), "not an absolute path"),
        (RunSpec(image="i", mounts=(Mount("/a,b", "/w"),)), "comma"),
        (RunSpec(image="i", env={"A B": "1"}), "environment variable"),
    ],
)
def test_bad_run_specs_are_refused_before_running(spec: RunSpec, message: str) -> None:
    runner = ScriptedRunner()
    with pytest.raises(UsageError, match=message):
        docker(runner).run(spec)
    assert runner.calls == []


def test_ipv6_and_public_publish_values() -> None:
    spec = RunSpec(image="i", ports=(Port("::1", 8888, 8888), Port("0.0.0.0", 53, 53, "udp")))
    argv = docker().run_argv(spec)
    assert argv[3:7] == ["--publish", "[::1]:8888:8888/tcp", "--publish", "0.0.0.0:53:53/udp"]


# --- build ----------------------------------------------------------------------------------


def test_docker_classic_build_arguments(tmp_path: Path) -> None:
    engine = docker(buildkit=False)
    argv = engine.build_argv(
        tmp_path,
        tmp_path / "Dockerfile",
        "torchrig/demo:1",
        build_args={"PYTHON": "3.12"},
        labels={"io.torchrig.spec": "sha256:abc"},
        no_cache=True,
        network="host",
        iidfile=Path("/tmp/iid"),
    )
    assert argv == [
        "docker",
        "build",
        "--file",
        f"{tmp_path}/Dockerfile",
        "--tag",
        "torchrig/demo:1",
        "--force-rm",
        "--iidfile",
        "/tmp/iid",
        "--no-cache",
        "--network",
        "host",
        "--build-arg",
        "PYTHON=3.12",
        "--label",
        "io.torchrig.spec=sha256:abc",
        str(tmp_path),
    ]
    assert engine.build_env() == {"DOCKER_BUILDKIT": "0"}


def test_docker_buildkit_build_arguments(tmp_path: Path) -> None:
    engine = docker(buildkit=True)
    argv = engine.build_argv(tmp_path, tmp_path / "Dockerfile", "t:1")
    assert argv[5:8] == ["t:1", "--progress=plain", "--load"]
    assert engine.build_env() == {"DOCKER_BUILDKIT": "1"}


def test_podman_build_keeps_healthcheck_with_docker_format(tmp_path: Path) -> None:
    argv = podman(runtime="runc").build_argv(tmp_path, tmp_path / "Dockerfile", "t:1")
    assert argv == [
        "podman",
        "--runtime",
        "runc",
        "build",
        "--file",
        f"{tmp_path}/Dockerfile",
        "--tag",
        "t:1",
        "--format",
        "docker",
        str(tmp_path),
    ]


def test_buildkit_is_detected_once_from_buildx() -> None:
    runner = ScriptedRunner([(["docker", "buildx", "version"], 1, "", "unknown command")])
    engine = DockerEngine("docker", runner=runner)
    assert engine.build_env() == {"DOCKER_BUILDKIT": "0"}
    assert engine.build_options() == ["--force-rm"]
    assert runner.calls == [["docker", "buildx", "version"]]
    runner = ScriptedRunner([(["docker", "buildx", "version"], 0, "github.com/docker/buildx", "")])
    assert DockerEngine("docker", runner=runner).buildkit is True


def _dockerfile(tmp_path: Path) -> Path:
    path = tmp_path / "Dockerfile"
    path.write_text("FROM scratch\n")
    return path


def test_build_streams_lines_and_returns_the_image_id(tmp_path: Path) -> None:
    runner = ScriptedRunner(
        [(["docker", "image", "inspect", "t:1"], 0, '[{"Id": "sha256:feed"}]', "")]
    )
    runner.stream_lines = ["Step 1/1 : FROM scratch", "Successfully built feed"]
    seen: list[str] = []
    image_id = docker(runner).build(tmp_path, _dockerfile(tmp_path), "t:1", progress=seen.append)
    assert image_id == "sha256:feed"  # the iidfile was not written: read back by inspect
    assert seen == runner.stream_lines
    assert runner.envs[0] == {"DOCKER_BUILDKIT": "0"}


CLASSIC_FAILURE = [
    "Step 1/3 : FROM torchrig-base/debian:bookworm-0123456789ab",
    " ---> 5c0e1b1f4a2e",
    "Step 2/3 : RUN echo building",
    " ---> Running in 1e2f",
    "building",
    "Step 3/3 : RUN exit 3",
    " ---> Running in 9a8b",
    "The command '/bin/sh -c exit 3' returned a non-zero code: 3",
]
PODMAN_FAILURE = [
    "STEP 1/3: FROM torchrig-base/debian:bookworm-0123456789ab",
    "STEP 2/3: RUN echo building",
    "building",
    "--> 1c2d3e4f5a6",
    "STEP 3/3: RUN exit 3",
    "error running container: did not get container start message from parent: EOF",
    'Error: building at STEP "RUN exit 3": while running runtime: exit status 3',
]
BUILDKIT_FAILURE = [
    "#4 [1/3] FROM torchrig-base/debian:bookworm-0123456789ab",
    "#5 [2/3] RUN echo building",
    "#6 [stage-1 3/3] RUN exit 3",
    "#5 0.2 building",
    '#6 ERROR: process "/bin/sh -c exit 3" did not complete successfully: exit code: 3',
    "#5 DONE 0.3s",
    "------",
    " > [stage-1 3/3] RUN exit 3:",
    "------",
    'ERROR: failed to solve: process "/bin/sh -c exit 3" did not complete successfully: '
    "exit code: 3",
]


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        (CLASSIC_FAILURE, "returned a non-zero code: 3"),
        (PODMAN_FAILURE, 'building at STEP "RUN exit 3"'),
        (BUILDKIT_FAILURE, "exit code: 3"),
    ],
    ids=["classic", "podman", "buildkit"],
)
def test_build_log_names_the_failing_step(lines: list[str], error: str) -> None:
    log = BuildLog()
    for line in lines:
        log.feed(line)
    assert log.step == "3/3 RUN exit 3"
    assert log.error is not None and error in log.error


def test_failed_build_raises_with_step_tail_and_command(tmp_path: Path) -> None:
    runner = ScriptedRunner()
    runner.stream_lines = [f"noise {i}" for i in range(30)] + CLASSIC_FAILURE
    runner.stream_rc = 1
    dockerfile = _dockerfile(tmp_path)
    with pytest.raises(BuildFailed) as caught:
        docker(runner).build(tmp_path, dockerfile, "t:1")
    error = caught.value
    assert error.exit_code == 5  # a ToolError
    assert error.step == "3/3 RUN exit 3"
    assert "failed at step 3/3 RUN exit 3" in error.message
    assert len(error.log_tail) == 20 and error.log_tail[-1] == CLASSIC_FAILURE[-1]
    assert error.command.startswith("DOCKER_BUILDKIT=0 docker build --file ")
    assert error.fix is not None and error.command in error.fix


def test_build_failing_before_any_step(tmp_path: Path) -> None:
    runner = ScriptedRunner()
    runner.stream_lines = ["Error response from daemon: dockerfile parse error line 1"]
    runner.stream_rc = 1
    with pytest.raises(BuildFailed, match="before any step ran: Error response"):
        docker(runner).build(tmp_path, _dockerfile(tmp_path), "t:1")


def test_build_refuses_missing_context_or_dockerfile(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a directory"):
        docker().build(tmp_path / "nope", tmp_path / "Dockerfile", "t")
    with pytest.raises(UsageError, match="does not exist"):
        docker().build(tmp_path, tmp_path / "Dockerfile", "t")


# --- the other commands ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("engine_name", "call", "argv"),
    [
        ("docker", lambda e: e.stop("wb", timeout=30), ["docker", "stop", "-t", "30", "wb"]),
        ("podman", lambda e: e.stop("wb"), ["podman", "stop", "wb"]),
        (
            "docker",
            lambda e: e.remove("wb", force=True),
            ["docker", "rm", "--volumes", "--force", "wb"],
        ),
        # Podman's rm --force waits for the stop timeout first; Docker kills at once.
        (
            "podman",
            lambda e: e.remove("wb", force=True),
            ["podman", "rm", "--volumes", "--force", "--time", "0", "wb"],
        ),
        (
            "docker",
            lambda e: e.image_exists("t:1"),
            ["docker", "image", "inspect", "--format", "{{.Id}}", "t:1"],
        ),
        ("podman", lambda e: e.image_exists("t:1"), ["podman", "image", "exists", "t:1"]),
        (
            "docker",
            lambda e: e.volume_exists("v"),
            ["docker", "volume", "inspect", "--format", "{{.Name}}", "v"],
        ),
        ("podman", lambda e: e.volume_exists("v"), ["podman", "volume", "exists", "v"]),
        (
            "docker",
            lambda e: e.volume_create("v", labels={"io.torchrig.project": "demo"}),
            ["docker", "volume", "create", "--label", "io.torchrig.project=demo", "v"],
        ),
        (
            "podman",
            lambda e: e.volume_remove("v", force=True),
            ["podman", "volume", "rm", "--force", "v"],
        ),
        ("docker", lambda e: e.inspect("wb"), ["docker", "container", "inspect", "wb"]),
        (
            "docker",
            lambda e: list(e.logs("wb", follow=True, tail=50)),
            ["docker", "logs", "--follow", "--tail", "50", "wb"],
        ),
        (
            "podman",
            lambda e: e.exec("wb", ["id", "-u"], user="ada", env={"A": "1"}, workdir="/w"),
            [
                "podman",
                "exec",
                "--user",
                "ada",
                "--workdir",
                "/w",
                "--env",
                "A=1",
                "wb",
                "id",
                "-u",
            ],
        ),
        # Text for stdin makes the exec interactive (-i) without a terminal.
        (
            "docker",
            lambda e: e.exec("wb", ["tee", "/run/k"], input="secret"),
            ["docker", "exec", "--interactive", "wb", "tee", "/run/k"],
        ),
        # Detached: the engine holds the process, so it outlives this client.
        (
            "docker",
            lambda e: e.exec("wb", ["sleep", "9"], user="1:2", workdir="/w", detach=True),
            ["docker", "exec", "--detach", "--user", "1:2", "--workdir", "/w", "wb", "sleep", "9"],
        ),
        (
            "podman",
            lambda e: e.exec("wb", ["sleep", "9"], detach=True),
            ["podman", "exec", "--detach", "wb", "sleep", "9"],
        ),
    ],
)
def test_command_arguments(engine_name: str, call: object, argv: list[str]) -> None:
    runner = ScriptedRunner()
    engine = docker(runner) if engine_name == "docker" else podman(runner)
    call(engine)  # type: ignore[operator]
    assert runner.calls == [argv]
    assert engine.commands == [command_line(argv)]


def test_a_detached_exec_takes_no_terminal_or_input() -> None:
    engine = docker(ScriptedRunner())
    with pytest.raises(UsageError, match="detached"):
        engine.exec("wb", ["true"], detach=True, interactive=True)
    with pytest.raises(UsageError, match="detached"):
        engine.exec("wb", ["true"], detach=True, input="x")


def test_missing_objects_read_as_absent() -> None:
    runner = ScriptedRunner(
        [
            (["docker", "image", "inspect"], 1, "", "Error: No such image: t:1\n"),
            (["docker", "container", "inspect"], 1, "[]", "Error: No such object: wb\n"),
            (["docker", "rm"], 1, "", "Error: No such container: wb\n"),
            (["docker", "volume", "inspect"], 1, "[]", "Error: No such volume: v\n"),
            (["docker", "volume", "rm"], 1, "", "Error: get v: no such volume\n"),
        ]
    )
    engine = docker(runner)
    assert engine.image_exists("t:1") is False
    assert engine.inspect("wb") is None
    assert engine.volume_exists("v") is False
    engine.remove("wb")
    engine.volume_remove("v")
    with pytest.raises(ToolError, match="No such container"):
        engine.remove("wb", missing_ok=False)
    with pytest.raises(ToolError, match="no container 'wb'"):
        engine.health("wb")


def test_podman_missing_container_message() -> None:
    runner = ScriptedRunner(
        [
            (
                ["podman", "container", "inspect"],
                125,
                "[]",
                'Error: no container with name or ID "wb" found: no such container\n',
            )
        ]
    )
    assert podman(runner).inspect("wb") is None


def test_engine_failure_names_the_command_to_reproduce() -> None:
    runner = ScriptedRunner(
        [(["docker", "stop"], 1, "", "Error response from daemon: cannot stop container: x\n")]
    )
    with pytest.raises(ToolError) as caught:
        docker(runner).stop("wb", timeout=5)
    assert "stopping wb failed: Error response from daemon" in caught.value.message
    assert caught.value.fix == "reproduce with: docker stop -t 5 wb"


def test_cli_not_installed_is_a_host_error() -> None:
    class Missing(ScriptedRunner):
        def run(self, argv: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:  # type: ignore[override]
            raise FileNotFoundError(argv[0])

    with pytest.raises(HostError, match="podman CLI") as caught:
        podman(Missing()).inspect("wb")
    assert caught.value.fix is not None and "apt-get install podman" in caught.value.fix


def test_failed_start_removes_the_half_created_container() -> None:
    runner = ScriptedRunner(
        [
            (
                ["docker", "run"],
                125,
                "",
                "docker: Error response from daemon: driver failed programming external "
                "connectivity: Bind for 127.0.0.1:8888 failed: port is already allocated.\n"
                "See 'docker run --help'.\n",
            )
        ]
    )
    spec = RunSpec(image="i", name="wb", ports=(Port("127.0.0.1", 8888, 8888),))
    with pytest.raises(ToolError, match="port is already allocated"):
        docker(runner).run(spec)
    assert runner.calls[-1] == ["docker", "rm", "--volumes", "--force", "wb"]


def test_name_conflict_leaves_the_other_container_alone() -> None:
    runner = ScriptedRunner(
        [
            (
                ["docker", "run"],
                125,
                "",
                'docker: Error response from daemon: Conflict. The container name "/wb" is '
                'already in use by container "abc".\n',
            )
        ]
    )
    with pytest.raises(ToolError, match="already in use"):
        docker(runner).run(RunSpec(image="i", name="wb"))
    assert [c[1] for c in runner.calls] == ["run"]


def test_detached_run_returns_the_container_id() -> None:
    runner = ScriptedRunner([(["podman", "run"], 0, "Trying to pull...\n" + "c" * 64 + "\n", "")])
    assert podman(runner).run(RunSpec(image="i")) == "c" * 64


def test_podman_runtime_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCHRIG_PODMAN_RUNTIME", "runc")
    assert PodmanEngine("podman").base_argv() == ["podman", "--runtime", "runc"]
    monkeypatch.delenv("TORCHRIG_PODMAN_RUNTIME")
    assert PodmanEngine("podman").base_argv() == ["podman"]
    assert PodmanEngine("podman", runtime="crun").base_argv() == ["podman", "--runtime", "crun"]


INSPECT_STARTING = '[{"State": {"Running": true, "Healthcheck": {"Status": "starting"}}}]'


def test_podman_without_systemd_runs_the_health_check_itself() -> None:
    runner = ScriptedRunner([(["podman", "container", "inspect"], 0, INSPECT_STARTING, "")])
    engine = PodmanEngine("podman", runner=runner, runtime="", systemd=False)
    assert engine.health("wb") == "starting"
    assert ["podman", "healthcheck", "run", "wb"] in runner.calls
    runner.calls.clear()
    with_systemd = PodmanEngine("podman", runner=runner, runtime="", systemd=True)
    assert with_systemd.health("wb") == "starting"
    assert ["podman", "healthcheck", "run", "wb"] not in runner.calls


@pytest.mark.parametrize(
    ("state", "health"),
    [
        ({"Health": {"Status": "healthy"}}, "healthy"),  # Docker
        ({"Healthcheck": {"Status": "unhealthy"}}, "unhealthy"),  # Podman 4
        ({"Healthcheck": {"Status": ""}}, "none"),  # Podman, no health check
        ({}, "none"),
    ],
)
def test_health_from_inspect(state: dict[str, object], health: str) -> None:
    assert health_from_inspect({"State": state}) == health


def test_ports_from_inspect() -> None:
    info = {
        "NetworkSettings": {
            "Ports": {
                "8888/tcp": [{"HostIp": "127.0.0.1", "HostPort": "49153"}],
                "22/tcp": [{"HostIp": "127.0.0.1", "HostPort": "2222"}],
                "9000/tcp": None,
            }
        }
    }
    assert ports_from_inspect(info) == {
        "22/tcp": [("127.0.0.1", 2222)],
        "8888/tcp": [("127.0.0.1", 49153)],
        "9000/tcp": [],
    }


def test_error_detail_picks_the_error_line() -> None:
    text = 'time="2026" level=warning msg="x"\nError: no such image\nSee \'podman run --help\'\n'
    assert error_detail(text) == "Error: no such image"
    assert error_detail("") == "no error message"


def test_command_line_is_pasteable() -> None:
    argv = ["docker", "exec", "wb", "sh", "-c", "echo 'hi'"]
    assert command_line(argv, {"DOCKER_BUILDKIT": "0"}) == (
        "DOCKER_BUILDKIT=0 docker exec wb sh -c 'echo '\"'\"'hi'\"'\"''"
    )


# --- the recording fake ---------------------------------------------------------------------


def test_recording_engine_records_and_answers(tmp_path: Path) -> None:
    engine = RecordingEngine()
    lines: list[str] = []
    image_id = engine.build(
        tmp_path, tmp_path / "Dockerfile", "t:1", labels={"a": "b"}, progress=lines.append
    )
    assert image_id.startswith("sha256:") and lines == ["STEP 1/1: FROM scratch"]
    assert engine.image_exists("t:1")
    spec = RunSpec(
        image="t:1",
        name="wb",
        ports=(Port("127.0.0.1", None, 8888), Port("127.0.0.1", 2222, 22)),
        healthcheck=HealthCheck("true"),
    )
    cid = engine.run(spec)
    assert engine.port("wb") == {
        "8888/tcp": [("127.0.0.1", 49153)],
        "22/tcp": [("127.0.0.1", 2222)],
    }
    assert engine.health(cid[:12]) == "starting"
    engine.set_health("wb", "healthy")
    assert engine.health("wb") == "healthy"
    engine.logs_of["wb"] = ["a", "b", "c"]
    assert list(engine.logs("wb", tail=2)) == ["b", "c"]
    assert engine.exec("wb", ["true"]).returncode == 0
    with pytest.raises(ToolError, match="already in use"):
        engine.run(spec)
    with pytest.raises(ToolError, match="running"):
        engine.remove("wb")
    engine.stop("wb", timeout=5)
    assert engine.exec("wb", ["true"]).returncode == 1
    engine.remove("wb")
    assert engine.inspect("wb") is None
    assert [c.method for c in engine.calls] == [
        "build",
        "image_exists",
        "run",
        "inspect",
        "inspect",
        "inspect",
        "logs",
        "exec",
        "run",
        "remove",
        "stop",
        "exec",
        "remove",
        "inspect",
    ]
    assert engine.called("stop")[0].kwargs == {"timeout": 5}


def test_recording_engine_scripted_failures_and_volumes(tmp_path: Path) -> None:
    engine = RecordingEngine()
    engine.fail["build"] = failing_build("2/3 RUN exit 3", ["boom"])
    with pytest.raises(BuildFailed) as caught:
        engine.build(tmp_path, tmp_path / "Dockerfile", "t:1")
    assert caught.value.step == "2/3 RUN exit 3"
    assert engine.commands[-1].startswith("fake build")
    engine.add_image("t:1")
    engine.volume_create("state")
    engine.run(RunSpec(image="t:1", name="wb", mounts=(Mount("state", "/s", kind="volume"),)))
    with pytest.raises(ToolError, match="in use"):
        engine.volume_remove("state")
    engine.volume_remove("state", force=True)
    assert not engine.volume_exists("state")
    with pytest.raises(ToolError, match="no image"):
        engine.run(RunSpec(image="missing:1"))
    engine.exec_handler = lambda c, cmd: subprocess.CompletedProcess(list(cmd), 0, "1000\n", "")
    assert engine.exec("wb", ["id", "-u"]).stdout == "1000\n"


# --- choosing -------------------------------------------------------------------------------


def facts(*engines: EngineFacts) -> HostFacts:
    return HostFacts(engines=list(engines))


DOCKER_OK = EngineFacts(name="docker", path="/usr/bin/docker", reachable=True)
DOCKER_DOWN = EngineFacts(
    name="docker",
    path="/usr/bin/docker",
    error="Cannot connect to the Docker daemon at unix:///var/run/docker.sock",
)
DOCKER_NONE = EngineFacts(name="docker", error="the docker CLI is not installed (not on PATH)")
PODMAN_OK = EngineFacts(name="podman", path="/usr/bin/podman", reachable=True)
PODMAN_NONE = EngineFacts(name="podman", error="the podman CLI is not installed (not on PATH)")


def test_default_is_docker_when_it_answers() -> None:
    engine = choose_engine(None, facts(DOCKER_OK, PODMAN_OK))
    assert isinstance(engine, DockerEngine) and engine.path == "/usr/bin/docker"


def test_default_falls_back_to_podman() -> None:
    engine = choose_engine(None, facts(DOCKER_DOWN, PODMAN_OK))
    assert isinstance(engine, PodmanEngine) and engine.path == "/usr/bin/podman"


def test_explicit_choice_wins() -> None:
    assert isinstance(choose_engine("podman", facts(DOCKER_OK, PODMAN_OK)), PodmanEngine)


def test_no_engine_says_how_to_install_one() -> None:
    with pytest.raises(HostError) as caught:
        choose_engine(None, facts(DOCKER_NONE, PODMAN_NONE))
    assert caught.value.one_line() == (
        "no container engine (docker: the docker CLI is not installed (not on PATH); "
        "podman: the podman CLI is not installed (not on PATH)) — install Docker "
        "(apt-get install docker.io) or Podman (apt-get install podman)"
    )


def test_explicit_engine_that_is_down_or_missing() -> None:
    with pytest.raises(HostError, match="docker is installed but not usable: Cannot connect"):
        choose_engine("docker", facts(DOCKER_DOWN, PODMAN_OK))
    with pytest.raises(HostError, match="podman is not installed") as caught:
        choose_engine("podman", facts(DOCKER_OK, PODMAN_NONE))
    assert caught.value.fix == "install Podman (apt-get install podman)"
    with pytest.raises(UsageError, match="unknown container engine 'nerdctl'"):
        choose_engine("nerdctl", facts(DOCKER_OK))


def test_docker_host_is_not_sniffed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/user/1000/podman/podman.sock")
    assert isinstance(choose_engine(None, facts(DOCKER_OK, PODMAN_OK)), DockerEngine)


def test_a_workbench_network_is_a_bridge_on_docker_and_its_own_stack_on_podman() -> None:
    # Podman 4's isolate=true separates only networks that both have it: a neighbour on the
    # default network reached Jupyter; slirp4netns leaves no bridge address to reach.
    spec = RunSpec(image="img", network="torchrig-demo-net", ports=(Port("127.0.0.1", 1, 8888),))
    assert "--network torchrig-demo-net" in " ".join(docker().run_argv(spec))
    assert "--network slirp4netns:port_handler=slirp4netns" in " ".join(podman().run_argv(spec))
    assert docker().bridge_networks and not podman().bridge_networks
