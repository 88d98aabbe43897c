"""The exporter's output, parsed back with prometheus-client's own parser: DCGM's names,
units and labels for the GPU readings, MIG instances, readings a board does not support
left out (not zeroed), no GPU with a reason, and every job's training metrics and state
read from the files the runner and training core write."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from torchrig.monitor.exporter import registry_for
from torchrig.monitor.gpu import Reader

MIB = 1 << 20


class NotSupported(Exception):
    pass


class FakeNvml:
    """Two GPUs: 0 a plain H100 running pid 4242, 1 an A100 in MIG mode with one instance.
    GPU 1 has no power reading (NotSupported), as some boards do."""

    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_MEMORY_ERROR_TYPE_CORRECTED = 0
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
    NVML_VOLATILE_ECC = 0

    def __init__(self, fail_init: Exception | None = None) -> None:
        self.fail_init = fail_init

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise self.fail_init

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.54.15"

    def nvmlDeviceGetHandleByIndex(self, i: int) -> str:
        return f"h{i}"

    def nvmlDeviceGetName(self, h: str) -> bytes:
        return {"h0": b"NVIDIA H100 80GB HBM3", "h1": b"NVIDIA A100-SXM4-40GB",
                "h1/0": b"NVIDIA A100-SXM4-40GB MIG 3g.20gb"}[h]  # fmt: skip

    def nvmlDeviceGetUUID(self, h: str) -> str:
        return {"h0": "GPU-aaaa", "h1": "GPU-bbbb", "h1/0": "MIG-cccc"}[h]

    def nvmlDeviceGetUtilizationRates(self, h: str) -> Any:
        if h != "h0":
            raise NotSupported()
        return SimpleNamespace(gpu=87, memory=41)

    def nvmlDeviceGetMemoryInfo(self, h: str) -> Any:
        return {"h0": SimpleNamespace(used=30 * 1024 * MIB, total=80 * 1024 * MIB),
                "h1": SimpleNamespace(used=1024 * MIB, total=40 * 1024 * MIB),
                "h1/0": SimpleNamespace(used=512 * MIB, total=20 * 1024 * MIB)}[h]  # fmt: skip

    def nvmlDeviceGetPowerUsage(self, h: str) -> int:
        if h != "h0":
            raise NotSupported()
        return 612_500  # mW

    def nvmlDeviceGetEnforcedPowerLimit(self, h: str) -> int:
        return 700_000

    def nvmlDeviceGetTemperature(self, h: str, kind: int) -> int:
        return 64

    def nvmlDeviceGetClockInfo(self, h: str, kind: int) -> int:
        return 1980 if kind == self.NVML_CLOCK_SM else 2619

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h: str) -> int:
        return 0x4 | 0x20  # sw power cap, sw thermal

    def nvmlDeviceGetTotalEccErrors(self, h: str, kind: int, counter: int) -> int:
        return 3 if kind == 0 else 0

    def nvmlDeviceGetComputeRunningProcesses(self, h: str) -> list[Any]:
        if h == "h0":
            return [SimpleNamespace(pid=os.getpid(), usedGpuMemory=29 * 1024 * MIB)]
        if h == "h1/0":
            return [SimpleNamespace(pid=999_999, usedGpuMemory=None)]
        return []

    def nvmlDeviceGetMigMode(self, h: str) -> tuple[int, int]:
        return (1, 1) if h == "h1" else (0, 0)

    def nvmlDeviceGetMaxMigDeviceCount(self, h: str) -> int:
        return 2

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h: str, i: int) -> str:
        if i == 1:
            raise NotSupported()  # an empty slot
        return f"{h}/{i}"

    def nvmlDeviceGetGpuInstanceId(self, h: str) -> int:
        return 2


def scrape(workspace: Path, nvml: FakeNvml, now: float = 2_000_000_000.0) -> dict[str, Any]:
    registry = registry_for(workspace, Reader(nvml), host="node1", clock=lambda: now)
    text = generate_latest(registry).decode()
    found: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def one(found: dict[str, Any], name: str, **labels: str) -> float:
    hits = [v for lab, v in found.get(name, []) if all(lab.get(k) == w for k, w in labels.items())]
    assert len(hits) == 1, (name, labels, found.get(name))
    return float(hits[0])


def test_gpu_readings_carry_dcgm_names_units_and_labels(tmp_path: Path) -> None:
    found = scrape(tmp_path, FakeNvml())
    h100 = {"gpu": "0", "UUID": "GPU-aaaa", "device": "nvidia0",
            "modelName": "NVIDIA H100 80GB HBM3", "Hostname": "node1"}  # fmt: skip
    assert one(found, "DCGM_FI_DEV_GPU_UTIL", **h100) == 87
    assert one(found, "DCGM_FI_DEV_MEM_COPY_UTIL", **h100) == 41
    assert one(found, "DCGM_FI_DEV_FB_USED", **h100) == 30 * 1024  # MiB, as DCGM
    assert one(found, "DCGM_FI_DEV_FB_FREE", **h100) == 50 * 1024
    assert one(found, "DCGM_FI_DEV_POWER_USAGE", **h100) == 612.5  # W
    assert one(found, "torchrig_gpu_power_limit_watts", **h100) == 700
    assert one(found, "DCGM_FI_DEV_GPU_TEMP", **h100) == 64
    assert one(found, "DCGM_FI_DEV_SM_CLOCK", **h100) == 1980
    assert one(found, "DCGM_FI_DEV_MEM_CLOCK", **h100) == 2619
    assert one(found, "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", **h100) == 0x24
    assert one(found, "torchrig_gpu_throttle", reason="sw_power_cap", **h100) == 1
    assert one(found, "torchrig_gpu_throttle", reason="hw_slowdown", **h100) == 0
    assert one(found, "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", **h100) == 3
    assert one(found, "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", **h100) == 0
    assert one(found, "torchrig_gpu_process_memory_bytes", pid=str(os.getpid()), **h100) == (
        29 * 1024 * MIB
    )
    assert one(found, "torchrig_gpu_metrics_available") == 1


def test_mig_instances_are_listed_and_unsupported_readings_left_out(tmp_path: Path) -> None:
    found = scrape(tmp_path, FakeNvml())
    parent = {"gpu": "1", "UUID": "GPU-bbbb", "GPU_I_ID": ""}
    instance = {"gpu": "1", "UUID": "MIG-cccc", "GPU_I_ID": "2", "GPU_I_PROFILE": "3g.20gb"}
    assert one(found, "DCGM_FI_DEV_FB_USED", **instance) == 512
    assert one(found, "DCGM_FI_DEV_FB_USED", **parent) == 1024
    # No power or utilisation reading on GPU 1: no series, rather than a made-up 0.
    assert [lab["gpu"] for lab, _ in found["DCGM_FI_DEV_POWER_USAGE"]] == ["0"]
    assert [lab["gpu"] for lab, _ in found["DCGM_FI_DEV_GPU_UTIL"]] == ["0"]
    # A process NVML reports without its memory (some MIG setups) has no series either.
    assert all(lab["gpu"] == "0" for lab, _ in found["torchrig_gpu_process_memory_bytes"])


def test_no_gpu_says_why_and_still_exports_the_jobs(tmp_path: Path) -> None:
    found = scrape(tmp_path, FakeNvml(fail_init=RuntimeError("NVML Shared Library Not Found")))
    ((labels, value),) = found["torchrig_gpu_metrics_available"]
    assert value == 0 and "NVML Shared Library Not Found" in labels["reason"]
    assert "DCGM_FI_DEV_GPU_UTIL" not in found
    assert "torchrig_exporter_collect_seconds" in found


def write_job(ws: Path, job: str, run: str, *, exit: dict[str, Any] | None = None,
              pid: int | None = None) -> Path:  # fmt: skip
    job_dir = ws / ".torchrig" / "jobs" / job
    job_dir.mkdir(parents=True)
    record = {"id": job, "started": f"2026-12-07T00:00:0{len(job) % 10}+00:00",
              "pid": pid or os.getpid(), "pid_start": None, "runner_pid": pid or os.getpid(),
              "runner_start": None, "command": ["python", "train.py"]}  # fmt: skip
    (job_dir / "job.json").write_text(json.dumps(record))
    if exit is not None:
        (job_dir / "exit.json").write_text(json.dumps(exit))
    # The path as the job saw it inside the container: mapped onto this workspace.
    (job_dir / "run.json").write_text(json.dumps({"run": f"/workspace/{run}"}))
    return job_dir


def write_run(ws: Path, run: str, lines: list[dict[str, Any]], steps: int = 100) -> Path:
    folder = ws / run
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"steps": steps}))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    ckpt = folder / "checkpoints" / "step-00000040"
    ckpt.mkdir(parents=True)
    (ckpt / "manifest.json").write_text(
        json.dumps({"step": 40, "written_at": "2033-05-18T03:33:00Z"})
    )
    return folder


def test_training_metrics_and_states_of_every_job(tmp_path: Path) -> None:
    log = {"loss": 2.5, "lr": 1e-3, "tokens_per_s": 12000.0, "mfu": 0.41, "data_wait": 0.02,
           "interval_s": 2.0, "steps_in_interval": 10, "peak_mem_gib": 1.5}  # fmt: skip
    write_run(tmp_path, "runs/lm", [
        {**log, "step": 40}, {"event": "checkpoint", "step": 40, "seconds": 0.1},
        {**log, "step": 50, "loss": 9.9},  # superseded: the run crashed, resumed from 40
        {"event": "resume", "step": 40},
        {**log, "step": 50, "loss": 2.25},
        {"event": "eval", "step": 50, "val_loss": 2.5, "perplexity": 12.18},
    ])  # fmt: skip
    write_job(tmp_path, "lm-1", "runs/lm")
    write_run(tmp_path, "runs/cls", [{**log, "step": 10, "samples_per_s": 300.0,
                                      "tokens_per_s": None}])  # fmt: skip
    write_job(tmp_path, "cls-1", "runs/cls", exit={"returncode": 1, "signal": None})
    write_job(tmp_path, "old", "runs/none", exit={"returncode": None, "signal": "SIGTERM"})
    write_job(tmp_path, "gone", "runs/none", pid=2**22 + 7)  # no such process: lost

    found = scrape(tmp_path, FakeNvml(), now=2_000_000_000.0)
    assert one(found, "torchrig_train_step", torchrig_job="lm-1") == 50
    assert one(found, "torchrig_train_loss", torchrig_job="lm-1") == 2.25
    assert one(found, "torchrig_train_total_steps", torchrig_job="lm-1") == 100
    assert one(found, "torchrig_train_tokens_per_second", torchrig_job="lm-1") == 12000
    assert one(found, "torchrig_train_mfu_ratio", torchrig_job="lm-1") == 0.41
    assert one(found, "torchrig_train_data_wait_ratio", torchrig_job="lm-1") == 0.02
    assert one(found, "torchrig_train_step_seconds", torchrig_job="lm-1") == 0.2
    assert one(found, "torchrig_train_peak_memory_bytes", torchrig_job="lm-1") == 1.5 * 2**30
    assert one(found, "torchrig_train_eval", torchrig_job="lm-1", metric="perplexity") == 12.18
    assert one(found, "torchrig_train_last_checkpoint_step", torchrig_job="lm-1") == 40
    written = 1_999_999_980.0  # 2033-05-18T03:33:00Z
    assert (
        one(found, "torchrig_train_last_checkpoint_timestamp_seconds", torchrig_job="lm-1")
        == written
    )
    assert one(found, "torchrig_train_checkpoint_age_seconds", torchrig_job="lm-1") == 20
    assert one(found, "torchrig_job_resumes", torchrig_job="lm-1") == 1
    assert one(found, "torchrig_train_samples_per_second", torchrig_job="cls-1") == 300
    states = {lab["torchrig_job"]: lab["state"] for lab, v in found["torchrig_job_state"] if v == 1}
    assert states == {"lm-1": "running", "cls-1": "failed", "old": "stopped", "gone": "lost"}
    # The GPU process is this test's own pid, which is lm-1's recorded pid: lm-1 holds it.
    assert one(found, "torchrig_gpu_process_memory_bytes", gpu="0", torchrig_job="lm-1") > 0


@pytest.mark.parametrize("bad", ["{not json", '["a list"]', ""])
def test_a_torn_or_foreign_file_costs_nothing_but_its_own_series(tmp_path: Path, bad: str) -> None:
    job_dir = write_job(tmp_path, "j", "runs/x")
    (job_dir / "run.json").write_text(bad)
    found = scrape(tmp_path, FakeNvml())
    assert one(found, "torchrig_job_state", torchrig_job="j", state="running") == 1
    assert "torchrig_train_step" not in found


def test_the_workbench_supervises_the_metrics_service() -> None:
    from torchrig.workbench.entrypoint import required_programs
    from torchrig.workbench.env import PORTS, parse_services
    from torchrig.workbench.supervise import Settings, services_for

    assert parse_services({"TORCHRIG_SERVICES": "jupyter,metrics"}) == ("jupyter", "metrics")
    settings = Settings("alice", 4242, 4343, ("metrics",), Path("/k"))
    (service,) = services_for(settings, {"PATH": "/usr/bin"})
    assert service.name == "metrics" and service.cwd == "/workspace"
    assert service.argv == (
        "/opt/venv/bin/python", "-m", "torchrig.monitor.exporter", "--host", "0.0.0.0",
        "--port", str(PORTS["metrics"]), "--workspace", "/workspace",
    )  # fmt: skip
    assert required_programs(("metrics",)) == {"/opt/venv/bin/python": "metrics"}


def test_the_service_without_prometheus_client_says_so_in_one_line() -> None:
    """An image without the package: one line and exit 78 (EX_CONFIG), not a traceback."""
    import subprocess
    import sys

    code = (
        "import runpy, sys; sys.modules['prometheus_client'] = None; sys.argv = ['x']; "
        "runpy.run_module('torchrig.monitor.exporter', run_name='__main__')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 78
    assert done.stderr.count("\n") == 1 and "prometheus-client is not in this image" in done.stderr


def test_jobs_that_ended_over_an_hour_ago_leave_the_metrics(tmp_path: Path) -> None:
    """A workspace keeps every job it ever ran; the series of old ones would pile up."""
    now = 2_000_000_000.0  # 2033-05-18T03:33:20Z
    write_job(tmp_path, "old", "runs/x", exit={"returncode": 0, "ended": "2033-05-18T01:33:20Z"})
    write_job(tmp_path, "recent", "runs/x",
              exit={"returncode": 0, "ended": "2033-05-18T03:23:20Z"})  # fmt: skip
    found = scrape(tmp_path, FakeNvml(), now=now)
    jobs = {lab["torchrig_job"] for lab, _ in found["torchrig_job_state"]}
    assert jobs == {"recent"}
