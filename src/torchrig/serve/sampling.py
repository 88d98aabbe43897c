"""The next token from the last position's logits: greedy, temperature, nucleus (top-p).

temperature 0 is greedy (argmax, deterministic). Otherwise the logits are divided by the
temperature and, with top_p < 1, only the smallest set of most likely tokens whose
probabilities add up to top_p is kept (Holtzman et al., "The Curious Case of Neural Text
Degeneration", 2020), renormalised, and one token is drawn with the request's generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torchrig.errors import UsageError


@dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0
    top_p: float = 1.0

    def check(self) -> None:
        if not 0.0 <= self.temperature <= 100.0:
            raise UsageError(
                f"temperature must be between 0 and 100, not {self.temperature}",
                "0 is greedy; 0.7 to 1.0 is usual",
            )
        if not 0.0 < self.top_p <= 1.0:
            raise UsageError(
                f"top_p must be in (0, 1], not {self.top_p}", "1 keeps every token; e.g. 0.9"
            )


def next_token(logits: Any, sampling: Sampling, generator: Any) -> int:
    """One token id from a 1-D float tensor of logits."""
    import torch

    if sampling.temperature == 0.0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        # Keep a token while the mass before it is under top_p: the most likely always stays.
        sorted_probs = torch.where(before < sampling.top_p, sorted_probs, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    choice = torch.multinomial(probs / probs.sum(), 1, generator=generator)
    return int(choice)
