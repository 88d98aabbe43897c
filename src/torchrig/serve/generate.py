"""Text generation with a KV cache, stop strings and the model's context length.

The prompt is run once (prefill) and its keys and values are kept; every new token then
costs one position's forward instead of the whole sequence's. The cache (Request.cache):

    auto     on a GPU, a static cache whose one-token step replays a CUDA graph
             (decode_graph.py: ~4 ms of Python kernel launches a token become one call);
             on a CPU, or where the graphs could not be captured, transformers'
             DynamicCache, eagerly
    static   the static cache, through the graphs on a GPU and eagerly elsewhere
    dynamic  the DynamicCache, eagerly (generation before the graphs)

`use_cache=False` recomputes everything each step: it is only there for the benchmark
that measures what the cache buys.

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

import contextlib
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Literal

from torchrig.errors import UsageError
from torchrig.serve import decode_graph
from torchrig.serve.decode_graph import StaticDecoder, cache_argument
from torchrig.serve.lm import LanguageModel
from torchrig.serve.sampling import Sampling, next_token
from torchrig.serve.textstream import TextStream

Overflow = Literal["refuse", "slide"]
CacheKind = Literal["auto", "static", "dynamic"]


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
    cache: CacheKind = "auto"  # which KV cache (the module's docstring); with use_cache


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


def _returned_cache(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


class _DynamicSteps:
    """transformers' DynamicCache (or no cache), with decode_graph.Bucket's two calls."""

    def __init__(self, lm: LanguageModel, use_cache: bool) -> None:
        self.model, self.device, self.use_cache = lm.model, lm.device, use_cache
        self.cache_arg = cache_argument(lm.model)
        self.past: Any = None

    def prefill(self, ids: list[int]) -> Any:
        import torch

        step = torch.tensor([ids], device=self.device)
        out = self.model(input_ids=step, use_cache=self.use_cache, logits_to_keep=1)
        self.past = _returned_cache(out) if self.use_cache else None
        return out.logits

    def step(self, token: int) -> Any:
        import torch

        step = torch.tensor([[token]], device=self.device)
        out = self.model(
            input_ids=step, use_cache=True, logits_to_keep=1, **{self.cache_arg: self.past}
        )
        self.past = _returned_cache(out)
        return out.logits


def token_ids(
    lm: LanguageModel,
    ids: list[int],
    count: int,
    sampling: Sampling,
    generator: Any,
    use_cache: bool = True,
    cancelled: Callable[[], bool] = lambda: False,
    decoder: StaticDecoder | None = None,
) -> Generator[tuple[int, bool], None, None]:
    """Yield (token, slid) up to `count` times; stops early at EOS (which it yields).

    With a static `decoder` the cache is its bucket for the prompt + `count` tokens (the
    DynamicCache while another generation holds it); without one, the DynamicCache, or
    no cache with use_cache=False (the whole window every step)."""
    import torch

    window = list(ids)
    eos = lm.eos_id
    with contextlib.ExitStack() as hold:
        bucket = None
        if use_cache and decoder is not None:
            bucket = hold.enter_context(decoder.session(min(lm.context, len(ids) + count)))
        steps = bucket if bucket is not None else _DynamicSteps(lm, use_cache)
        fresh = True  # the cache does not hold the window: prefill it
        with torch.inference_mode():
            for _ in range(count):
                if cancelled():
                    return
                slid = False
                if len(window) >= lm.context:
                    # Full: drop the oldest quarter; the cache is rebuilt from what is left
                    # (a static cache is reset in place and prefilled again).
                    window = window[len(window) - (3 * lm.context) // 4 :]
                    fresh, slid = True, True
                logits = steps.prefill(window) if fresh else steps.step(window[-1])
                fresh = not use_cache
                token = next_token(logits[0, -1, : lm.vocab], sampling, generator)
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
    # Before the clock starts: a GPU model's first generation captures its graphs here.
    decoder = decode_graph.pick(lm, req.cache) if req.use_cache else None
    start = time.perf_counter()
    # Closed when the answer stops early (EOS, a stop string, a client gone), so that
    # the static cache it holds is free for the next generation at once.
    with contextlib.closing(
        token_ids(lm, ids, count, req.sampling, generator, req.use_cache, cancelled, decoder)
    ) as tokens:
        for token, slid in tokens:
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
