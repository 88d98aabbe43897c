"""Debian's real Prometheus server scrapes the metrics service while a tiny causal-LM job
trains on the CPU under the job runner: within two scrapes of the target coming up, the
series are there with the job's labels and the values its metrics.jsonl holds, and the GPU
metrics are absent with the reason said (no NVIDIA driver here).

The exporter runs exactly as the workbench's supervisor starts it (services_for's argv),
over a workspace laid out as /workspace is; the scrape config is `torchrig export
prometheus`'s renderer."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from torchrig.monitor.targets import Target, prometheus_config
from torchrig.train.timeline import read_history

INTERVAL_S = 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)


def wait(what: str, check: Any, timeout: float = 60.0, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except (OSError, ValueError):
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


def start(argv: list[str], log: Path, **kw: Any) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
                            **kw)  # fmt: skip


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def training_job(corpus: Path, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A workspace with one running job: the tiny preset, long enough to outlive the test."""
    ws = tmp_path / "workspace"
    ws.mkdir()
    shutil.copy(corpus, ws / "corpus.txt")
    job_id = "lm-tiny-1"
    argv = [sys.executable, "-m", "torchrig.jobs.runner",
            "--job-dir", str(ws / ".torchrig" / "jobs" / job_id), "--",
            sys.executable, "-m", "torchrig.recipes.causal_lm", "--preset", "tiny",
            "--data", "corpus.txt", "--out", str(ws / "runs" / "lm"), "--steps", "1000000",
            "--log-every", "5", "--ckpt-every", "200", "--no-tensorboard"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = start(argv, tmp_path / "job.log", cwd=ws, env=env)
    try:
        yield ws, job_id
    finally:
        stop(proc)


def test_prometheus_scrapes_gpu_and_training_series_within_two_scrapes(
    training_job: tuple[Path, str], tmp_path: Path
) -> None:
    from torchrig.workbench.supervise import metrics_argv

    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.fail("prometheus is a test dependency (.ci/install-engines.sh)", pytrace=False)
    ws, job_id = training_job
    exporter_port, prom_port = free_port(), free_port()
    argv = list(metrics_argv(sys.executable, exporter_port, host="127.0.0.1"))
    argv[argv.index("--workspace") + 1] = str(ws)  # the test's /workspace
    exporter = start(argv, tmp_path / "exporter.log")
    config = tmp_path / "prometheus.yml"
    target = Target(f"127.0.0.1:{exporter_port}", (("workbench", "t-mon1"),))
    config.write_text(prometheus_config([target], interval_s=INTERVAL_S))
    server = start(
        [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        tmp_path / "prometheus.log",
    )  # fmt: skip
    api = f"http://127.0.0.1:{prom_port}/api/v1"

    def query(expr: str) -> list[dict[str, Any]]:
        data = get(f"{api}/query?query={urllib.parse.quote(expr)}")
        return list(data["data"]["result"])

    try:
        # The job's first log line, then the first scrape that found the target up.
        run = ws / "runs" / "lm"
        wait("the job's first log line", lambda: read_history(run / "metrics.jsonl").train, 120)

        def first_scrape() -> str | None:
            targets = get(f"{api}/targets")["data"]["activeTargets"]
            up = [t for t in targets if t["health"] == "up"]
            return str(up[0]["lastScrape"]) if up else None

        wait("Prometheus's first scrape of the exporter", first_scrape, 60)
        began = time.monotonic()
        # Two scrape intervals (and the query's own latency) from there on.
        found = wait(
            "the training series",
            lambda: query(f'torchrig_train_step{{torchrig_job="{job_id}"}}'),
            timeout=2 * INTERVAL_S + 1.5,
            every=0.1,
        )
        assert time.monotonic() - began <= 2 * INTERVAL_S + 1.5
        (series,) = found
        assert series["metric"]["job"] == "torchrig"  # Prometheus's scrape job
        assert series["metric"]["workbench"] == "t-mon1"
        assert series["metric"]["instance"] == f"127.0.0.1:{exporter_port}"
        step = int(float(series["value"][1]))
        logged = {r["step"]: r for r in read_history(run / "metrics.jsonl").train}
        assert step in logged  # a step the job logged, not a made-up one

        # One scrape's values, each checked against metrics.jsonl at that step.
        at = query(
            f'{{__name__=~"torchrig_train_(step|loss|tokens_per_second|data_wait_ratio)",'
            f'torchrig_job="{job_id}"}}'
        )
        values = {s["metric"]["__name__"]: float(s["value"][1]) for s in at}
        rec = (
            logged.get(int(values["torchrig_train_step"]))
            or read_history(run / "metrics.jsonl").train[-1]
        )
        assert values["torchrig_train_loss"] == pytest.approx(rec["loss"])
        assert values["torchrig_train_tokens_per_second"] == pytest.approx(rec["tokens_per_s"])
        assert values["torchrig_train_data_wait_ratio"] == pytest.approx(rec["data_wait"])
        state = query(f'torchrig_job_state{{torchrig_job="{job_id}"}} == 1')
        assert [s["metric"]["state"] for s in state] == ["running"]
        assert query("torchrig_train_total_steps")[0]["value"][1] == "1000000"

        (gpu,) = query("torchrig_gpu_metrics_available")
        assert gpu["value"][1] == "0"
        assert "no GPU metrics" in gpu["metric"]["reason"]
        assert query("DCGM_FI_DEV_GPU_UTIL") == []
        assert float(query("process_cpu_seconds_total")[0]["value"][1]) >= 0
    finally:
        for proc in (server, exporter):
            stop(proc)
        for name in ("exporter.log", "prometheus.log", "job.log"):
            text = (tmp_path / name).read_text(errors="replace")
            print(f"--- {name} (last lines)\n" + "\n".join(text.splitlines()[-8:]))
