"""`torchrig run`, `logs JOB`, `stop`, `jobs` for real, on Docker and Podman.

A small torch script trains a tiny model in the CPU workbench, one line per step; on
SIGTERM it saves a checkpoint (torchrig.train) and exits 0. What a person relies on:
  - the job outlives the client that started it (killed with SIGKILL while following);
  - `torchrig logs JOB -f` follows it; `torchrig stop JOB` leaves a checkpoint that loads,
    and the job ends with exit 0, which `torchrig jobs --json` reports;
  - `--resume` continues from that checkpoint; `--fresh` runs in its own container, which
    is gone when the job ends;
  - bad input is one line and exit 2.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.container.conftest import Timings
from tests.container.workbench import (
    cpu_spec,
    give_to_user,
    torchrig,
    torchrig_argv,
    wait_until,
)

pytestmark = pytest.mark.container

JOB_SCRIPT = """\
import os, time
from pathlib import Path

import torch

from torchrig.train.checkpoint import CheckpointManager
from torchrig.train.signals import StopFlag

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
checkpoints = CheckpointManager(Path("/workspace/ckpt"), keep_last=2)
step = 0
if os.environ.get("TORCHRIG_RESUME") == "1" and (latest := checkpoints.latest()) is not None:
    model.load_state_dict(checkpoints.load(latest, "model"))
    opt.load_state_dict(checkpoints.load(latest, "optimizer"))
    step = latest.step
    print(f"resumed from step {step}", flush=True)
