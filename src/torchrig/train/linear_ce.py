"""Chunked linear + cross-entropy: the causal LM's output layer and loss in one autograd
Function that never holds the full logits tensor.

    loss = linear_cross_entropy(hidden, lm_head.weight, targets, 8192)  # Σ over targets

The plain path computes logits = hidden @ Wᵀ for every token at once (GPT-2 124M, 64 × 1024
tokens: 64 × 1024 × 50,304 bf16 = 6.6 GB), keeps them for the backward pass and walks them
three to four more times (log-softmax, its gradient, the two gradient matmuls): about 8 of
the 135 ms of an H100 step (issue 18). Here the tokens go through in chunks; for each chunk
the forward pass computes the logits, the loss and already the gradients with respect to
the hidden states and the weight (softmax minus one-hot, two matmuls), then drops the
chunk's logits. The backward pass only scales the stored gradients by the incoming
gradient. Peak memory falls by the logits (and their gradient); the arithmetic is the same.

Numerics follow the plain path under autocast: matmuls in the compute dtype (bf16 under
autocast, with the GEMM's fp32 accumulation), log-sum-exp, loss and softmax in fp32, the
weight gradient summed over chunks in fp32. Targets equal to `ignore_index` (padding, SFT
prompt tokens) add nothing to the loss or the gradients.

Weight tying (GPT-2's lm_head is its token embedding) needs nothing special: the Function
returns the gradient of its `weight` input and autograd adds it to the embedding's.

torch.compile traces the Function (dynamo supports custom autograd Functions): the chunk
loop is unrolled into the graph and inductor fuses each chunk's softmax, one-hot and casts
into one or two kernels. Measured only for correctness on a CPU (tests/train/
test_linear_ce.py); its speed on a GPU is benchmarks/train_causal_lm.py --variants.
"""

from __future__ import annotations

from typing import Any

import torch


def _compute_dtype(hidden: torch.Tensor) -> torch.dtype:
    """The dtype the plain path's lm_head matmul would run in: autocast's, else the input's."""
    kind = hidden.device.type
    if torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return hidden.dtype


class _LinearCrossEntropy(torch.autograd.Function):  # type: ignore[misc]
    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        ignore_index: int,
        chunk: int,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        n = hidden.shape[0]
        w = weight.to(dtype)
        columns = torch.arange(weight.shape[0], device=hidden.device)
        losses: list[torch.Tensor] = []
        grad_chunks: list[torch.Tensor] = []
        grad_weight: torch.Tensor | None = None
        for start in range(0, n, chunk):
            h = hidden[start : start + chunk].to(dtype)
            t = targets[start : start + chunk]
            valid = t != ignore_index
            logits = (h @ w.t()).float()
            lse = torch.logsumexp(logits, dim=-1)
            safe = torch.where(valid, t, 0)
            picked = logits.gather(1, safe.unsqueeze(1)).squeeze(1)
            losses.append(torch.where(valid, lse - picked, 0.0).sum())
            # d loss / d logits = softmax − one-hot, zero on ignored rows: one fused
            # pointwise pass under compile (the compare against `columns` is not stored).
            onehot = columns.unsqueeze(0) == safe.unsqueeze(1)
            grad = torch.exp(logits - lse.unsqueeze(1)) - onehot.float()
            grad = (grad * valid.unsqueeze(1).float()).to(dtype)
            grad_chunks.append((grad @ w).to(hidden.dtype))
            # The weight gradient summed in fp32 across chunks (one bf16 rounding per
            # chunk's matmul, as the plain path's single matmul has one).
            part = (grad.t() @ h).float()
            grad_weight = part if grad_weight is None else grad_weight + part
        assert grad_weight is not None, "no tokens"
        # One concatenation, not a slice write per chunk: a functional graph under compile.
        ctx.save_for_backward(torch.cat(grad_chunks), grad_weight.to(weight.dtype))
        return torch.stack(losses).sum()

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[Any, ...]:
        grad_hidden, grad_weight = ctx.saved_tensors
        return grad_hidden * grad_loss, grad_weight * grad_loss, None, None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    chunk_tokens: int,
    ignore_index: int = -100,
    compute_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Σ over targets of cross_entropy(hidden @ weight.T, targets), targets equal to
    `ignore_index` skipped; fp32 scalar. `hidden` (..., d), `weight` (vocab, d), `targets`
    hidden's leading shape; `chunk_tokens` tokens at a time (the recipe's choice:
    causal_lm.config.LOSS_CHUNK_TOKENS). Same value and gradients as the plain path."""
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be at least 1, not {chunk_tokens}")
    if targets.numel() == 0:
        raise ValueError("no tokens: linear_cross_entropy needs at least one")
    flat = hidden.reshape(-1, hidden.shape[-1])
    # The recipe passes its precision's dtype, so a compiled step asks nothing of the
    # autocast state; called without one, the dtype autocast would give the matmul.
    dtype = compute_dtype or _compute_dtype(hidden)
    # The Function's own ops run outside autocast: it picks every dtype itself.
    with torch.autocast(hidden.device.type, enabled=False):
        out: torch.Tensor = _LinearCrossEntropy.apply(
            flat, weight, targets.reshape(-1), ignore_index, chunk_tokens, dtype
        )
    return out
