"""Run verify's checks on every visible GPU and collect one report."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

from torchrig.errors import UsageError
from torchrig.verify.result import CheckResult, VerifyReport

GROUPS = ("matmul", "amp", "compile", "sdpa", "dataloader", "pinned", "nccl")

# A hint appended to a failure's message, where one cause is far more likely than others.
_HINTS = {
    "dataloader workers": "small /dev/shm? run the container with --shm-size=8g",
    "nccl all-reduce": "try NCCL_DEBUG=WARN; check /dev/shm size and --ulimit memlock=-1",
    "torch.compile": "torch.compile needs a C compiler and a writable cache directory",
}


def parse_only(value: str | None, groups: tuple[str, ...]) -> tuple[str, ...]:
    """`--only a,b` → the groups in canonical order; unknown names are a usage error."""
    if not value:
        return groups
    wanted = [w.strip() for w in value.split(",") if w.strip()]
    unknown = [w for w in wanted if w not in groups]
    if unknown:
        raise UsageError(
            f"unknown check group(s) {', '.join(unknown)}", f"choose from {', '.join(groups)}"
        )
    return tuple(g for g in groups if g in wanted)


def _guard(name: str, device: str | None, fn: Callable[[], CheckResult]) -> CheckResult:
    start = time.perf_counter()
    try:
        result = fn()
    except Exception as exc:  # a crashing check is a failed check, loudly
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        hint = _HINTS.get(name)
        detail = f"raised {type(exc).__name__}: {first}" + (f" — {hint}" if hint else "")
        result = CheckResult(name, "fail", detail, seconds=round(time.perf_counter() - start, 2))
    result.device = device if result.device is None else result.device
    return result


def run_verify(
    torch: Any,
    groups: tuple[str, ...] = GROUPS,
    on_result: Callable[[CheckResult], None] | None = None,
) -> VerifyReport:
    from torchrig.verify import checks
    from torchrig.verify.env import environment
    from torchrig.verify.nccl import allreduce_check

    start = time.perf_counter()
    report = VerifyReport(environment=environment(torch))

    def add(result: CheckResult) -> None:
        report.checks.append(result)
        if on_result:
            on_result(result)

    devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    for dev in devices:
        torch.cuda.set_device(dev)
        if "matmul" in groups:
            for precision in ("bf16", "fp16", "tf32", "fp32"):
                add(
                    _guard(
                        f"matmul {precision}", dev, partial(checks.matmul, torch, dev, precision)
                    )
                )
        if "amp" in groups:
            add(_guard("amp training", dev, partial(checks.amp_training, torch, dev)))
        if "compile" in groups:
            add(_guard("torch.compile", dev, partial(checks.compile_matches_eager, torch, dev)))
        if "sdpa" in groups:
            for backend, why_not in checks.sdpa_gates(torch, dev).items():
                run = partial(checks.sdpa_backend, torch, dev, backend, why_not)
                add(_guard(f"sdpa {backend}", dev, run))
        if "pinned" in groups:
            add(_guard("pinned round trip", dev, partial(checks.pinned_roundtrip, torch, dev)))
    if "dataloader" in groups:
        add(_guard("dataloader workers", None, lambda: checks.dataloader_shm(torch)))
    if "nccl" in groups:
        if len(devices) >= 2:
            add(_guard("nccl all-reduce", "all", lambda: allreduce_check(len(devices))))
        else:
            add(
                CheckResult(
                    "nccl all-reduce",
                    "skip",
                    f"needs two or more GPUs ({len(devices)} visible)",
                    device="all",
                )
            )
    report.elapsed_s = time.perf_counter() - start
    return report
