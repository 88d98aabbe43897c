"""`torchrig run / jobs / stop / logs JOB` against the RecordingEngine: argument handling,
the engine calls each makes, and how states and errors reach a person."""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.golden_util import GOLDEN, assert_golden
from torchrig.cli.main import main
from torchrig.compat.model import load_compat
from torchrig.compat.resolve import resolve
from torchrig.engine import RecordingEngine
from torchrig.engine.base import RunSpec
from torchrig.engine.docker import DockerEngine
from torchrig.host.facts import Driver, Engine, Gpu, HostFacts, System
from torchrig.jobs.files import write_json
from torchrig.jobs.launch import JobRequest, fresh_run, runner_argv, stop_job
from torchrig.jobs.state import read_job
from torchrig.launch.session import Session
from torchrig.spec.load import parse_spec, spec_digest

IMAGE = "torchrig/demo:cu130-0123456789ab"
SPEC = (
    '[project]\nname = "demo"\n[torch]\nversion = "2.13.0"\n'
    '[user]\nname = "ada"\nuid = 4242\ngid = 4343\n'
)
GPU_HOST = HostFacts(
    system=System(arch="x86_64", cpus=64, memory_bytes=512 << 30, user="ada", uid=4242, gid=4343),
    driver=Driver(version="580.159.04", cuda="13.0"),
    gpus=[Gpu(index=i, name="NVIDIA H100 80GB HBM3", cc="9.0", uuid=f"GPU-{i}") for i in range(2)],
    engines=[Engine(name="docker", path="/usr/bin/docker", reachable=True, nvidia_runtime=True)],
)
CPU_HOST = HostFacts(
    system=System(arch="x86_64", cpus=2, memory_bytes=24 << 30, user="ada", uid=4242, gid=4343),
    engines=[Engine(name="docker", path="/usr/bin/docker", reachable=True)],
)


