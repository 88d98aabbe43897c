"""Batches prepared ahead in a background thread, so the GPU does not wait for the CPU.

The thread pulls (inputs, targets) from the data iterator (memmap slicing, numpy → torch),
pins them (page-locked memory lets the host→device copy run asynchronously) and queues
them with the iterator's state *after* that batch. The loop copies with non_blocking=True
and remembers the state of the last batch it consumed: a checkpoint then records exactly
what was trained on, not what was prefetched.

With `device` (a CUDA device), the thread also copies each batch to the GPU on a stream of
its own and hands it over with an event: the copy then overlaps the previous step's
kernels instead of queueing between them on the compute stream (a ResNet-50 batch of 256
cached 256-px images is 50 MB of uint8, ~1-2 ms over PCIe: a few per cent of its step,
which the plain loop it is measured against does not pay). The loop's own `.to(device)` is
then a no-op. Only for loops that need nothing of the batch on the host. A first try
(2026-12-07, H100) showed no gain beyond the spread between runs (±5%), in a step that
still synced the GPU every batch; it is back with that sync gone, to be measured against
the copy on the compute stream in the same run (benchmarks/train_image_classify.py
--variants default copy-in-step; docs/performance.md).

The data iterator must only be touched by this thread while it runs.
"""

from __future__ import annotations

import copy
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

_END = object()


def _each(batch: Any, fn: Callable[[Any], Any]) -> Any:
    """fn over every tensor of a batch, nested tuples too (a classifier's (inputs, labels))."""
    if isinstance(batch, tuple | list):
        return type(batch)(_each(b, fn) for b in batch)
    return fn(batch)


def _pinned(batch: Any) -> Any:
    return _each(batch, lambda t: t.pin_memory())


class Prefetcher:
    def __init__(
        self, source: Iterable[Any], depth: int = 4, pin: bool = False, device: Any = None
    ) -> None:
        self._source = source
        self._iter: Iterator[Any] = iter(source)
        self._device = device if getattr(device, "type", None) == "cuda" else None
        self._pin = pin or self._device is not None  # an asynchronous copy needs pinned memory
        self._stream: Any = None
        if self._device is not None:
            import torch

            self._stream = torch.cuda.Stream(device=self._device)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self.state: Any = self._state()  # state after the last batch handed out
        self._thread = threading.Thread(target=self._run, name="prefetch", daemon=True)
        self._thread.start()

    def _state(self) -> Any:
        get = getattr(self._source, "state_dict", None)
        return copy.deepcopy(get()) if get is not None else None

    def _run(self) -> None:
        try:
            for batch in self._iter:
                if self._pin:
                    batch = _pinned(batch)
                event = None
                if self._stream is not None:
                    batch, event = self._copy(batch)
                item = (batch, self._state(), event)
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._queue.put(_END)
        except BaseException as exc:  # handed to the loop, raised there
            self._queue.put(exc)

    def _copy(self, batch: Any) -> tuple[Any, Any]:
        """The batch on the device, copied on this thread's stream; the event marks the end
        of the copy (the consumer's stream waits on it, not the host)."""
        import torch

        # The stream's device explicitly: a new thread's current device is device 0.
        with torch.cuda.device(self._device), torch.cuda.stream(self._stream):
            moved = _each(batch, lambda t: t.to(self._device, non_blocking=True))
            event = torch.cuda.Event()
            event.record(self._stream)
        return moved, event

    def next(self) -> tuple[tuple[Any, ...], float]:
        """The next batch and the seconds spent waiting for it. StopIteration at the end."""
        start = time.perf_counter()
        item = self._queue.get()
        waited = time.perf_counter() - start
        if item is _END:
            self._queue.put(_END)
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        batch, self.state, event = item
        if event is not None:
            import torch

            stream = torch.cuda.current_stream(self._device)
            stream.wait_event(event)
            # Memory made on the copy stream and used on this one: the allocator must not
            # hand it out again before this stream's work on it is done.
            _each(batch, lambda t: t.record_stream(stream))
        return batch, waited

    def close(self) -> None:
        self._stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=5)
