"""Decoding through a static KV cache whose one-token step is replayed from a CUDA graph.

Why: eager decoding on a GPU is bound by Python launching kernels, not by the GPU. Measured
on an H100 (benchmarks/results/serve-h100-2026-12-07.json), GPT-2 124M made 244 tokens/s
with transformers' DynamicCache and 261 without any cache: ~4 ms a token of launches, so
the cache bought nothing. A CUDA graph replays a whole step from one call.

How: a graph needs fixed shapes and fixed addresses, so the cache is transformers'
StaticCache (its keys and values preallocated to a length and updated in place). Its
position counter is a device tensor (StaticLayer.cumulative_length, transformers 5.17 and
5.25): the model derives the new token's position and its attention mask from it inside
the step, so the graph's only input is the token id, copied into a static buffer before
each replay, and the counter advances inside the replay. The prompt (prefill) runs eagerly
into the same cache; a new prompt, or a window that slid, resets the cache in place and
prefills again. This is transformers' own static-cache generation (generation/utils.py:
eager prefill, then a compiled decode step with torch.compile's "reduce-overhead" mode,
i.e. CUDA graphs) without torch.compile: nothing to compile, no recompiles.

Sizes: one cache (and graph) per length bucket, 64, 128, 256 … up to the model's context
(graphs.bucket_sizes): a request uses the smallest that holds prompt + new tokens, so a
short answer does not attend over a 1024-token cache. All are captured when a GPU model
first generates (the server's warm-up, before /readyz says ready). After each capture the
graph is checked against the same step run eagerly, at a position other than the one it
was captured at; a failed capture or check turns the graphs off for this model, says so
once on stderr, and generation goes on with the DynamicCache, as before.

Without graphs (`graphs=False`), the same static cache runs eagerly: on a CPU that is how
the tests prove the static-cache logic gives the tokens the dynamic one gives.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from torchrig.serve.graphs import bucket_sizes, capture, smallest_fit

MIN_BUCKET = 64  # the smallest cache: below it a step costs the same whatever the length
PROBE = (0, 1, 2)  # the check's prompt: any ids the vocabulary has


def cache_argument(model: Any) -> str:
    """transformers renamed forward's `past_key_values` to `cache` (5.2x; the old name is
    deprecated, to go in 5.40): use whichever this version's model takes."""
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class GraphError(RuntimeError):
    """A decode step could not be captured, or its graph does not match the eager step."""


class Bucket:
    """One static cache of `size` positions, with its step run eagerly or from a graph."""

    def __init__(self, model: Any, device: Any, size: int) -> None:
        import torch
        from transformers import StaticCache

        self.model, self.device, self.size = model, device, size
        self.cache = StaticCache(config=model.config, max_cache_len=size)
        self._cache_arg = cache_argument(model)
        self._token = torch.zeros((1, 1), dtype=torch.long, device=device)
        self._graph: Any = None
        self._logits: Any = None
        self.length = 0  # positions filled; checked on the host, as the graph cannot

    @property
    def graphed(self) -> bool:
        return self._graph is not None

    def _forward(self, input_ids: Any) -> Any:
        out = self.model(
            input_ids=input_ids, use_cache=True, logits_to_keep=1, **{self._cache_arg: self.cache}
        )
        return out.logits

    def prefill(self, ids: list[int]) -> Any:
        """The cache holds `ids` alone; the logits (1, 1, vocab) after the last one."""
        import torch

        if not 0 < len(ids) <= self.size:
            raise ValueError(f"{len(ids)} prompt tokens for a {self.size}-position cache")
        with torch.inference_mode():
            self.cache.reset()  # in place: the graph keeps reading the same memory
            logits = self._forward(torch.tensor([ids], device=self.device))
        self.length = len(ids)
        return logits

    def step(self, token: int, eager: bool = False) -> Any:
        """Append `token`; the logits after it. The graph's output is rewritten by the next
        step: read it (sample) before stepping again."""
        import torch

        if self.length >= self.size:
            # The graph would write past the cache on the device (an illegal access that
            # takes the process down): the caller's bucket was too small.
            raise ValueError(f"the {self.size}-position cache is full")
        with torch.inference_mode():
            self._token.fill_(token)
            if self._graph is not None and not eager:
                self._graph.replay()
                logits = self._logits
            else:
                logits = self._forward(self._token)
        self.length += 1
        return logits

    def capture(self, pool: Any = None) -> None:
        """Capture the step into a CUDA graph, then check it against the eager step."""
        self._check_graphable()
        # Warm-ups (inside `capture`) allocate the cache and advance it: start from one
        # token, so that they and the captured step stay inside the cache.
        self.prefill([PROBE[0]])
        self._graph, self._logits = capture(lambda: self._forward(self._token), pool=pool)
        self._check()

    def _check_graphable(self) -> None:
        import torch
        from transformers.cache_utils import StaticLayer

        for layer in self.cache.layers:
            # A sliding-window layer keeps a host-side length: a graph would freeze it.
            if type(layer) is not StaticLayer:
                raise GraphError(f"the cache has {type(layer).__name__} layers")
            if not isinstance(getattr(layer, "cumulative_length", None), torch.Tensor):
                raise GraphError("this transformers keeps the cache position on the host")
        if self.size < len(PROBE) + 2:
            raise GraphError(f"a {self.size}-position cache is too small to check")

    def _check(self) -> None:
        """Two steps replayed from the graph must give the logits the eager steps give,
        after a prompt of another length than the capture's: a position frozen into the
        graph at capture time would show here."""
        import torch

        outputs = []
        for eager in (False, True):
            self.prefill(list(PROBE))
            outputs.append([self.step(t, eager).float().clone() for t in (PROBE[1], PROBE[2])])
        for graphed, plain in zip(*outputs, strict=True):
            scale = float(plain.abs().max()) + 1e-3
            if not torch.allclose(graphed, plain, rtol=0.0, atol=2e-2 * scale):
                worst = float((graphed - plain).abs().max())
                raise GraphError(f"the replayed step differs from the eager one by {worst:.3g}")


