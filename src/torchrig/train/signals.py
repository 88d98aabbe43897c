"""A stop request as a flag: SIGTERM (docker stop, torchrig stop, a scheduler's preemption)
and SIGINT set it; the training loop looks at it once per step, saves a checkpoint at that
safe point and returns, so the process exits 0 with nothing half-written.

A second SIGINT restores the default handler's behaviour (KeyboardInterrupt) so that a
person at a terminal can still break out of a loop that is stuck.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any


class StopFlag:
    """Set by a signal or by code; read by the loop. Safe to read from any thread."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def request(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
        self._event.set()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if signum == signal.SIGINT and self.requested:
            raise KeyboardInterrupt
        self.request(name)

    def install(self) -> StopFlag:
        """Catch SIGTERM and SIGINT (main thread only; elsewhere Python forbids it)."""
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def __enter__(self) -> StopFlag:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.uninstall()
