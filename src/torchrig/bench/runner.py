"""Run the chosen bench groups on one GPU (all GPUs for the all-reduce) and build the result.

The result is a plain dict (JSON-ready): environment, the device's datasheet record, the
lines with their verdicts, the all-reduce sweep, NVML's reading of the GPU after the
compute-bound part, notes, and the elapsed time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from torchrig.bench import model as m
from torchrig.train.metrics import mfu
from torchrig.units import human_bytes

GROUPS = ("matmul", "memcopy", "h2d", "allreduce", "gpt2", "resnet50", "bert")

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def gpu_record(name: str) -> Any:
    from torchrig.compat.model import load_compat

    return load_compat().gpu_for(name)


def run_bench(
    torch: Any,
    groups: tuple[str, ...] = GROUPS,
    quick: bool = False,
    device: int = 0,
    say: Say = _quiet,
) -> dict[str, Any]:
    from torchrig.bench import measure
    from torchrig.bench.allreduce import sweep
    from torchrig.verify.env import environment, gpu_state

    start = time.perf_counter()
    torch.cuda.set_device(device)
    extra: dict[str, str | None] = {}
    for pkg in ("transformers", "torchvision"):
        try:
            extra[pkg] = __import__(pkg).__version__
        except Exception:
            extra[pkg] = None
    env = environment(torch, extra)
    name = torch.cuda.get_device_name(device)
    rec = gpu_record(name)
    rec_name = rec.name if rec else None
    notes: list[str] = []
    lines: list[m.Line] = []
    if rec is None or rec.bf16_tflops is None:
        notes.append(m.no_peak_sentence(name))

    def peak(attr: str) -> float | None:
        return getattr(rec, attr, None) if rec is not None else None

    def add(line: m.Line) -> None:
        m.attach_reference_numbers(line, rec_name)
        lines.append(line)
        value = "skipped" if line.value is None else f"{line.value:,.1f} {line.unit}"
        say(f"{line.name}: {value} — {line.verdict}" + (f" ({line.cause})" if line.cause else ""))

    state: dict[str, Any] = {}
    cc = torch.cuda.get_device_capability(device)

    if "matmul" in groups:
        results: dict[str, dict[str, Any]] = {}
        for precision in m.MATMUL_PRECISIONS:
            if precision in ("bf16", "tf32") and cc[0] < 8:
                add(m.Line(f"matmul {precision}", "matmul", None, "TFLOP/s",
                           details={"skipped": f"{precision} needs CC ≥ 8.0"}))  # fmt: skip
                continue
            say(f"matmul {precision} {m.MATMUL_N}³ …")
            results[precision] = measure.matmul_tflops(torch, precision, reps=10 if quick else 20)
        state = gpu_state(torch, device)  # read right after the heaviest work
        for precision, r in results.items():
            line = m.Line(f"matmul {precision}", "matmul", round(r["tflops"], 1), "TFLOP/s",
                          reference_label="datasheet dense peak", details=r)  # fmt: skip
            cause = m.clock_cause(state)
            if precision == "tf32":
                cause = m.tf32_cause(r["tflops"], peak("fp32_tflops")) or cause
            add(m.judge(line, peak(f"{precision}_tflops"), m.MATMUL_FLOOR, cause))

    if "memcopy" in groups:
        say("device copy …")
        r = measure.memcopy_gbs(torch, reps=10 if quick else 20)
        state = state or gpu_state(torch, device)
        line = m.Line("memcopy", "memory", round(r["gbs"], 1), "GB/s",
                      reference_label="datasheet bandwidth", details=r)  # fmt: skip
        add(m.judge(line, peak("bandwidth_gbs"), m.COPY_FLOOR, m.memory_cause(state)))

    if "h2d" in groups:
        for direction in ("h2d", "d2h"):
            say(f"pinned {direction} …")
            r = measure.pinned_copy_gbs(torch, direction)
            link = gpu_state(torch, device)  # the link may train down when idle: read now
            reference, label, link_cause = m.pcie_reference(link)
            line = m.Line(f"{direction} pinned", "pcie", round(r["gbs"], 1), "GB/s",
                          reference_label=label, details={**r, "link": {
                              k: v for k, v in link.items() if k.startswith("pcie")}})  # fmt: skip
            add(m.judge(line, reference, m.PCIE_FLOOR, link_cause))

    allreduce: dict[str, Any] | None = None
    if "allreduce" in groups:
        world = torch.cuda.device_count()
        if world < 2:
            allreduce = {"world_size": world, "skipped": f"needs two or more GPUs ({world})"}
            add(m.Line("allreduce 1 GiB", "nccl", None, "GB/s busbw",
                       details={"skipped": allreduce["skipped"]}))  # fmt: skip
        else:
            say(f"NCCL all-reduce across {world} GPUs …")
            allreduce = sweep(world, quick=quick)
            links = gpu_state(torch, device).get("nvlinks_active", 0)
            allreduce["nvlinks_active"] = links
            allreduce["topology"] = _topology()
            biggest = allreduce["rows"][-1] if allreduce["rows"] else None
            nvlink = peak("nvlink_gbs")
            reference = nvlink / 2 if nvlink and links else None
            line = m.Line(
                f"allreduce {human_bytes(biggest['bytes'], binary=True) if biggest else '1 GiB'}",
                "nccl",
                biggest["busbw_gbs"] if biggest else None,
                "GB/s busbw",
                reference_label="NVLink per direction" if reference else "",
                details={"error": allreduce.get("error"), "world_size": world},
            )
            cause = "NCCL not using NVLink (NCCL_P2P_DISABLE set? check NCCL_DEBUG=INFO)"
            add(m.judge(line, reference, m.NVLINK_FLOOR, cause))
            if not reference:
                notes.append(
                    "All-reduce: no NVLink reference (no active NVLink or no NVLink rate for "
                    "this GPU): bus bandwidth is absolute."
                )

    host: dict[str, Any] = {"cpu": _cpu_model(), "cpus": os.cpu_count()}
    workloads = [g for g in ("gpt2", "resnet50", "bert") if g in groups]
    if workloads:
        host["launch_us"] = round(measure.launch_us(torch), 2)
        _run_workloads(
            torch, workloads, quick, cc, peak("bf16_tflops"), host, lines, add, say, notes
        )

    return {
        "kind": "torchrig.bench",
        "schema": 1,
        "quick": quick,
        "groups": list(groups),
        "environment": env,
        "device_index": device,
        "gpu_record": rec.model_dump() if rec is not None else None,
        "lines": [line.to_dict() for line in lines],
        "allreduce": allreduce,
        "gpu_state": state,
        "host": host,
        "floors": {
            "matmul": m.MATMUL_FLOOR,
            "memcopy": m.COPY_FLOOR,
            "pcie": m.PCIE_FLOOR,
            "allreduce": m.NVLINK_FLOOR,
            "workload_mfu": m.WORKLOAD_MFU_FLOOR,
        },
        "baseline_source": m.BASELINE_SOURCE if rec_name in m.BASELINES else None,
        "notes": notes,
        "elapsed_s": round(time.perf_counter() - start, 1),
    }


def _run_workloads(
    torch: Any,
    names: Sequence[str],
    quick: bool,
    cc: tuple[int, int],
    bf16_peak: float | None,
    host: dict[str, Any],
    lines: list[m.Line],
    add: Callable[[m.Line], None],
    say: Say,
    notes: list[str],
) -> None:
    from torchrig.bench.workloads import UNITS, run_workload

    modes = (False,) if quick else (False, True)
    if quick:
        notes.append("--quick: compiled workloads skipped, fewer timed steps.")
    matmul_low = any(x.group == "matmul" and x.verdict == "low" for x in lines)
    for name in names:
        for compiled in modes:
            label = f"{name} {'compiled' if compiled else 'eager'}"
            if cc[0] < 8:
                add(m.Line(label, "workload", None, UNITS[name],
                           details={"skipped": "bf16 needs CC ≥ 8.0"}))  # fmt: skip
                continue
            say(f"{label} (bf16{', compiling first' if compiled else ''}) …")
            before = _cpu_times()
            try:
                r = run_workload(torch, name, compiled, steps=8 if quick else 20)
            except Exception as exc:
                first = (str(exc).strip().splitlines() or [""])[0][:300]
                add(m.Line(label, "workload", None, UNITS[name],
                           details={"error": f"{type(exc).__name__}: {first}"}))  # fmt: skip
                continue
            steal = m.steal_share(before, _cpu_times())
            r["host_steal_share"] = None if steal is None else round(steal, 4)
            line = m.Line(label, "workload", round(r["items_per_s"], 1), UNITS[name],
                          reference_label="MFU vs bf16 peak", details=r)  # fmt: skip
            m.judge_mfu(line, mfu(r["flops_per_item"], r["items_per_s"], bf16_peak))
            if line.verdict == "low":
                line.cause = m.workload_cause(compiled, matmul_low, steal, host.get("launch_us"))
            add(line)


def _cpu_model() -> str | None:
    from pathlib import Path

    try:
        for row in Path("/proc/cpuinfo").read_text().splitlines():
            if row.startswith("model name"):
                return row.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _cpu_times() -> tuple[int, int, int]:
    from pathlib import Path

    try:
        return m.cpu_times(Path("/proc/stat").read_text())
    except OSError:
        return 0, 0, 0


def _topology() -> str | None:
    import shutil
    import subprocess

    from torchrig.command import run_command

    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        done = run_command([exe, "topo", "-m"], 20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None
