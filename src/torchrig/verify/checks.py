"""The GPU checks. Each takes torch and a device, runs on that device only, and returns a
CheckResult with its numbers; an exception inside a check is caught by the runner and
recorded as a failure. Inputs are fresh random data, never zeros (zeros hide unwritten
outputs), and outputs are poisoned with NaN first where the API lets us pass `out=`.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from torchrig.verify.result import (
    AMP_LOSS_RATIO,
    AMP_STEPS,
    COMPILE_TOLERANCE,
    MATMUL_SIZE,
    MATMUL_TOLERANCE,
    SDPA_TOLERANCE,
    CheckResult,
    fmt_err,
    loss_decreased,
    rel_error_verdict,
)


def cc_of(torch: Any, device: str) -> tuple[int, int]:
    major, minor = torch.cuda.get_device_capability(device)
    return int(major), int(minor)


@contextlib.contextmanager
def tf32(torch: Any, enabled: bool) -> Iterator[None]:
    """TF32 for cuBLAS and cuDNN within the block; the previous settings afterwards."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def rel_error(torch: Any, out: Any, ref: Any) -> float:
    """‖out − ref‖ / ‖ref‖ in float64; NaN/inf in `out` give inf."""
    o = out.detach().double()
    r = ref.detach().double()
    if not bool(torch.isfinite(o).all()):
        return float("inf")
    return float(torch.linalg.vector_norm(o - r) / torch.linalg.vector_norm(r))


def _timed(fn: Any) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> CheckResult:
        start = time.perf_counter()
        result: CheckResult = fn(*args, **kwargs)
        result.seconds = round(time.perf_counter() - start, 2)
        return result

    return wrapper


_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "tf32": "float32", "fp32": "float32"}


@_timed
def matmul(torch: Any, device: str, precision: str, n: int = MATMUL_SIZE) -> CheckResult:
    name = f"matmul {precision}"
    major, minor = cc_of(torch, device)
    if precision in ("bf16", "tf32") and major < 8:
        return CheckResult(name, "skip", f"{precision} needs CC ≥ 8.0 (this GPU: {major}.{minor})")
    dtype = getattr(torch, _DTYPES[precision])
    gen = torch.Generator(device=device).manual_seed(int(time.time_ns()) % 2**31)
    a = torch.randn(n, n, device=device, generator=gen).to(dtype)
    b = torch.randn(n, n, device=device, generator=gen).to(dtype)
    out = torch.full((n, n), float("nan"), device=device, dtype=dtype)
    with tf32(torch, precision == "tf32"):
        torch.matmul(a, b, out=out)
    ref = a.double() @ b.double()
    torch.cuda.synchronize(device)
    err = rel_error(torch, out, ref)
    tol = MATMUL_TOLERANCE[precision]
    status = rel_error_verdict(err, tol)
    return CheckResult(
        name,
        status,
        f"{n}³ rel err {fmt_err(err)} (tolerance {tol:.0e})",
        numbers={"n": n, "rel_error": err, "tolerance": tol},
    )


class _MLP:
    """Builds the tiny models used by the AMP and compile checks (torch imported lazily)."""

    @staticmethod
    def make(torch: Any, d_in: int, hidden: int, d_out: int) -> Any:
        nn = torch.nn
        return nn.Sequential(
            nn.Linear(d_in, hidden),
            nn.GELU(),
            nn.LayerNorm(hidden),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, d_out),
        )


