"""AdamW, the learning-rate schedule and gradient clipping.

Weight decay goes on matrices only (linear and embedding weights): decaying biases and
norm gains pulls them towards zero for no regularisation benefit (GPT-2/nanoGPT practice).
The fused AdamW kernel updates every parameter in one launch on CUDA; on CPU the default
(foreach) implementation is used.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


def param_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    decay: list[Any] = []
    no_decay: list[Any] = []
    for p in model.parameters():
        if not p.requires_grad:
            continue  # frozen base weights under LoRA
        (decay if p.dim() >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(
    model: Any,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.95),
    eps: float = 1e-8,
) -> Any:
    import torch

    on_cuda = any(p.is_cuda for p in model.parameters())
    kwargs: dict[str, Any] = {"fused": True} if on_cuda else {}
    groups = [g for g in param_groups(model, weight_decay) if g["params"]]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, **kwargs)


def cosine_with_warmup(warmup: int, total: int, min_ratio: float) -> Callable[[int], float]:
    """Multiplier of the peak learning rate at optimizer step `step` (0-based): linear from
    1/warmup to 1 over `warmup` steps, then half a cosine down to `min_ratio` at `total`."""

    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        if step >= total:
            return min_ratio
        progress = (step - warmup) / max(1, total - warmup)
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def build_scheduler(optimizer: Any, warmup: int, total: int, min_ratio: float = 0.1) -> Any:
    """A LambdaLR (its state is just the step count, so it checkpoints as plain data)."""
    import torch

    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_with_warmup(warmup, total, min_ratio)
    )


def clip_gradients(model: Any, max_norm: float) -> Any:
    """Clip the global gradient norm; returns the norm before clipping (a tensor: reading
    it forces a sync, so the loop reads it only at log steps). max_norm <= 0 skips it."""
    import torch

    params = [p for p in model.parameters() if p.grad is not None]
    if max_norm <= 0 or not params:
        return None
    return torch.nn.utils.clip_grad_norm_(params, max_norm)


def optimizer_step(model: Any, optimizer: Any, scheduler: Any, scaler: Any, max_norm: float) -> Any:
    """The end of a training step, after the backward passes of its micro-batches:
    unscale (fp16), clip, step (skipped by the scaler when gradients overflowed), clear the
    gradients, advance the schedule. Returns the gradient norm before clipping (or None)."""
    if scaler is not None:
        scaler.unscale_(optimizer)  # clip the true gradients
    grad_norm = clip_gradients(model, max_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    return grad_norm


def follow_schedule(optimizer: Any, scheduler: Any) -> None:
    """After a resume: a run may change --steps, so its own schedule, not the saved one,
    sets the next learning rate (a no-op when nothing changed)."""
    factor = scheduler.lr_lambdas[0](scheduler.last_epoch)
    for group, base in zip(optimizer.param_groups, scheduler.base_lrs, strict=True):
        group["lr"] = base * factor
