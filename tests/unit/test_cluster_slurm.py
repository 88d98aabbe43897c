"""The Slurm and Apptainer files: golden per runtime, and the rules they follow (digest
only, torchrun for python scripts and modules, bad input one line with exit 2)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.golden_util import GOLDEN, assert_golden
from torchrig.cli.main import main
from torchrig.cluster.apptainer import render_definition
from torchrig.cluster.slurm import enroot_ref, render_sbatch
from torchrig.cluster.target import ClusterJob, torchrun_command
from torchrig.spec.cluster import Cluster

DIGEST = "sha256:" + "0123456789abcdef" * 4
IMAGE = f"registry.example:5000/team/demo@{DIGEST}"
RECIPE = (
    "python", "-m", "torchrig.recipes.causal_lm", "--preset", "tiny",
    "--tokens", "/shared/demo/corpus.bin", "--out", "/shared/demo/runs/tiny", "--resume",
)  # fmt: skip


def _job(runtime: str, gpus: int = 8, command: tuple[str, ...] = RECIPE) -> ClusterJob:
    cluster = Cluster.model_validate(
        {
            "nodes": 2,
            "gpus_per_node": gpus,
            "time_limit": "2:00:00",
            "shared_dir": "/shared/demo",
            "socket_ifname": "ib0",
            "env": {"NCCL_IB_HCA": "mlx5"},
            "slurm": {
                "partition": "gpu",
                "account": "ml",
                "runtime": runtime,
                "extra": ["--constraint=h100"],
            },
        }
    )
    return ClusterJob(
        project="demo",
        image=IMAGE,
        command=command,
        cluster=cluster,
        nodes=2,
        gpus_per_node=gpus,
        runtime=runtime,
        name="causal-lm-20261207-010000",
        resume_flag=command is RECIPE,
    )


@pytest.mark.parametrize("runtime", ["pyxis", "apptainer", "podman", "docker"])
def test_sbatch_per_runtime_is_golden_and_valid_bash(runtime: str, tmp_path: Path) -> None:
    text = render_sbatch(_job(runtime))
    assert_golden(GOLDEN / "cluster" / f"{runtime}.sbatch", text)
    script = tmp_path / "job.sbatch"
    script.write_text(text)
    checked = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert "@sha256:" in text and ":latest" not in text
    assert "--rdzv-backend=c10d" in text and "--nproc-per-node=8" in text


def test_cpu_job_runs_one_process_per_node_without_gpu_flags() -> None:
    text = render_sbatch(_job("podman", gpus=0))
    assert "--nproc-per-node=1" in text
    assert "--gpus" not in text and "nvidia.com/gpu" not in text


def test_apptainer_definition_is_golden() -> None:
    assert_golden(GOLDEN / "cluster" / "torchrig.def", render_definition(_job("apptainer")))


def test_a_plain_command_runs_as_given_and_never_requeues_itself() -> None:
    text = render_sbatch(_job("podman", gpus=0, command=("python", "-c", "exit(3)")))
    assert "torchrun --" not in text and "python -c 'exit(3)'" in text
    assert "scontrol requeue" not in text
    # srun's code is its tasks' highest: killing the other node would turn 3 into 137.
    assert "--kill-on-bad-exit" not in text


def test_torchrun_takes_modules_and_scripts_only() -> None:
    assert torchrun_command(("python", "-m", "a.b", "x")) == ("-m", "a.b", "x")
    assert torchrun_command(("python3", "train.py", "--lr", "1")) == ("train.py", "--lr", "1")
    assert torchrun_command(("python", "-c", "print()")) is None
    assert torchrun_command(("bash", "run.sh")) is None


def test_enroot_names_the_registry_with_a_hash() -> None:
    assert enroot_ref(IMAGE) == f"registry.example:5000#team/demo@{DIGEST}"
    assert enroot_ref(f"team/demo@{DIGEST}") == f"team/demo@{DIGEST}"


SPEC = """[project]
name = "demo"

[cluster]
nodes = 2
shared_dir = "/shared/demo"

