"""What the workbench's metrics service costs: scrape latency and the exporter's CPU share at
one scrape a second, with 8 GPUs' worth of series (a fake NVML shaped like 8 H100s, each with
one training process) and 8 running jobs, each with a metrics.jsonl of --lines records (a
long run: the exporter reads the whole file on every scrape).

The exporter runs in its own process (as the supervisor runs it), serving prometheus-client's
HTTP endpoint; this script scrapes it over HTTP like Prometheus and reads the exporter's CPU
time from /proc. No GPU here: the NVML calls are the fake's (a real NVML call costs more, so
the GPU part of the cost is still open until a run on the lent GPU).

    python benchmarks/monitor_scrape.py [--seconds 60] [--lines 2000 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from _common import summary, write_result

ROOT = Path(__file__).parents[1]
GPUS = 8
GIB = 1 << 30


class Fake8:
    """NVML as 8 H100s report it; pids: one training process per GPU."""

    NVML_TEMPERATURE_GPU, NVML_CLOCK_SM, NVML_CLOCK_MEM = 0, 1, 2
    NVML_MEMORY_ERROR_TYPE_CORRECTED, NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 0, 1
    NVML_VOLATILE_ECC = 0

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlDeviceGetCount(self) -> int:
        return GPUS

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.54.15"

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, h: int) -> str:
        return "NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return f"GPU-{h:08x}-0000-0000-0000-000000000000"

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        return SimpleNamespace(gpu=95, memory=60)

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        return SimpleNamespace(used=70 * GIB, total=80 * GIB)

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return 650_000

    def nvmlDeviceGetEnforcedPowerLimit(self, h: int) -> int:
        return 700_000

    def nvmlDeviceGetTemperature(self, h: int, kind: int) -> int:
        return 70

    def nvmlDeviceGetClockInfo(self, h: int, kind: int) -> int:
        return 1980

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h: int) -> int:
        return 0

    def nvmlDeviceGetTotalEccErrors(self, h: int, kind: int, counter: int) -> int:
        return 0

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[Any]:
        return [SimpleNamespace(pid=self.pids[h], usedGpuMemory=69 * GIB)]

    def nvmlDeviceGetMigMode(self, h: int) -> tuple[int, int]:
        return (0, 0)


def make_workspace(root: Path, lines: int, pids: list[int]) -> None:
    for i in range(GPUS):
        run = root / "runs" / f"lm{i}"
        (run / "checkpoints" / "step-00001000").mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"steps": 100000}))
        (run / "checkpoints" / "step-00001000" / "manifest.json").write_text(
            json.dumps({"step": 1000, "written_at": "2026-12-07T00:00:00Z"})
        )
        rec = {"loss": 2.0, "lr": 3e-4, "grad_norm": 1.0, "tokens_per_s": 400000.0, "mfu": 0.45,
               "peak_mem_gib": 60.0, "data_wait": 0.001, "interval_s": 1.2,
               "steps_in_interval": 10, "elapsed_s": 1.0, "time": 1.8e9}  # fmt: skip
        with (run / "metrics.jsonl").open("w") as out:
            for n in range(lines):
                out.write(json.dumps({"step": 10 * (n + 1), **rec}) + "\n")
                if n % 100 == 99:
                    out.write(json.dumps({"event": "checkpoint", "step": 10 * (n + 1),
                                          "seconds": 2.0, "time": 1.8e9}) + "\n")  # fmt: skip
        job = root / ".torchrig" / "jobs" / f"lm{i}"
        job.mkdir(parents=True)
        record = {"id": f"lm{i}", "pid": pids[i], "started": "2026-12-07T00:00:00+00:00"}
        (job / "job.json").write_text(json.dumps(record))
        (job / "run.json").write_text(json.dumps({"run": str(run)}))


def serve(workspace: Path, port: int, pids: list[int]) -> None:
    from prometheus_client import start_http_server

    from torchrig.monitor.exporter import registry_for
    from torchrig.monitor.gpu import Reader

    start_http_server(port, addr="127.0.0.1", registry=registry_for(workspace, Reader(Fake8(pids))))
    while True:
        time.sleep(3600)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(lines: int, seconds: int) -> dict[str, Any]:
    sleepers = [subprocess.Popen(["sleep", "3600"]) for _ in range(GPUS)]
    pids = [p.pid for p in sleepers]
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp)
        make_workspace(ws, lines, pids)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(ws), str(port),
                                   ",".join(map(str, pids))])  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}/metrics"
            for _ in range(100):
                try:
                    urllib.request.urlopen(url, timeout=5).read()
                    break
                except OSError:
                    time.sleep(0.1)
            latencies, size, series = [], 0, 0
            cpu0, wall0 = cpu_seconds(server.pid), time.monotonic()
            for i in range(seconds):
                began = time.perf_counter()
                body = urllib.request.urlopen(url, timeout=10).read()
                latencies.append(time.perf_counter() - began)
                size = len(body)
                series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
                time.sleep(max(0.0, wall0 + i + 1 - time.monotonic()))  # one scrape a second
            cpu, wall = cpu_seconds(server.pid) - cpu0, time.monotonic() - wall0
        finally:
            server.terminate()
            server.wait()
            for p in sleepers:
                p.kill()
                p.wait()
    return {
        "jobs": GPUS,
        "metrics_jsonl_lines_per_job": lines,
        "metrics_jsonl_mib_per_job": round(lines * 260 / 2**20, 2),
        "scrapes": len(latencies),
        "series": series,
        "body_bytes": size,
        "scrape_latency": summary(latencies),
        "exporter_cpu_share_of_one_core": round(cpu / wall, 4),
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        sys.path.insert(0, str(ROOT / "src"))
        serve(Path(sys.argv[2]), int(sys.argv[3]), [int(p) for p in sys.argv[4].split(",")])
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--lines", type=int, nargs="+", default=[2000, 20000])
    args = parser.parse_args()
    cases = [measure(n, args.seconds) for n in args.lines]
    for case in cases:
        print(json.dumps(case))
    path = write_result("monitor-scrape", {
        "what": "torchrig.monitor.exporter at 1 scrape/s, 8 fake H100s, 8 jobs (CPU only)",
        "gpu_part": "open: NVML calls are a fake's here; no lent GPU measured them",
        "cases": cases,
    })  # fmt: skip
    print(path)


if __name__ == "__main__":
    main()