class JobEngine(RecordingEngine):
    """Acts as the runner would: `runner --job-dir` writes job.json in the host workspace,
    `--signal TERM` makes the job exit 0 (unless `ignore_term`), `--probe` says alive."""

    def __init__(self, workspace: Path) -> None:
        super().__init__()
        self.workspace = workspace
        self.ignore_term = False
        self.exec_handler = self.answer

    def host_dir(self, cmd: Sequence[str]) -> Path:
        container_dir = cmd[list(cmd).index("--job-dir") + 1]
        return self.workspace / container_dir.removeprefix("/workspace/")

    def start(self, cmd: Sequence[str]) -> None:
        job_dir = self.host_dir(cmd)
        job_dir.mkdir(parents=True)
        meta = json.loads(cmd[list(cmd).index("--meta") + 1])
        command = list(cmd[list(cmd).index("--") + 1 :])
        record = {**meta, "command": command, "pid": 7, "pgid": 7, "started": "now"}
        write_json(job_dir / "job.json", record)
        (job_dir / "output.log").write_text("step 1\nstep 2\n")

    def answer(self, container: str, cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
        if "--probe" in cmd:
            names = [Path(d).name for d in cmd[list(cmd).index("--probe") + 1 :]]
            found = {n: {"runner": True, "job": True} for n in names}
            return subprocess.CompletedProcess(list(cmd), 0, json.dumps(found), "")
        if "--signal" in cmd:
            name = cmd[-1]
            if name == "KILL" or not self.ignore_term:
                record = {"returncode": 0, "signal": None} if name == "TERM" else {}
                if name == "KILL":
                    record = {"returncode": None, "signal": "SIGKILL"}
                write_json(self.host_dir(cmd) / "exit.json", record)
            return subprocess.CompletedProcess(list(cmd), 0, "", "")
        self.start(cmd)
        return subprocess.CompletedProcess(list(cmd), 0, "", "")

    def run(self, spec: RunSpec) -> str:
        cid = super().run(spec)
        if "torchrig.jobs.runner" in spec.command:
            self.start(spec.command)
        return cid


def _session(tmp_path: Path, host: HostFacts = GPU_HOST, spec_text: str = SPEC) -> Session:
    spec_path = tmp_path / "torchrig.toml"
    spec_path.write_text(spec_text)
    spec = parse_spec(spec_text)
    compat = load_compat()
    return Session(spec_path, spec, spec_digest(spec), host, compat, resolve(spec, host, compat))


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[JobEngine, list[Session]]:
    engine = JobEngine(tmp_path)
    engine.add_image(IMAGE)
    sessions = [_session(tmp_path)]
    monkeypatch.setattr("torchrig.cli.common.session_from", lambda args: sessions[0])
    monkeypatch.setattr("torchrig.cli.common.project_from", lambda args: sessions[0])
    monkeypatch.setattr("torchrig.launch.session.engine_for", lambda s, name: engine)

    class Built:
        tag = IMAGE

    monkeypatch.setattr("torchrig.launch.up.build", lambda *a, **k: Built())
    return engine, sessions


def up(engine: JobEngine) -> None:
    user = {"TORCHRIG_UID": "1000", "TORCHRIG_GID": "1000"}
    engine.run(RunSpec(image=IMAGE, name="torchrig-demo", env=user))


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_run_starts_the_runner_detached_as_the_user(
    setup: tuple[JobEngine, list[Session]], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    engine, _ = setup
    up(engine)
    code, out, err = cli(
        capsys, "run", "--json", "--name", "exp1", "--", "python", "train.py", "--", "x"
    )
    assert code == 0, err
    started = json.loads(out)
    assert started["id"] == "exp1" and started["container"] == "torchrig-demo"
    assert started["command"] == ["python", "train.py", "--", "x"]  # a later -- is the job's
    call = engine.called("exec")[-1]
    assert call.kwargs["detach"] is True
    assert call.kwargs["user"] == "4242:4343" and call.kwargs["workdir"] == "/workspace"
    argv = call.args[1]
    assert argv[:5] == [
        "python",
        "-m",
        "torchrig.jobs.runner",
        "--job-dir",
        "/workspace/.torchrig/jobs/exp1",
    ]
    assert argv[-5:] == ["--", "python", "train.py", "--", "x"]
    assert (tmp_path / ".torchrig/jobs/exp1/job.json").is_file()


def test_run_names_a_job_after_the_program_and_the_time(
    setup: tuple[JobEngine, list[Session]], capsys: pytest.CaptureFixture[str]
) -> None:
    engine, _ = setup
    up(engine)
    code, _, err = cli(capsys, "run", "--", "python", "-u", "train.py")
    assert code == 0, err
    assert err.startswith("started job train-20") and "torchrig logs train-20" in err


def test_run_a_recipe_with_gpus_and_resume(
    setup: tuple[JobEngine, list[Session]], capsys: pytest.CaptureFixture[str]
) -> None:
    engine, _ = setup
    up(engine)
    code, out, err = cli(
        capsys, "run", "--json", "--gpus", "2", "--resume", "causal-lm", "--preset", "tiny"
    )
    assert code == 0, err
    assert json.loads(out)["id"].startswith("causal-lm-")
    call = engine.called("exec")[-1]
    argv = call.args[1]
    assert argv[argv.index("--gpus") + 1] == "2"
    assert argv[argv.index("--") + 1 :] == [
        "python",
        "-m",
        "torchrig.recipes.causal_lm",
        "--preset",
        "tiny",
        "--resume",
    ]
    assert call.kwargs["env"] == {"TORCHRIG_RESUME": "1"}
    assert json.loads(argv[argv.index("--meta") + 1])["recipe"] == "causal-lm"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("run",), "name a recipe or give a command after --"),
        (("run", "--"), "no command after --"),
        (
            ("run", "nope"),
            "unknown recipe 'nope' (recipes: causal-lm, text-classify, image-classify)",
        ),
        (("run", "--gpus", "3", "--", "python", "t.py"), "--gpus 3 asks for more GPUs than"),
        (("run", "--name", "a/b", "--", "true"), "job name 'a/b' is not allowed"),
        (("logs", "nope"), "no job 'nope' (latest: none yet)"),
        (("stop", "nope"), "no job 'nope'"),
        (("stop", "--timeout", "0", "x"), "--timeout 0 is not a positive number"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    setup: tuple[JobEngine, list[Session]],
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    says: str,
) -> None:
    up(setup[0])
    code, _, err = cli(capsys, *args)
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err


def test_gpus_on_a_cpu_host_and_no_running_workbench(
    setup: tuple[JobEngine, list[Session]], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    engine, sessions = setup
    sessions[0] = _session(tmp_path, CPU_HOST)
    code, _, err = cli(capsys, "run", "--", "python", "t.py")
    assert code == 2 and "torchrig-demo is not running" in err and "--fresh" in err
    up(engine)
    code, _, err = cli(capsys, "run", "--gpus", "1", "--", "python", "t.py")
    assert code == 2 and "more GPUs than the workbench has (0;" in err
    assert not engine.called("exec")


def test_run_fresh_makes_a_container_of_its_own(
    setup: tuple[JobEngine, list[Session]], capsys: pytest.CaptureFixture[str]
) -> None:
    engine, _ = setup
    code, out, err = cli(capsys, "run", "--json", "--fresh", "--name", "f1", "--", "python", "t.py")
    assert code == 0, err
    assert json.loads(out)["container"] == "torchrig-demo-job-f1"
    spec = engine.called("run")[-1].args[0]
    assert spec.remove and not spec.ports and spec.no_healthcheck
    assert spec.env["TORCHRIG_SERVICES"] == "" and spec.command[0] == "--"
    assert spec.gpus == "all" and "no-new-privileges:true" in spec.security_opt
    assert not engine.called("exec")


def test_fresh_run_plan_golden(tmp_path: Path) -> None:
    session = _session(tmp_path)
    request = JobRequest(command=("python", "train.py"), name="train", gpus=2, fresh=True)
    argv = runner_argv("train-20260301-120005", request, "torchrig-demo-job-train-20260301-120005")
    plan = fresh_run(
        session,
        IMAGE,
        Path("/tmp"),
        "torchrig-demo-job-train-20260301-120005",
        argv,
        request,
        "train-20260301-120005",
    )
    rendered = DockerEngine(runner=None).run_argv(plan)
    assert_golden(
        GOLDEN / "jobs" / "fresh-run.docker.txt",
        shlex.join(rendered).replace(" --", " \\\n  --") + "\n",
    )


def test_stop_reports_how_the_job_ended(
    setup: tuple[JobEngine, list[Session]], capsys: pytest.CaptureFixture[str]
) -> None:
    engine, _ = setup
    up(engine)
    cli(capsys, "run", "--name", "s1", "--", "python", "t.py")
    code, out, err = cli(capsys, "stop", "--json", "s1")
    assert code == 0, err
    stopped = json.loads(out)
    assert stopped["state"] == "exited 0" and stopped["forced"] is False
    signal_call = engine.called("exec")[-1].args[1]
    assert signal_call[-2:] == ["--signal", "TERM"]
    code, _, err = cli(capsys, "stop", "s1")
    assert code == 2 and "job s1 has already ended (exited 0)" in err


def test_stop_kills_after_the_timeout(tmp_path: Path) -> None:
    engine = JobEngine(tmp_path)
    engine.add_image(IMAGE)
    up(engine)
    engine.ignore_term = True
    engine.start(runner_argv("k1", JobRequest(("sleep", "9"), "k1"), "torchrig-demo"))
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    job = read_job(tmp_path / ".torchrig/jobs/k1")
    stopped = stop_job(_session(tmp_path), engine, job, 5.0, clock=lambda: now[0], sleep=sleep)
    assert stopped.forced and stopped.state == "killed"
    assert 5.0 <= stopped.seconds < 5.5
    assert [c.args[1][-1] for c in engine.called("exec")] == ["TERM", "KILL"]
    assert "did not end within 5 s: sent SIGKILL" in stopped.notes[0]


def test_stop_of_a_job_whose_container_is_gone(
    setup: tuple[JobEngine, list[Session]], capsys: pytest.CaptureFixture[str]
) -> None:
    engine, _ = setup
    up(engine)
    cli(capsys, "run", "--name", "g1", "--", "python", "t.py")
    engine.remove("torchrig-demo", force=True)
    code, _, err = cli(capsys, "stop", "g1")
    assert code == 2 and "job g1 was lost: its container torchrig-demo is gone" in err


def test_jobs_lists_states_and_logs_shows_output(
    setup: tuple[JobEngine, list[Session]], capsys: pytest.CaptureFixture[str]
) -> None:
    engine, _ = setup
    up(engine)
    cli(capsys, "run", "--name", "a1", "--", "python", "a.py")
    cli(capsys, "run", "--name", "b1", "--", "python", "b.py")
    cli(capsys, "stop", "b1")
    code, out, _ = cli(capsys, "jobs", "--json")
    assert code == 0
    assert {j["id"]: j["state"] for j in json.loads(out)} == {"a1": "running", "b1": "exited 0"}
    code, out, _ = cli(capsys, "jobs")
    assert out.splitlines()[0].split() == ["JOB", "STATE", "STARTED", "COMMAND"]
    assert "a1" in out and "python a.py" in out
    engine.stop("torchrig-demo")
    code, out, _ = cli(capsys, "jobs", "--json")
    assert {j["id"]: j["state"] for j in json.loads(out)}["a1"] == "lost"
    code, out, _ = cli(capsys, "logs", "a1")
    assert code == 0 and out == "step 1\nstep 2\n"
