"""The metrics service's NVML series on a real GPU (issue 17): within two scrapes they name
the GPU as NVML does (UUID, model, index) and carry the values NVML reads at the same
moment, the busy process's memory included.

No Prometheus server runs on the lent machine (it has no container engine or network to
install one); the scrape is parsed with prometheus-client's own parser, and a real
Prometheus scrapes the CPU workbench in tests/container/test_monitoring.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parents[2]

# Keeps the GPU busy with ~2 GiB held until killed; says "ready" once it holds it.
BUSY = """
import sys, torch
a = torch.randn(16384, 16384, device="cuda", dtype=torch.bfloat16)
b = torch.empty(2 << 30, dtype=torch.uint8, device="cuda")
torch.cuda.synchronize(); print("ready", flush=True)
while True:
    a = (a @ a).clamp_(-1, 1)
"""


def _samples(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    from prometheus_client.parser import text_string_to_metric_families

    body = urllib.request.urlopen(url, timeout=10).read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return out


def test_nvml_series_match_nvml_within_two_scrapes(tmp_path: Path) -> None:
    import pynvml

    from torchrig.freeport import free_port

    path = os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    busy = subprocess.Popen([sys.executable, "-c", BUSY], stdout=subprocess.PIPE, text=True)
    port = free_port()
    exporter = subprocess.Popen(
        [sys.executable, "-m", "torchrig.monitor.exporter", "--port", str(port),
         "--workspace", str(tmp_path)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert busy.stdout is not None and busy.stdout.readline().strip() == "ready"
        time.sleep(1.0)  # NVML's utilisation is a mean over its last sample period
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        uuid = pynvml.nvmlDeviceGetUUID(handle)
        name = pynvml.nvmlDeviceGetName(handle)
        url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 30
        while True:  # the exporter's port opens after it has started NVML
            try:
                urllib.request.urlopen(url, timeout=5).read()
                break
            except OSError:
                assert exporter.poll() is None, exporter.stdout.read() if exporter.stdout else ""
                assert time.monotonic() < deadline, "the exporter did not answer in 30 s"
                time.sleep(0.2)
        seen: list[str] = []
        for _scrape in range(2):
            series = _samples(url)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            util = pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
            fb_used = [
                (labels, v) for labels, v in series["DCGM_FI_DEV_FB_USED"] if labels["gpu"] == "0"
            ]
            assert len(fb_used) == 1, series["DCGM_FI_DEV_FB_USED"]
            labels, used_mib = fb_used[0]
            assert labels["UUID"] == uuid and labels["modelName"] == name
            assert labels["device"] == "nvidia0"
            assert abs(used_mib - memory.used / 2**20) < 1024, (used_mib, memory.used)
            total = [
                v for lab, v in series["torchrig_gpu_memory_total_bytes"] if lab["UUID"] == uuid
            ]
            assert total == [float(memory.total)]
            mine = [v for lab, v in series["torchrig_gpu_process_memory_bytes"]
                    if lab["UUID"] == uuid and lab["pid"] == str(busy.pid)]  # fmt: skip
            assert mine and mine[0] >= 2 * 2**30, series["torchrig_gpu_process_memory_bytes"]
            temp = [v for lab, v in series["DCGM_FI_DEV_GPU_TEMP"] if lab["UUID"] == uuid]
            assert temp and 10 <= temp[0] <= 100
            power = [v for lab, v in series["DCGM_FI_DEV_POWER_USAGE"] if lab["UUID"] == uuid]
            limit = [
                v for lab, v in series["torchrig_gpu_power_limit_watts"] if lab["UUID"] == uuid
            ]
            assert power and limit and 20 <= power[0] <= limit[0] * 1.1
            busy_util = [v for lab, v in series["DCGM_FI_DEV_GPU_UTIL"] if lab["UUID"] == uuid]
            seen.append(f"util exporter {busy_util} nvml {util}")
            if busy_util and busy_util[0] >= 50 and util >= 50:
                break
            time.sleep(1.0)
        else:
            pytest.fail(f"GPU utilisation under a matmul loop not seen within 2 scrapes: {seen}")
        reason = series["torchrig_gpu_metrics_available"]
        assert reason == [({"reason": ""}, 1.0)]
    finally:
        for proc in (busy, exporter):
            proc.kill()
            proc.wait()