stop = StopFlag().install()
x = torch.randn(256, 16)
y = x.sum(1, keepdim=True)
while not stop.requested:
    loss = torch.nn.functional.mse_loss(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    step += 1
    print(f"step {step} loss {loss.item():.4f}", flush=True)
    time.sleep(0.2)
began = time.monotonic()
checkpoints.save(step, {"model": model.state_dict(), "optimizer": opt.state_dict()})
print(f"saved step {step} in {time.monotonic() - began:.3f} s ({stop.reason})", flush=True)
"""

CHECK_CHECKPOINT = (
    "from torchrig.train.checkpoint import CheckpointManager as M; "
    "m = M('/workspace/ckpt'); c = m.latest(); sd = m.load(c, 'model'); "
    "print(c.step, sorted(sd))"
)


@dataclass
class Bench:
    engine: str
    project: Path

    def cli(self, verb: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return torchrig(verb, "--engine", self.engine, *args, cwd=self.project, check=check)

    def log(self, job: str) -> str:
        path = self.project / ".torchrig" / "jobs" / job / "output.log"
        return path.read_text() if path.exists() else ""

    def steps(self, job: str) -> int:
        return sum(1 for line in self.log(job).splitlines() if line.startswith("step "))

    def jobs(self) -> dict[str, dict[str, object]]:
        return {j["id"]: j for j in json.loads(self.cli("jobs", "--json").stdout)}


@pytest.fixture(scope="module", params=["docker", "podman"])
def bench(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, timings: Timings
) -> Iterator[Bench]:
    engine = request.param
    project = tmp_path_factory.mktemp(f"jobs-{engine}") / f"t-jobs-{engine}"
    project.mkdir()
    port = 18988 if engine == "docker" else 18989
    (project / "torchrig.toml").write_text(cpu_spec(project.name, jupyter_port=port))
    (project / "job.py").write_text(JOB_SCRIPT)
    give_to_user(project, *project.iterdir())
    made = Bench(engine=engine, project=project)
    began = time.monotonic()
    try:
        made.cli("up", "--json")
        timings.append(("up (jobs workbench)", engine, time.monotonic() - began))
        yield made
    finally:
        made.cli("down", "--purge", check=False)


def test_a_job_outlives_its_client_follows_and_stops_with_a_checkpoint(
    bench: Bench, timings: Timings
) -> None:
    job = "train-a"
    client = subprocess.Popen(
        torchrig_argv(
            "run", "--engine", bench.engine, "--name", job, "--follow", "--", "python", "job.py"
        ),
        cwd=bench.project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert client.stdout is not None
        seen = [client.stdout.readline() for _ in range(3)]  # the client follows the output
        assert all(line.startswith("step ") for line in seen), seen
    finally:
        client.kill()  # SIGKILL: no chance to clean up, as when an SSH session drops
        client.wait(timeout=30)
    assert client.returncode == -9
    at_kill = bench.steps(job)
    wait_until(lambda: bench.steps(job) >= at_kill + 5, 30, "the job printing after the kill")
    assert bench.jobs()[job]["state"] == "running"

    before = bench.steps(job)
    logs = bench.cli("logs", job).stdout
    assert logs.count("step ") >= before

    follower = subprocess.Popen(
        torchrig_argv("logs", "--engine", bench.engine, "--tail", "1", "-f", job),
        cwd=bench.project,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        lines = [follower.stdout.readline() for _ in range(4)]
        numbers = [int(line.split()[1]) for line in lines]
        assert numbers == sorted(numbers) and numbers[-1] > before, lines
    finally:
        follower.kill()
        follower.wait(timeout=30)

    began = time.monotonic()
    stopped = json.loads(bench.cli("stop", "--json", job).stdout)
    seconds = time.monotonic() - began
    timings.append(("torchrig stop (job saves a checkpoint)", bench.engine, seconds))
    print(f"\n{bench.engine}: torchrig stop took {seconds:.2f} s; job: {stopped}")
    assert stopped["state"] == "exited 0" and stopped["forced"] is False, stopped
    assert "saved step" in bench.log(job)
    assert bench.jobs()[job]["state"] == "exited 0"

    done = bench.cli("exec", "--", "python", "-c", CHECK_CHECKPOINT)
    step, keys = done.stdout.split(" ", 1)
    assert int(step) >= at_kill + 5 and "0.weight" in keys, done.stdout

    again = bench.cli("stop", job, check=False)
    assert again.returncode == 2 and "already ended" in again.stderr, again.stderr


def test_resume_continues_from_the_latest_checkpoint(bench: Bench) -> None:
    latest = int(bench.cli("exec", "--", "python", "-c", CHECK_CHECKPOINT).stdout.split()[0])
    job = "train-b"
    bench.cli("run", "--name", job, "--resume", "--", "python", "job.py")
    # "resumed from step N" comes first: wait for a line that starts with "step ".
    wait_until(lambda: bench.steps(job) >= 1, 60, "the resumed job's first step")
    assert f"resumed from step {latest}" in bench.log(job)
    first = next(line for line in bench.log(job).splitlines() if line.startswith("step "))
    assert first.split()[1] == str(latest + 1), first
    stopped = json.loads(bench.cli("stop", "--json", job).stdout)
    assert stopped["state"] == "exited 0", stopped


def test_fresh_runs_in_its_own_container_removed_at_the_end(bench: Bench) -> None:
    job = "train-fresh"
    started = json.loads(
        bench.cli("run", "--json", "--fresh", "--name", job, "--", "python", "job.py").stdout
    )
    container = started["container"]
    assert started["fresh"] is True and container.endswith(f"-job-{job}")
    wait_until(lambda: bench.steps(job) >= 2, 60, "the fresh job's steps")
    inspect = subprocess.run(
        [bench.engine, "inspect", "--format", "{{json .NetworkSettings.Ports}}", container],
        capture_output=True,
        text=True,
    )
    assert inspect.returncode == 0 and "HostPort" not in inspect.stdout, inspect.stdout
    stopped = json.loads(bench.cli("stop", "--json", job).stdout)
    assert stopped["state"] == "exited 0", stopped

    def removed() -> bool:
        gone = subprocess.run([bench.engine, "inspect", container], capture_output=True)
        return gone.returncode != 0

    wait_until(removed, 60, f"{container} being removed")
    assert bench.jobs()[job]["state"] == "exited 0"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("run", "--"), "no command after --"),
        (("run", "no-such-recipe"), "unknown recipe"),
        (("run", "--gpus", "2", "--", "python", "job.py"), "more GPUs than the workbench has"),
        (("logs", "no-such-job"), "no job 'no-such-job'"),
        (("stop", "no-such-job"), "no job 'no-such-job'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(bench: Bench, args: tuple[str, ...], says: str) -> None:
    done = bench.cli(*args, check=False)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
