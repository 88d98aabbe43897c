"""Low disk in the workbench: the workspace and the home folder, as the user sees them.

A full workspace does not say so where it hurts: JupyterLab's save fails with
`[Errno 2] No such file or directory: '/workspace/.~big.ipynb'` (its atomic write's
temporary file could not be made) and leaves 0-byte files. So the health check, `status`
and `doctor --inside` say it first.

Low means less than LOW_FREE_BYTES (1 GiB) or less than LOW_FREE_FRACTION (5 %) of the
filesystem is free for the user (statvfs f_bavail: the blocks reserved for root do not
count). 1 GiB is about one checkpoint of a 500M-parameter model in fp16; 5 % is where ext4
starts keeping its reserve for root, and where large filesystems fragment. Low disk is a
warning, never unhealthy: Jupyter still serves, and a restart would not free a byte.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from torchrig.units import human_bytes

LOW_FREE_BYTES = 1 << 30
LOW_FREE_FRACTION = 0.05
PREFIX = "warning: low disk: "
"""How the health check's output line starts; `torchrig status` looks for it."""


@dataclass(frozen=True)
class Space:
    path: str
    free: int
    """Bytes the user can still write."""
    total: int

    @property
    def low(self) -> bool:
        return self.free < LOW_FREE_BYTES or self.free < LOW_FREE_FRACTION * self.total

    def describe(self) -> str:
        share = 100 * self.free / self.total if self.total else 0.0
        free, total = human_bytes(self.free, binary=True), human_bytes(self.total, binary=True)
        return f"{self.path} has {free} free of {total} ({share:.1f}%)"


def space(path: str) -> Space | None:
    """None when the path cannot be looked at (absent, no permission)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return Space(path, st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize)


def low_disk(paths: Iterable[str]) -> list[Space]:
    """The paths that are low on space, each filesystem once (home is often the workspace's)."""
    seen: set[int] = set()
    found = []
    for path in paths:
        try:
            device = Path(path).stat().st_dev
        except OSError:
            continue
        if device in seen:
            continue
        seen.add(device)
        measured = space(path)
        if measured is not None and measured.low:
            found.append(measured)
    return found
