"""What verify checks against, and how a result is recorded and shown. Pure: no torch here.

Errors are relative Frobenius norms, ‖out − ref‖ / ‖ref‖, with the reference computed in
float64 from the very operands the GPU was given (so input rounding to bf16/fp16 is not
counted against the product; TF32's internal rounding of fp32 operands is). Typical values
on a healthy GPU, K = 2048 random normal operands:

    bf16  ~2e-3  (output rounding to 8 mantissa bits)          tolerance 1e-2
    fp16  ~3e-4  (output rounding to 11 mantissa bits)         tolerance 2e-3
    tf32  ~3e-4  (operands rounded to 10 mantissa bits)        tolerance 2e-3
    fp32  ~1e-6  (accumulation only)                           tolerance 5e-5

The fp32 tolerance sits under TF32's typical error on purpose: a product that silently ran in
TF32 when fp32 was asked for fails. NaN or inf never passes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["pass", "fail", "skip"]

# Matmul: ‖out − ref‖/‖ref‖ against a float64 product of the same operands.
MATMUL_TOLERANCE: dict[str, float] = {"bf16": 1e-2, "fp16": 2e-3, "tf32": 2e-3, "fp32": 5e-5}
MATMUL_SIZE = 2048
# torch.compile vs eager, fp32 with TF32 off, forward output and every gradient.
COMPILE_TOLERANCE = 1e-4
# A fused SDPA backend vs the math backend run in fp32 on the same bf16/fp16 inputs:
# output and the gradients of q, k and v.
SDPA_TOLERANCE = 2e-2
# AMP: the loss after the last step must be at most this share of the first step's loss.
AMP_STEPS = 20
AMP_LOSS_RATIO = 0.7
# Pinned H2D/D2H and the NCCL all-reduce are integer-valued: they must be exact.


def rel_error_verdict(error: float, tolerance: float) -> Status:
    """pass when the error is finite and within tolerance; NaN and inf always fail."""
    return "pass" if math.isfinite(error) and error <= tolerance else "fail"


def loss_decreased(losses: list[float], ratio: float = AMP_LOSS_RATIO) -> bool:
    """Every loss finite, and the last at most `ratio` times the first."""
    if len(losses) < 2 or not all(math.isfinite(x) for x in losses):
        return False
    return losses[-1] <= ratio * losses[0]


@dataclass
class CheckResult:
    """One check on one device (device None: a check of the host or of all GPUs at once)."""

    name: str
    status: Status
    detail: str
    device: str | None = None
    numbers: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def line(self) -> str:
        where = f" [{self.device}]" if self.device else ""
        return f"{self.status.upper():<4}  {self.name}{where}: {self.detail} ({self.seconds:.1f} s)"


@dataclass
class VerifyReport:
    environment: dict[str, Any]
    checks: list[CheckResult] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.status != "fail" for c in self.checks)

    def counts(self) -> dict[str, int]:
        out = {"pass": 0, "fail": 0, "skip": 0}
        for c in self.checks:
            out[c.status] += 1
        return out

    def summary(self) -> str:
        n = self.counts()
        verdict = "all checks passed" if self.passed else f"{n['fail']} check(s) FAILED"
        return (
            f"{verdict}: {n['pass']} passed, {n['fail']} failed, {n['skip']} skipped "
            f"in {self.elapsed_s:.1f} s"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "torchrig.verify",
            "schema": 1,
            "passed": self.passed,
            "counts": self.counts(),
            "elapsed_s": round(self.elapsed_s, 2),
            "tolerances": {
                "matmul_rel_error": MATMUL_TOLERANCE,
                "matmul_size": MATMUL_SIZE,
                "compile_rel_error": COMPILE_TOLERANCE,
                "sdpa_rel_error": SDPA_TOLERANCE,
                "amp_loss_ratio": AMP_LOSS_RATIO,
                "amp_steps": AMP_STEPS,
                "pinned_roundtrip": "exact",
                "nccl_allreduce": "exact",
            },
            "environment": self.environment,
            "checks": [asdict(c) for c in self.checks],
        }


def fmt_err(x: float) -> str:
    return f"{x:.1e}" if math.isfinite(x) else str(x)
