"""Dropping root for good: real, effective and saved IDs, no supplementary groups.

Once the UID is not 0 the kernel clears the capability sets (no SECBIT_KEEP_CAPS), and the
container's no-new-privileges keeps a setuid binary from giving them back. `drop` checks
both, so a half-dropped process never goes on.
"""

from __future__ import annotations

import os
from pathlib import Path

# Bits of the capability sets (linux/capability.h).
CAPABILITY_BITS = {"CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "KILL": 5, "SETGID": 6, "SETUID": 7}


class StillPrivileged(RuntimeError):
    pass


def effective_capabilities(status: Path = Path("/proc/self/status")) -> int | None:
    try:
        for line in status.read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return None


def missing_capabilities(
    names: tuple[str, ...], status: Path = Path("/proc/self/status")
) -> list[str]:
    """Those of `names` this process cannot use ([] when /proc does not say)."""
    caps = effective_capabilities(status)
    if caps is None:
        return []
    return [n for n in names if not caps & (1 << CAPABILITY_BITS[n])]


def drop(uid: int, gid: int) -> None:
    if uid == 0 or gid == 0:
        raise StillPrivileged("refusing to 'drop' to root")
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise StillPrivileged(f"IDs are {os.getresuid()} / {os.getresgid()} after the drop")
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:
        raise StillPrivileged("setuid(0) still works after the drop")
    caps = effective_capabilities()
    if caps:
        raise StillPrivileged(f"effective capabilities {caps:#x} left after the drop")
