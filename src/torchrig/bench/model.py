"""The arithmetic of `torchrig bench`, kept pure so it can be tested without a GPU.

A line is one measured number. It gets a reference (the datasheet peak, or the PCIe link's
rate, or the NVLink rate) and a floor: at or above `floor × reference` the verdict is "ok",
under it "low" with the likely cause; "n/a" where no reference is known (an unknown GPU
gets absolute numbers only).

Floors. Matmul 70% of the datasheet peak (a healthy H100 SXM reaches 75-79%, FACTS.md);
device copy 80% of the datasheet bandwidth (89% measured); pinned copies 70% of the PCIe
link's rate after encoding (86% measured on Gen5 x16); all-reduce bus bandwidth 70% of the
unidirectional NVLink rate (a ring on NVLink reaches ~80%). Training workloads are judged by
model FLOPs utilisation (MFU) against the bf16 peak: low when under 80% of the MFU the same
harness reached on an H100 SXM (FACTS.md's baselines), a heuristic, not a datasheet figure.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Verdict = Literal["ok", "low", "n/a", "skip"]

MATMUL_FLOOR = 0.70
COPY_FLOOR = 0.80
PCIE_FLOOR = 0.70
NVLINK_FLOOR = 0.70

MATMUL_N = 8192
MATMUL_PRECISIONS = ("bf16", "fp16", "tf32", "fp32")

# PCIe rate per lane and direction after line encoding, GB/s (Gen1-2 8b/10b, Gen3-5
# 128b/130b, Gen6 FLIT).
PCIE_LANE_GBS = {1: 0.25, 2: 0.5, 3: 0.985, 4: 1.969, 5: 3.938, 6: 7.563}

# ResNet-50 at 224×224: 4.089 G multiply-adds per image forward (torchvision's `_ops`).
RESNET50_MACS = 4.089e9

# MFU an H100 SXM reached in this harness (FACTS.md, 2026-11-22); floors are 80% of these.
_H100_MFU = {
    "gpt2 eager": 0.263,
    "gpt2 compiled": 0.392,
    "resnet50 eager": 0.099,
    "resnet50 compiled": 0.136,
    "bert eager": 0.061,
    "bert compiled": 0.074,
}
WORKLOAD_MFU_FLOOR = {k: round(0.8 * v, 3) for k, v in _H100_MFU.items()}

# Same-method measurements on the same device model, to show beside ours (FACTS.md).
BASELINES: dict[str, dict[str, float]] = {
    "H100 SXM": {
        "matmul bf16": 774.5,
        "matmul fp16": 745.0,
        "matmul tf32": 392.3,
        "matmul fp32": 51.1,
        "memcopy": 2979.0,
        "h2d pinned": 54.1,
        "gpt2 eager": 303_600.0,
        "gpt2 compiled": 453_800.0,
        "resnet50 eager": 3_977.0,
        "resnet50 compiled": 5_493.0,
        "bert eager": 892.0,
        "bert compiled": 1_087.0,
    },
}
BASELINE_SOURCE = "FACTS.md: plain PyTorch on an H100 80GB HBM3, torch 2.11.0+cu130, 2026-11-22"

# Acceptance targets (issue 4) by device model: line → minimum value, in the line's unit.
TARGETS: dict[str, dict[str, float]] = {
    "H100 SXM": {
        "matmul bf16": 0.75 * 989.0,
        "memcopy": 0.85 * 3350.0,
        "gpt2 compiled": 450_000.0,
        "resnet50 compiled": 5_000.0,
        "bert compiled": 1_000.0,
    },
    "H200": {"allreduce 1 GiB": 370.0},
}


@dataclass
class Line:
    """One measured number and how it compares."""

    name: str
    group: str
    value: float | None
    unit: str
    reference: float | None = None  # the peak or link rate the value is compared with
    reference_label: str = ""  # e.g. "datasheet peak", "PCIe Gen5 x16"
    floor: float | None = None  # share of the reference under which the verdict is low
    share: float | None = None  # value / reference
    verdict: Verdict = "n/a"
    cause: str | None = None
    baseline: float | None = None
    target: float | None = None
    meets_target: bool | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(
    line: Line, reference: float | None, floor: float | None, cause_if_low: str | None
) -> Line:
    """Fill in share and verdict from a reference (None: no verdict, absolute number)."""
    line.reference = reference
    line.floor = floor
    if line.value is None:
        line.verdict = "skip"
        return line
    if not reference or floor is None:
        line.verdict = "n/a"
        return line
    line.share = round(line.value / reference, 4)
    if line.share >= floor:
        line.verdict = "ok"
        line.cause = None
    else:
        line.verdict = "low"
        line.cause = cause_if_low or "unknown: check nvidia-smi for other processes and clocks"
    return line


def judge_mfu(line: Line, mfu: float | None) -> Line:
    """Workload lines: the verdict comes from MFU against the workload's floor."""
    floor = WORKLOAD_MFU_FLOOR.get(line.name)
    line.details["mfu"] = None if mfu is None else round(mfu, 4)
    line.details["mfu_floor"] = floor
    if line.value is None:
        line.verdict = "skip"
    elif mfu is None or floor is None:
        line.verdict = "n/a"
    elif mfu >= floor:
        line.verdict = "ok"
    else:
        line.verdict = "low"
    return line


