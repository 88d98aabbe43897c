"""Text generation with a KV cache, stop strings and the model's context length.

The prompt is run once (prefill) and its keys and values are kept (transformers'
DynamicCache, passed as `cache`); every new token then costs one position's forward instead
of the whole sequence's. `use_cache=False` recomputes everything each step: it is only there for the
benchmark that measures what the cache buys.

The context length is what the model was trained with (config n_positions /
max_position_embeddings): GPT-2's learned position table has no row past it, so a longer
sequence is an index error, and a RoPE model past it produces text it never learned. Two
rules, chosen by the caller:

    refuse  prompt + max_new_tokens must fit (OpenAI's rule): ContextError otherwise
    slide   the prompt keeps its last tokens that fit, and when the sequence fills the
            context the oldest quarter is dropped and the cache rebuilt from the rest
            (absolute positions cannot be shifted inside a cache); the model sees at most
            `context` tokens, and the text goes on
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from torchrig.errors import UsageError
from torchrig.serve.lm import LanguageModel
from torchrig.serve.sampling import Sampling, next_token
from torchrig.serve.textstream import TextStream

Overflow = Literal["refuse", "slide"]


class ContextError(UsageError):
    """The prompt (plus what was asked to generate) does not fit the model's context."""


@dataclass(frozen=True)
class Request:
    prompt_ids: list[int]
    max_new_tokens: int | None = 64  # None: up to the end of the context
    sampling: Sampling = field(default_factory=Sampling)
    stop: tuple[str, ...] = ()
    seed: int | None = None
    overflow: Overflow = "refuse"
    use_cache: bool = True


@dataclass
class Result:
    text: str = ""
    finish_reason: str = "length"  # "stop" (EOS or a stop string) or "length"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    slid: bool = False  # the prompt was cut or the window slid (overflow="slide")

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0


def plan_lengths(lm: LanguageModel, req: Request) -> tuple[list[int], int, bool]:
    """(the prompt ids the model will see, how many tokens to generate, whether cut)."""
    n = len(req.prompt_ids)
    if n == 0:
        raise UsageError("the prompt is empty", "give a prompt of at least one token")
    if req.max_new_tokens is not None and req.max_new_tokens < 1:
        raise UsageError(
            f"max_tokens must be at least 1, not {req.max_new_tokens}", "e.g. max_tokens 64"
        )
    ctx = lm.context
    if req.overflow == "slide":
        wanted = req.max_new_tokens if req.max_new_tokens is not None else ctx
        keep = ctx - 1  # room for at least one new token before the first slide
        ids = req.prompt_ids[-keep:]
        return ids, wanted, len(ids) < n
    if n >= ctx:
        raise ContextError(
            f"the prompt is {n} tokens; this model's context is {ctx} tokens "
            "(its training length), so nothing can be generated",
            "shorten the prompt, or let the window slide (generate --overflow slide; "
            "serve --overflow slide)",
        )
    if req.max_new_tokens is None:
        return list(req.prompt_ids), ctx - n, False
    if n + req.max_new_tokens > ctx:
        raise ContextError(
            f"the prompt is {n} tokens and max_tokens is {req.max_new_tokens}: {n} + "
            f"{req.max_new_tokens} is more than this model's context of {ctx} tokens",
            f"ask for at most {ctx - n} new tokens, shorten the prompt, or let the window "
            "slide (--overflow slide)",
        )
    return list(req.prompt_ids), req.max_new_tokens, False


def _cache_argument(model: Any) -> str:
    """transformers renamed forward's `past_key_values` to `cache` (5.2x; the old name is
    deprecated, to go in 5.40): use whichever this version's model takes."""
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _returned_cache(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def token_ids(
    lm: LanguageModel,
    ids: list[int],
    count: int,
    sampling: Sampling,
    generator: Any,
    use_cache: bool = True,
    cancelled: Callable[[], bool] = lambda: False,
) -> Iterator[tuple[int, bool]]:
    """Yield (token, slid) up to `count` times; stops early at EOS (which it yields)."""
    import torch

    window = list(ids)
    past: Any = None
    cache_arg = _cache_argument(lm.model)
    model, device, eos = lm.model, lm.device, lm.eos_id
    with torch.inference_mode():
        for _ in range(count):
            if cancelled():
                return
            slid = False
            if len(window) >= lm.context:
                # Full: drop the oldest quarter; the cache is rebuilt from what is left.
                window = window[len(window) - (3 * lm.context) // 4 :]
                past, slid = None, True
            if use_cache and past is not None:
                step = torch.tensor([window[-1:]], device=device)
                out = model(input_ids=step, use_cache=True, logits_to_keep=1, **{cache_arg: past})
            else:
                step = torch.tensor([window], device=device)
                out = model(input_ids=step, use_cache=use_cache, logits_to_keep=1)
            past = _returned_cache(out) if use_cache else None
            logits = out.logits[0, -1, : lm.vocab]
            token = next_token(logits, sampling, generator)
            yield token, slid
            if eos is not None and token == eos:
                return
            window.append(token)


def stream(
    lm: LanguageModel,
    req: Request,
    cancelled: Callable[[], bool] = lambda: False,
) -> Generator[str, None, Result]:
    """Text pieces as they are generated; the generator's return value is the Result."""
    import torch

    req.sampling.check()
    ids, count, cut = plan_lengths(lm, req)
    generator = torch.Generator(device=lm.device)
    generator.manual_seed(req.seed if req.seed is not None else int(time.time_ns() % 2**63))
    text = TextStream(lm.tokenizer, req.stop)
    result = Result(prompt_tokens=len(ids), slid=cut)
    start = time.perf_counter()
    for token, slid in token_ids(lm, ids, count, req.sampling, generator, req.use_cache, cancelled):
        result.completion_tokens += 1
        result.slid |= slid
        if token == lm.eos_id:
            result.finish_reason = "stop"
            break
        delta = text.push(token)
        if delta:
            yield delta
        if text.stopped:
            result.finish_reason = "stop"
            break
    tail = text.flush()
    if tail:
        yield tail
    result.text = text.text
    result.seconds = time.perf_counter() - start
    return result  # the caller reads it from StopIteration.value


def complete(lm: LanguageModel, req: Request) -> Result:
    """The whole answer at once."""
    gen = stream(lm, req)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            result: Result = stop.value
            return result
