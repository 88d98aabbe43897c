"""What a log line says, and where it goes.

Per log line (every `log_every` optimizer steps): loss, learning rate, gradient norm,
tokens (or samples) per second, MFU, peak memory, and the share of wall time the loop
spent waiting for data.

Timing without a sync per step: the loop only measures host wall time. Between two log
steps the host runs ahead of the GPU by at most a few steps, and the log step itself
syncs (it reads the loss), so the wall time of a whole interval is the GPU's time for that
interval. Data wait is the host time spent in `next(batches)`: when the prefetch thread
keeps up it is ~0; when it does not, the GPU idles for about that long.

MFU = achieved model FLOP/s per device ÷ the device's dense datasheet peak for the
precision in use (bf16/fp16 tensor rate; TF32 for fp32 on CUDA), taken from torchrig's
compatibility data (the same table `torchrig bench` uses). A device with no known peak
(an unlisted GPU, any CPU) gets no MFU, and the run says so once.
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from torchrig.train.timeline import read_history


def peak_tflops(device: Any, precision: str) -> tuple[float | None, str]:
    """(dense peak TFLOPS per device, what it is or why there is none)."""
    if getattr(device, "type", "cpu") != "cuda":
        return None, "no MFU on CPU: no datasheet peak is known for CPUs"
    import torch

    from torchrig.compat.model import load_compat

    name = torch.cuda.get_device_name(device)
    record = load_compat().gpu_for(name)
    attr = {"bf16": "bf16_tflops", "fp16": "fp16_tflops", "fp32": "tf32_tflops"}[precision]
    value = getattr(record, attr, None) if record is not None else None
    if record is None or value is None:
        return None, f"no MFU: no {precision} datasheet peak is known for {name!r}"
    return float(value), f"{record.name} dense {attr.removesuffix('_tflops')} peak {value} TFLOPS"


def peak_memory_gib(device: Any) -> float:
    """Peak allocated device memory (CUDA), or the process's peak resident set (CPU)."""
    if getattr(device, "type", "cpu") == "cuda":
        import torch

        return float(torch.cuda.max_memory_allocated(device)) / 2**30
    # ru_maxrss is KiB on Linux, bytes on macOS.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (2**30 if sys.platform == "darwin" else 2**20)


