"""Dynamic batching: single requests gathered into one model call.

Each request puts its (prepared) input on a queue and awaits its own result. One task takes
the first waiting input, then keeps taking more until it has `max_batch` or `max_wait_ms`
has passed since the first, and runs the whole batch in the model's thread. A full queue
(`max_queue`) is refused at once (the server answers 503) instead of growing without bound.
max_batch=1 is the unbatched server the benchmark compares against.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any

# The wait to fill a batch. Measured on an H200 with 32 clients and BERT-base through CUDA
# graphs (benchmarks/results/serve-sweep-h200-2026-12-07.json): 2 ms served 2,025 requests/s
# at p50 13.7 ms against 1,618 at p50 18.9 ms for 5 ms. With clients that wait for their
# answer before they ask again, a longer wait mostly adds latency: the batch fills up from
# the requests that come in while the one before it runs.
DEFAULT_MAX_WAIT_MS = 2.0


class Busy(Exception):
    """The queue is full."""


class Batcher:
    def __init__(
        self,
        run_batch: Callable[[Sequence[Any]], list[Any]],
        executor: Executor,
        max_batch: int = 32,
        max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
        max_queue: int = 4096,
        on_batch: Callable[[int], None] = lambda _: None,
    ) -> None:
        self._run = run_batch
        self._executor = executor
        self.max_batch = max(1, max_batch)
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self._queue: asyncio.Queue[tuple[Any, asyncio.Future[Any]]] = asyncio.Queue(max_queue)
        self._on_batch = on_batch
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def depth(self) -> int:
        return self._queue.qsize()

    async def submit(self, item: Any) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((item, future))
        except asyncio.QueueFull:
            raise Busy from None
        return await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), left))
                except TimeoutError:
                    break
            live = [(x, f) for x, f in batch if not f.done()]  # a cancelled request is dropped
            if not live:
                continue
            self._on_batch(len(live))
            try:
                results = await loop.run_in_executor(
                    self._executor, self._run, [x for x, _ in live]
                )
            except Exception as exc:  # the whole batch failed: every request hears why
                for _, future in live:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(live, results, strict=True):
                if not future.done():
                    future.set_result(result)
