"""`torchrig top`: one snapshot as JSON for scripts, one view for people, with the GPUs (who
holds them) and the jobs (throughput, MFU, loss, ETA) of a workspace."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from rich.console import Console

from tests.unit.test_monitor_exporter import FakeNvml, write_job, write_run
from torchrig.cli.main import main
from torchrig.monitor.gpu import Reader
from torchrig.monitor.top import render, snapshot

LOG = {"loss": 2.5, "lr": 1e-3, "tokens_per_s": 12000.0, "mfu": 0.41, "data_wait": 0.02,
       "interval_s": 2.0, "steps_in_interval": 10, "peak_mem_gib": 1.5}  # fmt: skip


def workspace(tmp_path: Path) -> Path:
    write_run(tmp_path, "runs/lm", [{**LOG, "step": 40}])
    write_job(tmp_path, "lm-1", "runs/lm")
    return tmp_path


def test_json_snapshot_for_scripts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = workspace(tmp_path)
    assert main(["top", "--workspace", str(ws), "--json"]) == 0
    snap = json.loads(capsys.readouterr().out)
    (job,) = snap["jobs"]
    assert job["id"] == "lm-1" and job["state"] == "running"
    assert job["step"] == 40 and job["total_steps"] == 100
    assert job["throughput"] == 12000 and job["unit"] == "tokens" and job["mfu"] == 0.41
    assert job["eta_seconds"] == pytest.approx(60 * 0.2)  # 60 steps left at 0.2 s a step
    assert snap["gpus"] == [] and "no GPU metrics" in snap["gpu_absent"]


def test_the_view_names_who_holds_each_gpu(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    # The fake GPU 0 runs this process, which is lm-1's recorded pid.
    snap = snapshot(ws, Reader(FakeNvml()), local=True, now=2_000_000_000.0)
    assert snap["gpus"][0]["processes"] == [
        {"pid": os.getpid(), "mem_bytes": 29 * 2**30, "job": "lm-1"}
    ]
    out = io.StringIO()
    Console(file=out, width=160, color_system=None).print(render(snap))
    text = out.getvalue()
    assert "NVIDIA H100 80GB HBM3" in text and "87%" in text and "30.0/80 GiB" in text
    assert "lm-1 29.0 GiB" in text and "sw_power_cap" in text
    assert "1 MIG 3g.20gb" in text
    assert "12,000 tokens/s" in text and "41.0%" in text and "40/100" in text


def test_once_prints_one_view(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["top", "--workspace", str(workspace(tmp_path)), "--once"]) == 0
    out = capsys.readouterr().out
    assert "lm-1" in out and "GPUs: none" in out


def test_a_bad_interval_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["top", "--workspace", str(tmp_path), "--interval", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--interval 0" in err


def _proc(root: Path, pid: int, ppid: int, nspid: str, ns: str) -> None:
    (root / str(pid) / "ns").mkdir(parents=True)
    (root / str(pid) / "status").write_text(f"Name:\tpython\nPPid:\t{ppid}\nNSpid:\t{nspid}\n")
    (root / str(pid) / "ns" / "pid").symlink_to(ns)  # as the kernel shows it: a link


def test_a_gpu_process_is_matched_to_its_job_across_pid_namespaces(tmp_path: Path) -> None:
    """NVML's PIDs are the host's; job.json's are the container's. The host sees a worker
    (host pid 5003, pid 41 in the container) whose parent is the job (host 5002, container
    pid 40); the job recorded pid 40. Another container's pid 40 (host 6001, its own PID
    namespace) is not it."""
    from torchrig.monitor.holders import holders_of

    proc = tmp_path / "proc"
    ours, theirs = "pid:[4026532001]", "pid:[4026532999]"
    _proc(proc, 5001, 1, "5001\t1", ours)  # the workbench's init
    _proc(proc, 5002, 5001, "5002\t40", ours)  # the job (torchrun, say)
    _proc(proc, 5003, 5002, "5003\t41", ours)  # its worker, on the GPU
    _proc(proc, 6001, 1, "6001\t40", theirs)  # pid 40 of another container
    found = holders_of([5003, 6001, 7777], {"lm-1": 40}, proc, pid_ns=ours)
    assert found == {5003: "lm-1"}
    # Where the namespace is unknown, the number alone decides (docs/monitoring.md).
    assert holders_of([6001], {"lm-1": 40}, proc) == {6001: "lm-1"}