class StepTimer:
    """Host wall time per log interval, and how much of it was spent waiting for data."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.data_wait = 0.0
        self.steps = 0
        self.items = 0

    def waited(self, seconds: float) -> None:
        self.data_wait += seconds

    def step(self, items: int) -> None:
        self.steps += 1
        self.items += items

    def interval(self) -> dict[str, float]:
        """Close the interval (call after the sync of a log step) and start the next."""
        now = time.perf_counter()
        wall = max(now - self.start, 1e-9)
        out = {
            "wall_s": wall,
            "steps": float(self.steps),
            "items": float(self.items),
            "items_per_s": self.items / wall,
            "data_wait_share": min(1.0, self.data_wait / wall),
        }
        self.start = now
        self.data_wait = 0.0
        self.steps = 0
        self.items = 0
        return out

    def exclude(self, seconds: float) -> None:
        """Take time spent outside training (a checkpoint save) out of the interval."""
        self.start += seconds


def transformer_flops_per_token(n_params: int, n_layer: int, d_model: int, seq_len: int) -> int:
    """Training FLOPs per token, PaLM/nanoGPT style: 6N for the matmuls with the weights
    (forward 2N, backward 4N) plus 12·L·d·T for attention scores and values.

    `n_params` counts the weights used in matmuls: position embeddings excluded; a tied
    token embedding included once (it is the LM head's matmul)."""
    return 6 * n_params + 12 * n_layer * d_model * seq_len


def mfu(flops_per_item: float, items_per_s_per_device: float, peak: float | None) -> float | None:
    if not peak or flops_per_item <= 0:
        return None
    return flops_per_item * items_per_s_per_device / (peak * 1e12)


class MetricsLog:
    """JSONL (one object per line: easy to grep, tail and plot) and TensorBoard scalars,
    written by rank 0 only. Records are kept in memory for the loss-curve plot."""

    def __init__(
        self,
        out_dir: Path,
        enabled: bool,
        tensorboard: bool = True,
        *,
        resumed_from: int | None = None,
    ) -> None:
        """resumed_from: the checkpoint step a resumed run continues from (None: a new run)."""
        self.enabled = enabled
        self.out_dir = Path(out_dir)
        self.records: list[dict[str, Any]] = []
        self._jsonl: TextIO | None = None
        self._tb: Any = None
        self.notes: list[str] = []
        if not enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        # Append: a resumed run continues the same file, and marks where it took over; what
        # was logged past that step before (a crash after the last checkpoint) is superseded
        # (torchrig.train.timeline), so plots and reports draw no step twice.
        self._jsonl = (self.out_dir / "metrics.jsonl").open("a", encoding="utf-8")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                # purge_step: TensorBoard hides the earlier events from that step on.
                purge = None if resumed_from is None else resumed_from + 1
                self._tb = SummaryWriter(
                    log_dir=str(self.out_dir / "tensorboard"), purge_step=purge
                )
            except ImportError:
                self.notes.append("tensorboard is not installed: no TensorBoard logs")
        if resumed_from is not None:
            self.write({"event": "resume", "step": resumed_from, "pid": os.getpid()})
        _tell_job(self.out_dir)

    def write(self, record: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        rec = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in record.items()
        }
        rec.setdefault("time", round(time.time(), 3))  # when: checkpoint age, the report
        self.records.append(rec)
        assert self._jsonl is not None
        self._jsonl.write(json.dumps(rec) + "\n")
        self._jsonl.flush()
        # Log lines under train/, evaluations under val/; checkpoints and resumes are not
        # curves.
        group = {None: "train", "eval": "val"}.get(rec.get("event"))
        if self._tb is not None and group and isinstance(rec.get("step"), int):
            for key, value in rec.items():
                if key in ("step", "time", "event") or key.endswith("seconds"):
                    continue
                if isinstance(value, int | float) and not isinstance(value, bool):
                    self._tb.add_scalar(f"{group}/{key}", value, rec["step"])

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _tell_job(out_dir: Path) -> None:
    """In a `torchrig run` job, record which run it trains (the exporter and `torchrig top`
    read the run's metrics through it). Never fails the run."""
    job_dir = os.environ.get("TORCHRIG_JOB_DIR")
    if not job_dir:
        return
    try:
        from torchrig.monitor.training import write_run_pointer

        write_run_pointer(Path(job_dir), out_dir)
    except OSError:
        pass


def plot_loss(jsonl: Path, png: Path, title: str = "") -> Path | None:
    """Loss (and learning rate, and any evaluation loss) against step, from the JSONL log,
    saved as PNG atomically, with a legend naming each line. Each step is drawn once (a
    resume supersedes what was logged past its checkpoint). None when there is nothing."""
    hist = read_history(jsonl)
    if not hist.train:
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display in a container
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in hist.train]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    lines = ax.plot(steps, [r["loss"] for r in hist.train], color="tab:blue", label="train loss")
    val = [r for r in hist.evals if isinstance(r.get("val_loss"), int | float)]
    if val:
        lines += ax.plot(
            [r["step"] for r in val], [r["val_loss"] for r in val], "o-", color="tab:green",
            label="validation loss",
        )  # fmt: skip
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    lrs = [r.get("lr") for r in hist.train]
    if all(isinstance(v, int | float) for v in lrs):
        ax2 = ax.twinx()
        lines += ax2.plot(steps, lrs, color="tab:orange", alpha=0.6, label="learning rate")
        ax2.set_ylabel("learning rate")
    for resume in hist.resumes:
        ax.axvline(resume["step"], color="grey", linestyle=":", linewidth=1)
    if hist.resumes:
        lines += ax.plot([], [], color="grey", linestyle=":", label="resumed here")
    ax.legend(lines, [str(line.get_label()) for line in lines], loc="upper right", fontsize=9)
    ax.set_title(title or "training loss")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_name(f".{png.name}.{os.getpid()}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(png)
    return png


def round_or_none(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def log_line(rec: Mapping[str, Any], total: int, rate_key: str, rate_unit: str) -> str:
    """One log record as the line a person reads: step, loss, rate, MFU, memory, data wait."""
    parts = [
        f"step {rec['step']}/{total}",
        f"loss {rec['loss']:.4f}",
        f"lr {rec['lr']:.2e}",
        f"{rec[rate_key] / 1e3:.1f}k {rate_unit}"
        if rec[rate_key] >= 1e4
        else f"{rec[rate_key]:.1f} {rate_unit}",
    ]
    if rec.get("mfu") is not None:
        parts.append(f"mfu {rec['mfu']:.1%}")
    parts += [f"mem {rec['peak_mem_gib']:.2f} GiB", f"data wait {rec['data_wait']:.1%}"]
    return " | ".join(parts)