def attach_reference_numbers(line: Line, gpu_record: str | None) -> Line:
    """Baseline and target for this device model, when we have them."""
    if gpu_record is None:
        return line
    line.baseline = BASELINES.get(gpu_record, {}).get(line.name)
    target = TARGETS.get(gpu_record, {}).get(line.name)
    if target is not None:
        line.target = round(target, 1)
        line.meets_target = None if line.value is None else line.value >= target
    return line


# --- causes ---------------------------------------------------------------------------------


def clock_cause(state: dict[str, Any]) -> str:
    """The likely cause of a slow GPU-bound line, from NVML's reading right after it."""
    reasons = [r for r in state.get("throttle_reasons", []) if r not in ("gpu_idle", "sync_boost")]
    if reasons:
        watts = ""
        if state.get("power_w") is not None and state.get("power_limit_w") is not None:
            watts = f", {state['power_w']:.0f} of {state['power_limit_w']:.0f} W"
        return f"clocks held back by {', '.join(reasons)}{watts} (power or cooling)"
    sm, sm_max = state.get("sm_clock_mhz"), state.get("sm_clock_max_mhz")
    if sm and sm_max and sm < 0.9 * sm_max:
        return f"SM clock {sm} of {sm_max} MHz (power, cooling or an application clock setting)"
    return "clocks look normal: another process on the GPU, or a slow library build"


def memory_cause(state: dict[str, Any]) -> str:
    mem, mem_max = state.get("mem_clock_mhz"), state.get("mem_clock_max_mhz")
    if mem and mem_max and mem < 0.9 * mem_max:
        return f"memory clock {mem} of {mem_max} MHz"
    return clock_cause(state)


def pcie_reference(state: dict[str, Any]) -> tuple[float | None, str, str | None]:
    """(reference GB/s, label, cause-if-low) for pinned copies from the PCIe link facts."""
    gen, width = state.get("pcie_gen"), state.get("pcie_width")
    gen_max = state.get("pcie_gen_gpu_max") or state.get("pcie_gen_max")
    width_max = state.get("pcie_width_max")
    best_gen = max(g for g in (gen, gen_max) if g) if (gen or gen_max) else None
    best_width = max(w for w in (width, width_max) if w) if (width or width_max) else None
    if not best_gen or not best_width or best_gen not in PCIE_LANE_GBS:
        return None, "", None
    reference = PCIE_LANE_GBS[best_gen] * best_width
    label = f"PCIe Gen{best_gen} x{best_width}"
    if gen and width and (gen < best_gen or width < best_width):
        cause = f"PCIe link runs at Gen{gen} x{width}, the GPU supports Gen{best_gen} x{best_width}"
    else:
        cause = (
            "PCIe link is at its best generation and width: a virtualised or shared link, "
            "an IOMMU, or memory not pinned"
        )
    return reference, label, cause


def cpu_times(stat_text: str) -> tuple[int, int, int]:
    """(busy, steal, total) jiffies from the aggregate `cpu` line of /proc/stat."""
    for row in stat_text.splitlines():
        if row.startswith("cpu "):
            v = [int(x) for x in row.split()[1:]]
            v += [0] * (8 - len(v))
            idle = v[3] + v[4]  # idle + iowait
            steal = v[7]
            total = sum(v[:8])
            return total - idle - steal, steal, total
    return 0, 0, 0


def steal_share(before: tuple[int, int, int], after: tuple[int, int, int]) -> float | None:
    """Share of CPU time the hypervisor gave to others between two readings (None: unknown)."""
    total = after[2] - before[2]
    return (after[1] - before[1]) / total if total > 0 else None


SLOW_LAUNCH_US = 10.0


def workload_cause(
    compiled: bool, matmul_low: bool, steal: float | None, launch: float | None = None
) -> str:
    """The likely cause of a slow training workload."""
    if matmul_low:
        return "the GPU itself is slow (see the matmul lines)"
    if steal is not None and steal >= 0.05:
        return f"host CPU contended: {steal:.0%} steal time during the run (shared VM)"
    if launch is not None and launch >= SLOW_LAUNCH_US:
        return f"slow or busy host CPU: {launch:.0f} µs per kernel launch"
    if not compiled:
        return "host-bound: CPU too slow or busy to launch kernels in time"
    return (
        "compiled step slower than expected: a slow or busy host CPU, or graph breaks and "
        "recompiles (TORCH_LOGS=graph_breaks,recompiles)"
    )


def tf32_cause(tf32_tflops: float, fp32_peak: float | None) -> str | None:
    """TF32 that ran at plain fp32 speed was not in effect."""
    if fp32_peak and tf32_tflops < 1.5 * fp32_peak:
        return "TF32 not in effect: the product ran at plain fp32 speed (allow_tf32 ignored?)"
    return None


# --- formulas -------------------------------------------------------------------------------


def busbw(algbw: float, world: int) -> float:
    """nccl-tests' all-reduce bus bandwidth: algbw × 2(n − 1)/n."""
    return algbw * 2 * (world - 1) / world if world > 0 else 0.0


def resnet50_flops_per_image() -> float:
    """Training FLOPs per 224×224 image: 3 × forward (forward + 2× backward), 2 per MAC."""
    return 3 * 2 * RESNET50_MACS


def no_peak_sentence(gpu_name: str | None) -> str:
    return (
        f"No datasheet peak is known for {gpu_name or 'this GPU'!r}: the numbers are absolute, "
        "with no share of peak and no verdict."
    )
