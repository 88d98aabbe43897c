"""The workbench's metrics: GPU readings and every job's training metrics as Prometheus
metric families, built with prometheus-client on each scrape (a custom collector: nothing is
cached between scrapes, so a metric is never staler than the files it comes from).

    python -m torchrig.monitor.exporter --port 9400 [--host 127.0.0.1] [--workspace /workspace]

Names. Where NVIDIA's DCGM exporter has the same reading, the metric has DCGM's name, unit and
labels (gpu, UUID, device, modelName, Hostname; GPU_I_ID and GPU_I_PROFILE for a MIG
instance), so one dashboard reads either exporter (docs/monitoring.md). DCGM's ECC counters
end in _TOTAL already: they are exposed as gauges under exactly that name (a counter would
get a second _total). The rest are torchrig_*: per-process GPU memory, power limit, memory
total, throttle reasons one by one, training metrics per job, job states.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

try:
    from prometheus_client.core import GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector, CollectorRegistry
except ImportError:
    if __name__ == "__main__":  # the service: one line for the workbench's log, not a trace
        print(
            "torchrig: prometheus-client is not in this image; rebuild it with `torchrig "
            "build`, or set [services.metrics] enabled = false",
            file=sys.stderr,
        )
        sys.exit(78)
    raise

from torchrig.monitor.gpu import MIB, Gpu, GpuSnapshot, Reader
from torchrig.monitor.holders import Holders, holders_of, pid_namespace
from torchrig.monitor.training import STATES, JobView, read_jobs
from torchrig.train.timeline import Follower

GPU_LABELS = ["gpu", "UUID", "device", "modelName", "Hostname", "GPU_I_ID", "GPU_I_PROFILE"]
JOB_LABELS = ["torchrig_job"]
"""Not "job": Prometheus sets "job" to the scrape job, and would rename ours exported_job."""
DEFAULT_PORT = 9400  # dcgm-exporter's port; a workbench has no DCGM exporter of its own


def _gpu_labels(g: Gpu, host: str) -> list[str]:
    return [
        str(g.index),
        g.uuid,
        f"nvidia{g.index}",
        g.name,
        host,
        "" if g.mig_instance is None else str(g.mig_instance),
        g.mig_profile or "",
    ]


def gpu_families(snap: GpuSnapshot, host: str, holders: Holders) -> list[Metric]:
    def gauge(name: str, doc: str, extra: Sequence[str] = ()) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=[*GPU_LABELS, *extra])

    up = GaugeMetricFamily(
        "torchrig_gpu_metrics_available",
        "1 when NVML answered; 0 with the reason why there are no GPU metrics.",
        labels=["reason"],
    )
    up.add_metric([snap.absent or ""], 0.0 if snap.absent else 1.0)
    util = gauge("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).")
    copy = gauge("DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %).")
    used = gauge("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).")
    free = gauge("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).")
    total = gauge("torchrig_gpu_memory_total_bytes", "Framebuffer memory in all (bytes).")
    power = gauge("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).")
    limit = gauge("torchrig_gpu_power_limit_watts", "Enforced power limit (W).")
    temp = gauge("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).")
    sm = gauge("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).")
    mem = gauge("DCGM_FI_DEV_MEM_CLOCK", "Memory clock frequency (in MHz).")
    mask = gauge("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "Clock throttle reasons (NVML bit mask).")
    reason = gauge(
        "torchrig_gpu_throttle", "1 while the clocks are held down for this reason.", ["reason"]
    )
    sbe = gauge("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "Single-bit volatile ECC errors.")
    dbe = gauge("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "Double-bit volatile ECC errors.")
    proc = gauge(
        "torchrig_gpu_process_memory_bytes",
        "GPU memory of each process (torchrig_job: the job it belongs to, if any).",
        ["pid", "torchrig_job"],
    )
    for g in snap.gpus:
        lab = _gpu_labels(g, host)
        for family, value in (
            (util, g.util_percent),
            (copy, g.mem_copy_util_percent),
            (power, g.power_w),
            (limit, g.power_limit_w),
            (temp, g.temp_c),
            (sm, g.sm_clock_mhz),
            (mem, g.mem_clock_mhz),
            (mask, g.throttle_mask),
            (sbe, g.ecc_corrected),
            (dbe, g.ecc_uncorrected),
            (total, g.mem_total_bytes),
        ):
            if value is not None:
                family.add_metric(lab, float(value))
        if g.mem_used_bytes is not None:
            used.add_metric(lab, g.mem_used_bytes / MIB)
            if g.mem_total_bytes is not None:
                free.add_metric(lab, (g.mem_total_bytes - g.mem_used_bytes) / MIB)
        for name, on in g.throttle.items():
            reason.add_metric([*lab, name], 1.0 if on else 0.0)
        for p in g.processes:
            if p.used_bytes is not None:
                proc.add_metric([*lab, str(p.pid), holders.get(p.pid, "")], float(p.used_bytes))
    return [up, util, copy, used, free, total, power, limit, temp, sm, mem, mask, reason, sbe,
            dbe, proc]  # fmt: skip


def training_families(views: Sequence[JobView], now: float) -> list[Metric]:
    def gauge(name: str, doc: str, extra: Sequence[str] = ()) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=[*JOB_LABELS, *extra])

    state = gauge("torchrig_job_state", "1 for the job's state (one series per state).", ["state"])
    resumes = gauge("torchrig_job_resumes", "Times the job's run was resumed from a checkpoint.")
    step = gauge("torchrig_train_step", "Optimizer step of the last log line.")
    total = gauge("torchrig_train_total_steps", "Steps the run is set to train (--steps).")
    loss = gauge("torchrig_train_loss", "Training loss of the last log interval.")
    lr = gauge("torchrig_train_learning_rate", "Learning rate at the last log line.")
    tokens = gauge("torchrig_train_tokens_per_second", "Training tokens per second (all ranks).")
    samples = gauge("torchrig_train_samples_per_second", "Training samples per second (all ranks).")
    mfu = gauge("torchrig_train_mfu_ratio", "Model FLOPs utilisation (0-1) per device.")
    wait = gauge("torchrig_train_data_wait_ratio", "Share of wall time spent waiting for data.")
    step_s = gauge("torchrig_train_step_seconds", "Mean wall time per optimizer step.")
    mem = gauge("torchrig_train_peak_memory_bytes", "Peak device memory of rank 0.")
    val = gauge("torchrig_train_eval", "Last evaluation's metrics.", ["metric"])
    ckpt_step = gauge("torchrig_train_last_checkpoint_step", "Step of the newest checkpoint.")
    ckpt_time = gauge(
        "torchrig_train_last_checkpoint_timestamp_seconds",
        "When the newest checkpoint was written.",
    )
    ckpt_age = gauge(
        "torchrig_train_checkpoint_age_seconds", "Seconds since the newest checkpoint."
    )
    log_age = gauge("torchrig_train_log_age_seconds", "Seconds since metrics.jsonl was written.")
    for v in views:
        lab = [v.id]
        for s in STATES:
            state.add_metric([*lab, s], 1.0 if v.state == s else 0.0)
        resumes.add_metric(lab, float(len(v.history.resumes)))
        last = v.history.last_train or {}

        def put(family: GaugeMetricFamily, value: object, scale: float = 1.0) -> None:
            if isinstance(value, int | float) and not isinstance(value, bool):
                family.add_metric(lab, float(value) * scale)  # noqa: B023 (called at once)

        put(step, last.get("step"))
        put(total, v.total_steps)
        put(loss, last.get("loss"))
        put(lr, last.get("lr"))
        put(tokens if v.unit == "tokens" else samples, v.throughput)
        put(mfu, last.get("mfu"))
        put(wait, last.get("data_wait"))
        put(step_s, v.step_seconds)
        put(mem, last.get("peak_mem_gib"), float(1 << 30))
        put(ckpt_step, v.last_checkpoint_step)
        put(ckpt_time, v.last_checkpoint_time)
        if v.last_checkpoint_time is not None:
            ckpt_age.add_metric(lab, max(0.0, now - v.last_checkpoint_time))
        if v.log_time is not None:
            log_age.add_metric(lab, max(0.0, now - v.log_time))
        for key, value in (v.history.last_eval or {}).items():
            if key not in ("step", "event", "seconds", "time") and isinstance(value, int | float):
                val.add_metric([*lab, key], float(value))
    return [state, resumes, step, total, loss, lr, tokens, samples, mfu, wait, step_s, mem, val,
            ckpt_step, ckpt_time, ckpt_age, log_age]  # fmt: skip


class WorkbenchCollector(Collector):
    """Reads GPUs and jobs on every scrape."""

    def __init__(
        self,
        workspace: Path,
        reader: Reader | None = None,
        *,
        host: str | None = None,
        clock: Callable[[], float] = time.time,
        local: bool = True,
        keep_ended_s: float = 3600.0,
    ) -> None:
        self.workspace = workspace
        self.keep_ended_s = keep_ended_s
        self.reader = reader or Reader()
        self.host = host or socket.gethostname()
        self.clock = clock
        self.local = local
        self.followers: dict[Path, Follower] = {}

    def collect(self) -> Iterator[Metric]:
        began = time.perf_counter()
        now = self.clock()
        views = [
            v
            for v in read_jobs(self.workspace, local=self.local, followers=self.followers)
            # Jobs that ended long ago leave the metrics (a workspace keeps every job).
            if v.ended is None or now - v.ended <= self.keep_ended_s
        ]
        snap = self.reader.read()
        holders = holders_of(
            [p.pid for g in snap.gpus for p in g.processes],
            {v.id: v.pid for v in views if v.pid is not None and v.state == "running"},
            pid_ns=pid_namespace(),  # the workbench's: the exporter runs in it
        )
        yield from gpu_families(snap, self.host, holders)
        yield from training_families(views, now)
        took = GaugeMetricFamily(
            "torchrig_exporter_collect_seconds", "Time this scrape took to read GPUs and jobs."
        )
        took.add_metric([], time.perf_counter() - began)
        yield took


def registry_for(workspace: Path, reader: Reader | None = None, **kw: object) -> CollectorRegistry:
    from prometheus_client import ProcessCollector

    registry = CollectorRegistry()
    # The exporter's own CPU and memory (process_cpu_seconds_total ...): what it costs.
    ProcessCollector(registry=registry)
    registry.register(WorkbenchCollector(workspace, reader, **kw))  # type: ignore[arg-type]
    return registry


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m torchrig.monitor.exporter")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--workspace", type=Path, default=Path(os.environ.get("TORCHRIG_WORKSPACE", "/workspace"))
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from prometheus_client import start_http_server

    args = parse(sys.argv[1:] if argv is None else argv)
    registry = registry_for(args.workspace)
    try:
        server, thread = start_http_server(args.port, addr=args.host, registry=registry)
    except OSError as exc:
        print(
            f"torchrig: cannot listen on {args.host}:{args.port} ({exc.strerror})", file=sys.stderr
        )
        return 71
    snap = Reader().read()
    gpus = snap.absent or f"{len(snap.gpus)} GPU(s), driver {snap.driver}"
    print(f"metrics on http://{args.host}:{args.port}/metrics ({gpus})", flush=True)
    try:
        thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
