"""CUDA graphs for a classifier served on a GPU.

A served BERT-base is bound by Python launching its few hundred kernels (about 8 ms per
call on an H100, at batch 1 or 32 alike), and that Python holds the GIL that the server's
event loop needs to read and answer requests: measured on an H100 (2026-12-07), 32 clients
got 165 requests/s batched against 114 unbatched, with batches of 5. A CUDA graph replays
the whole forward from one call. A graph needs fixed shapes, so a call is padded up to a
bucket: the batch to a power of two up to --max-batch, a text to 16, 32, 64 … tokens up to
the trained max_length. One graph per bucket is captured before /readyz says ready.

Padding is inert: padded tokens are masked out, padded rows attend to their first token
only, and every row (BERT; ResNet in eval mode) is computed on its own, so the real rows'
logits do not change; only they are returned. A call larger than every bucket runs
eagerly. The forward runs under bf16 autocast where the GPU has bf16, as in training.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

TEXT_MIN_BUCKET = 16  # shorter texts share the 16-token graph: padding them costs ~nothing


def bucket_sizes(limit: int, start: int = 1) -> list[int]:
    """Powers of two from `start` below `limit`, then `limit` itself."""
    sizes, size = [], max(1, start)
    while size < limit:
        sizes.append(size)
        size *= 2
    return [*sizes, max(1, limit)]


def smallest_fit(sizes: Sequence[int], need: int) -> int | None:
    return next((size for size in sizes if size >= need), None)


def capture(
    run: Callable[[], Any],
    context: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    pool: Any = None,
    warmups: int = 2,
) -> tuple[Any, Any]:
    """`run()` captured into a CUDA graph: (the graph, run's output, rewritten by each replay).

    run is first called `warmups` times on a side stream, for real: lazy initialisation,
    allocations that must outlive the graph and kernel choice happen there, never inside
    the capture. `context()` wraps every call (e.g. autocast)."""
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), torch.inference_mode(), context():
        for _ in range(warmups):
            run()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), context(), torch.cuda.graph(graph, pool=pool):
        out = run()
    return graph, out


@dataclass(frozen=True)
class Padding:
    """How a classifier's inputs grow to a bucket: each input's pad value, which input (if
    any) is the attention mask, and whether dimension 1 is a length (text) or not (images)."""

    values: tuple[float, ...]
    mask_index: int | None = None
    has_length: bool = False

    def pad(self, inputs: Sequence[Any], batch: int, length: int | None) -> tuple[Any, ...]:
        """`inputs` (arrays or CPU tensors) padded to `batch` rows (and `length` tokens): new
        NumPy arrays. NumPy, not torch: small NumPy ops keep the GIL, while each torch op
        releases and retakes it (a wait, when the event loop holds it)."""
        import numpy as np

        out = []
        for i, (given, value) in enumerate(zip(inputs, self.values, strict=True)):
            array = np.asarray(given)
            shape = list(array.shape)
            shape[0] = batch
            if self.has_length and length is not None:
                shape[1] = length
            padded = np.full(shape, value, dtype=array.dtype)
            padded[tuple(slice(0, n) for n in array.shape)] = array
            if i == self.mask_index:
                padded[array.shape[0] :, 0] = 1  # a padded row attends to one token, not none
            out.append(padded)
        return tuple(out)


class GraphedClassifier:
    """head(model(*inputs)) through one captured CUDA graph per bucket (head: what the
    caller reads of the logits, computed inside the graph, e.g. classifier.scores)."""

    def __init__(
        self,
        model: Any,
        device: Any,
        example: Sequence[Any],
        padding: Padding,
        max_batch: int,
        max_length: int | None = None,
        *,
        head: Callable[[Any], Any],
    ) -> None:
        import torch

        self._model = model
        self._head = head
        self._device = device
        self._padding = padding
        self._dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else None
        self.batches = bucket_sizes(max_batch)
        self.lengths = (
            bucket_sizes(max_length, min(TEXT_MIN_BUCKET, max_length))
            if padding.has_length and max_length
            else [None]
        )
        self._graphs: dict[tuple[int, int | None], tuple[Any, tuple[Any, ...], Any]] = {}
        pool = torch.cuda.graph_pool_handle()
        # Largest first: the smaller graphs then reuse the shared pool's memory.
        for batch in reversed(self.batches):
            for length in reversed(self.lengths):
                self._graphs[(batch, length)] = self._capture(example, batch, length, pool)

    def _autocast(self, cache: bool) -> Any:
        import contextlib

        import torch

        if self._dtype is None:
            return contextlib.nullcontext()
        # Capture needs cache_enabled=False: a cached cast would be read from memory the
        # graph does not own.
        return torch.autocast("cuda", dtype=self._dtype, cache_enabled=cache)

    def _capture(
        self, example: Sequence[Any], batch: int, length: int | None, pool: Any
    ) -> tuple[Any, tuple[Any, ...], Any]:
        import torch

        static = tuple(
            torch.from_numpy(a).to(self._device)
            for a in self._padding.pad([x[:1] for x in example], batch, length)
        )
        graph, out = capture(
            lambda: self._head(self._model(*static)), lambda: self._autocast(cache=False), pool
        )
        return graph, static, out

    def __call__(self, inputs: tuple[Any, ...]) -> Any:
        import torch

        rows = int(inputs[0].shape[0])
        batch = smallest_fit(self.batches, rows)
        length = (
            smallest_fit(self.lengths, int(inputs[0].shape[1]))  # type: ignore[arg-type]
            if self._padding.has_length
            else None
        )
        if batch is None or (self._padding.has_length and length is None):
            with torch.inference_mode(), self._autocast(cache=True):
                return self._head(
                    self._model(*(torch.as_tensor(t).to(self._device) for t in inputs))
                )
        graph, static, out = self._graphs[(batch, length)]
        for target, source in zip(static, self._padding.pad(inputs, batch, length), strict=True):
            target.copy_(torch.from_numpy(source))
        graph.replay()
        return out[:rows]  # rewritten by the next replay: read it before (predict copies it)