@_timed
def amp_training(torch: Any, device: str, dtype_name: str | None = None) -> CheckResult:
    """AMP training of a small MLP on a fixed, learnable batch: the loss must fall.

    bf16 autocast where the GPU has bf16 (CC ≥ 8.0), else fp16 autocast with GradScaler."""
    major, _ = cc_of(torch, device)
    dtype_name = dtype_name or ("bf16" if major >= 8 else "fp16")
    dtype = torch.bfloat16 if dtype_name == "bf16" else torch.float16
    use_scaler = dtype_name == "fp16"
    torch.manual_seed(0)
    x = torch.randn(4096, 64, device=device)
    teacher = torch.randn(64, 10, device=device)
    y = (x @ teacher).argmax(dim=1)
    model = _MLP.make(torch, 64, 256, 10).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, fused=True)
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    losses: list[float] = []
    for _ in range(AMP_STEPS):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=dtype):
            logits = model(x)
            loss = torch.nn.functional.cross_entropy(logits.float(), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        losses.append(float(loss.detach()))
    ok = loss_decreased(losses)
    how = f"{dtype_name} autocast" + (" + GradScaler" if use_scaler else "") + " + fused AdamW"
    return CheckResult(
        "amp training",
        "pass" if ok else "fail",
        f"{how}: loss {losses[0]:.3f} → {losses[-1]:.3f} in {AMP_STEPS} steps "
        f"(must reach ≤ {AMP_LOSS_RATIO:.0%} of the first)",
        numbers={"dtype": dtype_name, "losses": [round(v, 5) for v in losses]},
    )


@_timed
def compile_matches_eager(torch: Any, device: str) -> CheckResult:
    """torch.compile (Inductor) of a tiny MLP: forward and gradients match eager in fp32."""
    major, minor = cc_of(torch, device)
    if major < 7:
        return CheckResult(
            "torch.compile", "skip", f"Triton needs CC ≥ 7.0 (this GPU: {major}.{minor})"
        )
    torch.manual_seed(1)
    model = _MLP.make(torch, 128, 256, 32).to(device)
    x = torch.randn(512, 128, device=device)
    with tf32(torch, False):
        eager_out = model(x)
        eager_out.square().mean().backward()
        eager_grads = [p.grad.detach().clone() for p in model.parameters()]
        model.zero_grad(set_to_none=True)
        compiled = torch.compile(model)
        out = compiled(x)
        out.square().mean().backward()
        grads = [p.grad for p in model.parameters()]
    errs = [rel_error(torch, out, eager_out)]
    errs += [rel_error(torch, g, e) for g, e in zip(grads, eager_grads, strict=True)]
    worst = max(errs)
    return CheckResult(
        "torch.compile",
        rel_error_verdict(worst, COMPILE_TOLERANCE),
        f"Inductor vs eager, fp32: output rel err {fmt_err(errs[0])}, worst gradient "
        f"{fmt_err(max(errs[1:]))} (tolerance {COMPILE_TOLERANCE:.0e})",
        numbers={"output_rel_error": errs[0], "worst_rel_error": worst},
    )


def sdpa_gates(torch: Any, device: str) -> dict[str, str | None]:
    """Each fused backend → None if this GPU should have it, else why not (FACTS T8)."""
    major, minor = cc_of(torch, device)
    cc = major * 10 + minor
    here = f"this GPU is sm_{major}{minor}"
    cudnn = torch.backends.cudnn.version() or 0
    return {
        "flash": None if 80 <= cc <= 121 else f"flash attention needs sm_80 to sm_121 ({here})",
        "cudnn": (
            None
            if 80 <= cc <= 121 and cudnn >= 8903
            else f"cuDNN attention needs sm_80 to sm_121 and cuDNN ≥ 8.9.3 ({here}, cuDNN {cudnn})"
        ),
        "efficient": None if cc >= 50 else f"memory-efficient attention needs sm_50+ ({here})",
    }


@_timed
def sdpa_backend(torch: Any, device: str, backend: str, why_not: str | None) -> CheckResult:
    """One fused SDPA backend, forced with sdpa_kernel, against the math backend in fp32:
    causal attention forward and the gradients of q, k and v."""
    name = f"sdpa {backend}"
    if why_not:
        return CheckResult(name, "skip", why_not)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    sdpa = torch.nn.functional.scaled_dot_product_attention
    which = {
        "flash": SDPBackend.FLASH_ATTENTION,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
    }[backend]
    major, _ = cc_of(torch, device)
    dtype = torch.bfloat16 if major >= 8 else torch.float16
    shape = (2, 8, 256, 64)  # batch, heads, sequence, head dim
    q, k, v = (torch.randn(shape, device=device, dtype=dtype) for _ in range(3))
    grad_out = torch.randn(shape, device=device, dtype=dtype)

    def run(inputs: list[Any], kernel: Any) -> list[Any]:
        leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
        with sdpa_kernel([kernel]):
            out = sdpa(*leaves, is_causal=True)
        out.backward(grad_out.to(out.dtype))
        return [out.detach()] + [t.grad for t in leaves]

    with tf32(torch, False):
        ref = run([t.float() for t in (q, k, v)], SDPBackend.MATH)
    got = run([q, k, v], which)
    errs = [rel_error(torch, g, r) for g, r in zip(got, ref, strict=True)]
    worst = max(errs)
    return CheckResult(
        name,
        rel_error_verdict(worst, SDPA_TOLERANCE),
        f"causal {str(dtype).removeprefix('torch.')} {shape}: out rel err {fmt_err(errs[0])}, "
        f"worst of dq/dk/dv {fmt_err(max(errs[1:]))} vs math in fp32 "
        f"(tolerance {SDPA_TOLERANCE:.0e})",
        numbers={"out_rel_error": errs[0], "worst_rel_error": worst},
    )


@_timed
def pinned_roundtrip(torch: Any, device: str, mib: int = 256) -> CheckResult:
    """Random bytes: pinned host → device → pinned host, asynchronous copies, exact."""
    n = mib * 2**20
    src = torch.randint(0, 256, (n,), dtype=torch.uint8).pin_memory()
    back = torch.empty(n, dtype=torch.uint8).pin_memory()
    back.fill_(0)
    dev = torch.empty(n, dtype=torch.uint8, device=device)
    stream = torch.cuda.Stream(device=device)
    start = torch.cuda.Event(enable_timing=True)
    mid = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    with torch.cuda.stream(stream):
        start.record(stream)
        dev.copy_(src, non_blocking=True)
        mid.record(stream)
        back.copy_(dev, non_blocking=True)
        end.record(stream)
    end.synchronize()
    exact = bool(torch.equal(src, back))
    h2d = n / (start.elapsed_time(mid) / 1e3) / 1e9
    d2h = n / (mid.elapsed_time(end) / 1e3) / 1e9
    return CheckResult(
        "pinned round trip",
        "pass" if exact else "fail",
        f"{mib} MiB random bytes host→device→host {'exact' if exact else 'DIFFER'} "
        f"(H2D {h2d:.1f} GB/s, D2H {d2h:.1f} GB/s, one pass)",
        numbers={"mib": mib, "exact": exact, "h2d_gbs": round(h2d, 1), "d2h_gbs": round(d2h, 1)},
    )


class _IndexedTensors:
    """A dataset whose item i is a tensor anyone can recompute from i (workers fill it)."""

    def __init__(self, n: int, shape: tuple[int, ...]) -> None:
        self.n = n
        self.shape = shape

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Any:
        import torch

        return torch.full(self.shape, float(i)) + torch.arange(self.shape[-1], dtype=torch.float32)


@_timed
def dataloader_shm(torch: Any, workers: int = 2) -> CheckResult:
    """DataLoader with worker processes: batches cross into this process through /dev/shm
    (the default sharing strategy), then pinned memory; every value checked."""
    shm = shutil.disk_usage("/dev/shm") if Path("/dev/shm").is_dir() else None
    shm_note = f"/dev/shm {shm.total / 2**20:.0f} MiB" if shm else "no /dev/shm"
    shape = (3, 64, 64)
    n, batch = 256, 32
    loader = torch.utils.data.DataLoader(
        _IndexedTensors(n, shape),
        batch_size=batch,
        num_workers=workers,
        pin_memory=True,
        persistent_workers=False,
    )
    seen = 0
    wrong = 0
    for b, tensor in enumerate(loader):
        idx = torch.arange(b * batch, b * batch + tensor.shape[0], dtype=torch.float32)
        want = idx.view(-1, 1, 1, 1) + torch.arange(shape[-1], dtype=torch.float32)
        wrong += int((tensor != want.expand_as(tensor)).sum())
        seen += tensor.shape[0]
    ok = wrong == 0 and seen == n
    return CheckResult(
        "dataloader workers",
        "pass" if ok else "fail",
        f"{workers} workers, {seen}/{n} samples of {list(shape)} through shared memory, "
        f"{wrong} wrong values ({shm_note}, strategy "
        f"{torch.multiprocessing.get_sharing_strategy()})",
        numbers={"workers": workers, "samples": seen, "wrong": wrong, "shm": shm_note},
    )
