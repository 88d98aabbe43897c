"""What JupyterLab lets through: the allowed browser origins, and a brake on wrong tokens.

Pure (no jupyter_server import), so the host's tests check it; jupyter_identity.py applies
it inside the image.

Origins. `torchrig up` publishes Jupyter on 127.0.0.1:PORT and passes
TORCHRIG_JUPYTER_ORIGIN ("http://127.0.0.1:PORT,http://localhost:PORT"); anything else is
foreign. The pattern becomes `ServerApp.allow_origin_pat`, which jupyter_server full-matches
(GHSA-24qx-w28j-9m6p), and every piece of it is escaped, so `…:PORT.evil.com`, `…:PORTcomedy`
and `…:PORT:9999` never match.

Wrong tokens. jupyter_server compares every token it is given, as fast as it can (1,000
guesses in 1.4 s). Per source address, after FREE_FAILURES wrong tokens within WINDOW_S,
no token from that address is even compared until the oldest of those failures is WINDOW_S
old: at most FREE_FAILURES guesses a minute, whatever the concurrency. Every address behind
the engine's port proxy looks the same to the container, so this is also what one local
user can do to another: make `?token=` links fail for a minute. Sessions that already hold
the login cookie are never throttled.
"""

from __future__ import annotations

import re
from collections import OrderedDict, deque
from collections.abc import Mapping

ORIGIN_ENV = "TORCHRIG_JUPYTER_ORIGIN"
CONTAINER_PORT = 8888
# scheme://host[:port], nothing else: no path, no user info, no wildcard.
ORIGIN_RE = re.compile(r"https?://(?:[a-z0-9.-]+|\[[0-9a-f:]+\])(?::[0-9]{1,5})?")

WINDOW_S = 60.0
FREE_FAILURES = 10
REFUSED_DELAY_S = 1.0
"""A refused token is answered after this (asynchronously: the server keeps serving)."""
MAX_SOURCES = 4096
"""Addresses remembered at most; the least recently failing are forgotten first."""


class OriginError(ValueError):
    pass


def published_origins(port: int) -> tuple[str, ...]:
    """The origins of a workbench published on 127.0.0.1:port (what `up` prints, and its
    localhost spelling)."""
    return (f"http://127.0.0.1:{port}", f"http://localhost:{port}")


def parse_origins(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The allowed origins: TORCHRIG_JUPYTER_ORIGIN, else those of a plain `-p 8888:8888`."""
    raw = environ.get(ORIGIN_ENV, "").strip()
    if not raw:
        return published_origins(CONTAINER_PORT)
    origins = tuple(o.strip().lower().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in origins:
        if not ORIGIN_RE.fullmatch(origin):
            raise OriginError(
                f"{ORIGIN_ENV}: {origin[:80]!r} is not an origin (expected http://HOST:PORT)"
            )
    return origins


def origin_pattern(origins: tuple[str, ...]) -> str:
    """A regular expression that full-matches exactly these origins."""
    return "(?:" + "|".join(re.escape(o) for o in origins) + ")"


class FailureThrottle:
    """Wrong-token failures per source address, in a sliding window."""

    def __init__(
        self,
        free_failures: int = FREE_FAILURES,
        window_s: float = WINDOW_S,
        max_sources: int = MAX_SOURCES,
    ) -> None:
        self.free_failures = free_failures
        self.window_s = window_s
        self.max_sources = max_sources
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, source: str, now: float) -> deque[float]:
        found = self._failures.get(source)
        if found is None:
            return deque()
        while found and found[0] <= now - self.window_s:
            found.popleft()
        if not found:
            del self._failures[source]
        return found

    def blocked_for(self, source: str, now: float) -> float:
        """0 when a token from `source` may be compared now, else the seconds until it may."""
        recent = self._recent(source, now)
        if len(recent) < self.free_failures:
            return 0.0
        return recent[-self.free_failures] + self.window_s - now

    def failed(self, source: str, now: float) -> bool:
        """Count a wrong token; True when this one uses up the source's free failures."""
        recent = self._recent(source, now)
        recent.append(now)
        self._failures[source] = recent
        self._failures.move_to_end(source)
        while len(self._failures) > self.max_sources:
            self._failures.popitem(last=False)
        return len(recent) == self.free_failures
