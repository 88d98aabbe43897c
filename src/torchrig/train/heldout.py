"""A causal LM's held-out loss and perplexity (`--val-fraction`): the validation curve of a
language model.

The same windows every time: each evaluation reads `n_batches` batches from a fresh
iterator over the held-out tokens with a fixed seed, so two points of the curve differ only
by the weights. Every rank evaluates its own slice (the model may be sharded: its forward
is a collective), and the summed loss and token count are reduced over ranks, so the number
is the mean cross-entropy per held-out token of all ranks. Eval mode, no gradients, the
plain model (not the compiled training graph, which eval mode would recompile).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

from torchrig.train import distributed as D


def heldout_loss(
    model: Any,
    batches: Iterator[tuple[Any, Any]],
    n_batches: int,
    dist: D.Dist,
    autocast: Callable[[], Any],
) -> dict[str, float]:
    """{"val_loss": mean cross-entropy per target token, "perplexity": exp of it}."""
    import torch
    import torch.nn.functional as F

    total = torch.zeros(2, dtype=torch.float64, device=dist.device)  # summed loss, tokens
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for _ in range(n_batches):
                x, y = next(batches)
                x, y = x.to(dist.device), y.to(dist.device)
                with autocast():
                    logits = model(input_ids=x).logits
                loss = F.cross_entropy(
                    logits.float().reshape(-1, logits.size(-1)), y.reshape(-1),
                    ignore_index=-100, reduction="sum",
                )  # fmt: skip
                total[0] += loss.double()
                total[1] += (y != -100).sum()
    finally:
        model.train(was_training)
    # all_reduce_mean of sums: the ratio is the same as of the ranks' total sums.
    summed = D.all_reduce_mean(total, dist)
    mean = float(summed[0] / summed[1].clamp(min=1))
    return {"val_loss": round(mean, 6), "perplexity": round(math.exp(min(mean, 700.0)), 4)}


class HeldOut:
    """When and how a run evaluates its held-out tokens.

    make_batches: a fresh iterator over this rank's held-out batches with a fixed seed (the
    recipe's data knows how); every: optimizer steps between evaluations (and one at the
    end of a complete run); n_batches: micro-batches per evaluation."""

    def __init__(
        self,
        make_batches: Callable[[], Iterator[tuple[Any, Any]]],
        every: int,
        n_batches: int,
    ) -> None:
        self.make_batches = make_batches
        self.every = every
        self.n_batches = n_batches

    def due(self, step: int, last: int) -> bool:
        return step == last or (self.every > 0 and step % self.every == 0)

    def evaluate(
        self, model: Any, step: int, dist: D.Dist, autocast: Callable[[], Any]
    ) -> dict[str, Any]:
        """The metrics.jsonl record of one evaluation: {"event": "eval", "step", "val_loss",
        "perplexity", "seconds"}."""
        import time

        began = time.perf_counter()
        found = heldout_loss(model, self.make_batches(), self.n_batches, dist, autocast)
        return {"event": "eval", "step": step, **found,
                "seconds": round(time.perf_counter() - began, 3)}  # fmt: skip