class StaticDecoder:
    """Static KV caches for one model, a bucket per length, used by one generation at a
    time (a second one at the same time gets None and decodes the dynamic way)."""

    def __init__(
        self,
        model: Any,
        device: Any,
        context: int,
        graphs: bool,
        min_bucket: int = MIN_BUCKET,
    ) -> None:
        self.model, self.device, self.graphs = model, device, graphs
        self.sizes = bucket_sizes(context, min(min_bucket, context))
        self._buckets: dict[int, Bucket] = {}
        self._busy = threading.Lock()

    def bucket(self, need: int) -> Bucket:
        """The smallest bucket that holds `need` positions (the largest past it)."""
        size = smallest_fit(self.sizes, need) or self.sizes[-1]
        if size not in self._buckets:
            bucket = Bucket(self.model, self.device, size)
            if self.graphs:
                bucket.capture()
            self._buckets[size] = bucket
        return self._buckets[size]

    def capture_all(self) -> None:
        """Every bucket's graph now (largest first: a failure shows before the rest)."""
        for size in reversed(self.sizes):
            self.bucket(size)

    @contextlib.contextmanager
    def session(self, need: int) -> Iterator[Bucket | None]:
        """A bucket for one generation, or None while another generation holds them."""
        if not self._busy.acquire(blocking=False):
            yield None
            return
        try:
            yield self.bucket(need)
        finally:
            self._busy.release()


def describe(decoder: StaticDecoder) -> str:
    sizes = decoder.sizes
    if len(sizes) == 1:
        return f"decoding: CUDA graphs on (static KV cache; 1 size captured: {sizes[0]} tokens)"
    return (
        f"decoding: CUDA graphs on (static KV cache; {len(sizes)} sizes captured: "
        f"{sizes[0]}…{sizes[-1]} tokens)"
    )


def graphed(lm: Any, say: Callable[[str], None] = _stderr) -> StaticDecoder | None:
    """The GPU model's graphed decoder, captured at its first use; None (and one line
    saying why) where it cannot be: generation then uses the DynamicCache."""
    if "graph" in lm.decoders:
        return lm.decoders["graph"]  # type: ignore[no-any-return]
    decoder: StaticDecoder | None = None
    if getattr(lm.device, "type", "cpu") == "cuda":  # a CPU decodes eagerly, as it always did
        try:
            decoder = StaticDecoder(lm.model, lm.device, lm.context, graphs=True)
            decoder.capture_all()
            line = describe(decoder)
        except Exception as exc:  # any capture failure leaves the eager path generating
            decoder = None
            reason = " ".join(str(exc).split())[:200] or type(exc).__name__
            line = f"decoding: CUDA graphs off (capture failed: {reason}); DynamicCache"
        say(line)
    lm.decoders["graph"] = decoder
    return decoder


def pick(lm: Any, cache: str, say: Callable[[str], None] = _stderr) -> StaticDecoder | None:
    """The static decoder a request's `cache` asks for, or None for the DynamicCache.

    auto     graphs on a GPU where they captured; the DynamicCache elsewhere (CPU)
    static   the static cache: graphs on a GPU where they captured, eagerly elsewhere
    dynamic  transformers' DynamicCache, eagerly (what every step did before graphs)
    """
    if cache == "dynamic":
        return None
    on_gpu = getattr(lm.device, "type", "cpu") == "cuda"
    decoder = graphed(lm, say) if on_gpu else None
    if decoder is not None or cache == "auto":
        return decoder
    if "eager" not in lm.decoders:
        lm.decoders["eager"] = StaticDecoder(lm.model, lm.device, lm.context, graphs=False)
    return lm.decoders["eager"]  # type: ignore[no-any-return]
