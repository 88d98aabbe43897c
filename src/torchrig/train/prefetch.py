"""Batches prepared ahead in a background thread, so the GPU does not wait for the CPU.

The thread pulls (inputs, targets) from the data iterator (memmap slicing, numpy → torch),
pins them (page-locked memory lets the host→device copy run asynchronously) and queues
them with the iterator's state *after* that batch. The loop copies with non_blocking=True
and remembers the state of the last batch it consumed: a checkpoint then records exactly
what was trained on, not what was prefetched.

The data iterator must only be touched by this thread while it runs.
"""

from __future__ import annotations

import copy
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

_END = object()


def _pinned(batch: Any) -> Any:
    """Pin every tensor of a batch, nested tuples too (a classifier's (inputs, labels))."""
    if isinstance(batch, tuple | list):
        return type(batch)(_pinned(b) for b in batch)
    return batch.pin_memory()


class Prefetcher:
    def __init__(self, source: Iterable[Any], depth: int = 4, pin: bool = False) -> None:
        self._source = source
        self._iter: Iterator[Any] = iter(source)
        self._pin = pin
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
                item = (batch, self._state())
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
        batch, self.state = item
        return batch, waited

    def close(self) -> None:
        self._stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=5)