[cluster.slurm]
runtime = "podman"
"""


@pytest.mark.parametrize(
    ("spec", "args", "says"),
    [
        (SPEC, ["--image", "registry.example/demo:latest"], "is a tag"),
        ('[project]\nname = "demo"\n', ["--image", IMAGE], "no [cluster] section"),
        (SPEC.replace("nodes = 2", 'engine = "kubernetes"'), ["--image", IMAGE],
         "not slurm"),
        (SPEC, ["--image", IMAGE, "--nodes", "0"], "--nodes 0 is less than 1"),
    ],
)  # fmt: skip
def test_bad_export_is_one_line_and_exit_2(
    spec: str, args: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "torchrig.toml").write_text(spec)
    (tmp_path / "torchrig.images").write_text(
        f'[[pushed]]\nimage = "torchrig/demo:cpu-0123456789ab"\nref = "{IMAGE}"\n'
        'tag = "registry.example:5000/team/demo:cpu"\nengine = "podman"\n'
    )
    code = main(
        ["export", "slurm", "--spec", str(tmp_path / "torchrig.toml"), "--stdout", *args,
         "--", "python", "-c", "pass"]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and says in err[0] and "Traceback" not in err[0]


def test_export_with_a_digest_writes_the_script(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "torchrig.toml").write_text(SPEC)
    out = tmp_path / "job.sbatch"
    code = main(
        ["export", "slurm", "--spec", str(tmp_path / "torchrig.toml"), "--image", IMAGE,
         "-o", str(out), "--name", "t1", "causal-lm", "--preset", "tiny", "--out", "/shared/r"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    text = out.read_text()
    assert f"TORCHRIG_IMAGE={IMAGE}" in text and "#SBATCH --job-name=t1" in text
    assert "-m torchrig.recipes.causal_lm --preset tiny --out /shared/r --resume" in text


def test_the_node_check_names_the_missing_node_and_the_causes() -> None:
    from torchrig.cluster.nodecheck import explain, missing_nodes

    missing = missing_nodes(["node1", "node2", "node3"], ["node1", "node3"])
    assert missing == ["node2"]
    line = explain(missing, "10.0.0.1:29500", 60)
    assert line.startswith("node(s) node2 did not join the rendezvous at 10.0.0.1:29500")
    for cause in ("firewall", "NCCL_SOCKET_IFNAME", "InfiniBand", "memlock"):
        assert cause in line


def test_verify_nodes_runs_the_check_once_per_node_without_torchrun() -> None:
    import dataclasses

    job = dataclasses.replace(
        _job("podman", gpus=0, command=("python", "-m", "torchrig.cluster.nodecheck")),
        torchrun=False,
    )
    text = render_sbatch(job)
    assert "torchrun --" not in text and "python -m torchrig.cluster.nodecheck" in text
    assert "--env SLURMD_NODENAME" in text and "--env TORCHRIG_NODE_ADDRS" in text


def test_follow_prints_every_attempt_and_returns_the_exit_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A requeued job goes back to PENDING, and a busy slurmctld may not answer: following
    goes on to the last attempt's end."""
    from torchrig.cluster import submit

    states = iter(["RUNNING", "UNANSWERED", "PENDING", "RUNNING", "COMPLETED"])
    log = tmp_path / "output.log"

    def state(job_id: int) -> submit.SlurmState:
        current = next(states)
        with log.open("a") as out:
            out.write(f"{current}\n")
        if current == "COMPLETED":
            (tmp_path / "exit").write_text("3\n")
        if current == "UNANSWERED":
            return submit.UNANSWERED
        return submit.SlurmState(state=current, exit_code=0, restarts=1)

    monkeypatch.setattr(submit, "job_state", state)
    seen: list[str] = []
    code = submit.follow(7, tmp_path, out=seen.append, sleep=lambda _: None)
    assert code == 3
    assert "".join(seen) == "RUNNING\nUNANSWERED\nPENDING\nRUNNING\nCOMPLETED\n"


@pytest.mark.parametrize("seconds", ["0", "-5", "7200", "nan"])
def test_verify_nodes_refuses_a_bad_join_timeout(
    seconds: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "torchrig.toml").write_text(SPEC)
    code = main(
        ["verify", "--nodes", "--spec", str(tmp_path / "torchrig.toml"),
         f"--join-timeout={seconds}"]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and "--join-timeout" in err[0] and "Traceback" not in err[0]
