"""The in-image job runner, run for real as a subprocess on this machine (it is stdlib only).

Signal forwarding, the exit record, output capture, and a job that outlives the client
that started it (kill -9 of the runner's parent).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from torchrig.jobs.runner import descendants, job_argv, job_env, signal_targets

SRC = str(Path(__file__).resolve().parents[2] / "src")
JOB = textwrap.dedent(
    """\
    import signal, sys, time
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    print("hello", flush=True)
    print("to stderr", file=sys.stderr, flush=True)
    n = 0
    while not stop:
        n += 1
        print("step", n, flush=True)
        time.sleep(0.05)
    print("saved", flush=True)
    sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    """
)


def runner(*args: str) -> list[str]:
    return [sys.executable, "-m", "torchrig.jobs.runner", *args]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC}


def wait_for(check: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "job.py"
    path.write_text(JOB)
    return path


def read(path: Path) -> dict[str, object]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def test_runs_the_job_in_its_own_group_and_records_its_exit(tmp_path: Path, script: Path) -> None:
    job_dir = tmp_path / "jobs" / "demo-1"
    proc = subprocess.Popen(
        runner(
            "--job-dir",
            str(job_dir),
            "--meta",
            '{"container": "wb"}',
            "--",
            sys.executable,
            str(script),
            "3",
        ),
        env=env(),
    )
    wait_for(
        lambda: (job_dir / "job.json").exists() and "step 3" in (job_dir / "output.log").read_text()
    )
    job = read(job_dir / "job.json")
    assert job["status"] == "running" and job["container"] == "wb" and job["id"] == "demo-1"
    assert job["pgid"] == job["pid"] != proc.pid
    assert os.getpgid(int(job["pid"])) == job["pid"]  # type: ignore[call-overload]
    proc.send_signal(signal.SIGTERM)  # forwarded to the job, which saves and exits 3
    assert proc.wait(timeout=20) == 3
    ended = read(job_dir / "exit.json")
    assert ended["returncode"] == 3 and ended["signal"] is None
    assert ended["signals_received"] == ["SIGTERM"]
    assert read(job_dir / "job.json")["status"] == "exited"
    output = (job_dir / "output.log").read_text()
    assert output.startswith("hello\n") and "to stderr\n" in output and output.endswith("saved\n")


def test_a_killed_job_is_recorded_as_killed(tmp_path: Path) -> None:
    job_dir = tmp_path / "j"
    proc = subprocess.Popen(runner("--job-dir", str(job_dir), "--", "sleep", "30"), env=env())
    wait_for(lambda: (job_dir / "job.json").exists())
    done = subprocess.run(
        runner("--job-dir", str(job_dir), "--signal", "KILL"),
        env=env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert proc.wait(timeout=20) == 128 + 9
    assert read(job_dir / "exit.json")["signal"] == "SIGKILL"
    again = subprocess.run(
        runner("--job-dir", str(job_dir), "--signal", "TERM"),
        env=env(),
        capture_output=True,
        text=True,
    )
    assert again.returncode == 3 and "has ended" in again.stderr


def test_the_job_outlives_a_killed_client_and_stops_on_signal(tmp_path: Path, script: Path) -> None:
    """The client (here a shell) that started the runner is killed with -9: the job goes
    on, and --signal TERM later stops it, its exit recorded by the runner."""
    job_dir = tmp_path / "jobs" / "survivor"
    argv = " ".join(runner("--job-dir", str(job_dir), "--", sys.executable, str(script)))
    client = subprocess.Popen(["sh", "-c", f"{argv} & wait"], env=env())
    wait_for(lambda: (job_dir / "job.json").exists())
    client.kill()
    client.wait(timeout=10)
    log = job_dir / "output.log"
    count = log.read_text().count("step")
    wait_for(lambda: log.read_text().count("step") > count + 5)
    done = subprocess.run(
        runner("--job-dir", str(job_dir), "--signal", "TERM"),
        env=env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    wait_for(lambda: (job_dir / "exit.json").exists())
    assert read(job_dir / "exit.json")["returncode"] == 0
    assert log.read_text().endswith("saved\n")


def test_a_job_whose_runner_died_reads_as_such(tmp_path: Path, script: Path) -> None:
    job_dir = tmp_path / "jobs" / "orphan"
    proc = subprocess.Popen(
        runner("--job-dir", str(job_dir), "--", sys.executable, str(script)), env=env()
    )
    wait_for(lambda: (job_dir / "job.json").exists())
    proc.kill()
    proc.wait(timeout=10)

    def probe() -> dict[str, bool]:
        done = subprocess.run(
            runner("--probe", str(job_dir)), env=env(), capture_output=True, text=True
        )
        return json.loads(done.stdout)["orphan"]  # type: ignore[no-any-return]

    assert probe() == {"runner": False, "job": True}
    subprocess.run(runner("--job-dir", str(job_dir), "--signal", "TERM"), env=env(), check=True)
    wait_for(lambda: probe() == {"runner": False, "job": False})
    assert not (job_dir / "exit.json").exists()


def test_a_command_that_cannot_start_exits_127_with_a_record(tmp_path: Path) -> None:
    job_dir = tmp_path / "j"
    done = subprocess.run(runner("--job-dir", str(job_dir), "--", "no-such-program-x"), env=env())
    assert done.returncode == 127
    assert read(job_dir / "exit.json")["returncode"] == 127
    assert "cannot start no-such-program-x" in (job_dir / "output.log").read_text()


def test_an_existing_job_folder_and_bad_usage_are_refused(tmp_path: Path) -> None:
    (tmp_path / "j").mkdir()
    assert (
        subprocess.run(runner("--job-dir", str(tmp_path / "j"), "--", "true"), env=env()).returncode
        == 73
    )
    assert subprocess.run(runner("--job-dir", str(tmp_path / "k")), env=env()).returncode == 64
    assert (
        subprocess.run(
            runner("--job-dir", str(tmp_path / "k"), "--meta", "[]", "--", "true"), env=env()
        ).returncode
        == 64
    )


def test_torchrun_wraps_more_than_one_gpu_only() -> None:
    assert job_argv(["python", "train.py", "--lr", "3"], None) == [
        "python",
        "train.py",
        "--lr",
        "3",
    ]
    assert job_argv(["python", "train.py"], 1) == ["python", "train.py"]
    assert job_argv(["python", "-m", "torchrig.recipes.causal_lm"], 4) == [
        "torchrun",
        "--standalone",
        "--nproc_per_node=4",
        "--no-python",
        "python",
        "-m",
        "torchrig.recipes.causal_lm",
    ]


def test_job_env_shows_the_first_n_gpus(tmp_path: Path) -> None:
    base = {"PATH": "/bin"}
    made = job_env(base, job_id="a", job_dir=tmp_path, gpus=2)
    assert made["CUDA_VISIBLE_DEVICES"] == "0,1" and made["PYTHONUNBUFFERED"] == "1"
    assert made["TORCHRIG_JOB_ID"] == "a"
    picked = job_env(
        {"CUDA_VISIBLE_DEVICES": "GPU-a,GPU-b,GPU-c"}, job_id="a", job_dir=tmp_path, gpus=2
    )
    assert picked["CUDA_VISIBLE_DEVICES"] == "GPU-a,GPU-b"
    assert "CUDA_VISIBLE_DEVICES" not in job_env(base, job_id="a", job_dir=tmp_path, gpus=None)


def test_signal_targets() -> None:
    # pid → (ppid, pgrp): runner 10; job 20 (torchrun) with workers 30, 40 in their own
    # sessions; a DataLoader worker 31 in 30's group.
    procs = {10: (1, 10), 20: (10, 20), 30: (20, 30), 31: (30, 30), 40: (20, 40)}
    plain = {"pid": 20, "pgid": 20}
    torchrun = {**plain, "torchrun": True}
    assert descendants(20, procs) == [30, 31, 40]
    assert signal_targets(plain, signal.SIGTERM, procs) == [20]
    assert signal_targets(torchrun, signal.SIGTERM, procs) == [30, 40]  # not torchrun itself
    assert signal_targets(torchrun, signal.SIGKILL, procs) == [20, 30, 40]
    assert signal_targets(torchrun, signal.SIGTERM, {20: (10, 20)}) == [20]  # no workers yet
