"""Reading a job's output.log from the host, once or following it as it grows (tail -f).

Bytes are passed on as written (progress bars with carriage returns stay intact), and
following stops once the job has ended and everything it wrote has been passed on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

CHUNK = 1 << 16


def tail_offset(path: Path, lines: int) -> int:
    """Where the last `lines` lines start (reads backwards, so a huge log costs little)."""
    try:
        size = path.stat().st_size
    except OSError:
        return 0
    with path.open("rb") as handle:
        pos, found = size, -1
        # A final newline ends the last line; it does not start another.
        while pos > 0:
            step = min(CHUNK, pos)
            pos -= step
            handle.seek(pos)
            block = handle.read(step)
            for i in range(len(block) - 1, -1, -1):
                if block[i] == 0x0A and pos + i != size - 1:
                    found += 1
                    if found == lines - 1:
                        return pos + i + 1
    return 0


def stream(
    path: Path,
    write: Callable[[bytes], None],
    *,
    follow: bool,
    ended: Callable[[], bool],
    tail: int | None = None,
    poll_s: float = 0.2,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    offset = tail_offset(path, tail) if tail else 0
    while True:
        finished = ended()  # before reading: what was written before the end is read below
        try:
            with path.open("rb") as handle:
                handle.seek(offset)
                while chunk := handle.read(CHUNK):
                    write(chunk)
                    offset += len(chunk)
        except FileNotFoundError:
            pass
        if not follow or finished:
            return
        sleep(poll_s)
