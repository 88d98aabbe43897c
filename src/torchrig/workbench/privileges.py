"""Dropping root for good: real, effective and saved IDs, no supplementary groups.

Once the UID is not 0 the kernel clears the capability sets (no SECBIT_KEEP_CAPS), and the
container's no-new-privileges keeps a setuid binary from giving them back. `drop` checks
both, so a half-dropped process never goes on.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Iterable
from pathlib import Path

# Bits of the capability sets (linux/capability.h).
CAPABILITY_BITS = {
    "CHOWN": 0,
    "DAC_OVERRIDE": 1,
    "DAC_READ_SEARCH": 2,
    "FOWNER": 3,
    "KILL": 5,
    "SETGID": 6,
    "SETUID": 7,
}
_CAP_VERSION_3 = 0x20080522  # two 32-bit words per set
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4


class StillPrivileged(RuntimeError):
    pass


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _mask(names: Iterable[str]) -> int:
    return sum(1 << CAPABILITY_BITS[n] for n in set(names))


def limit_capabilities(permitted: Iterable[str], effective: Iterable[str]) -> None:
    """Keep only `permitted` (for good) and only `effective` in effect, none inheritable.

    Permitted capabilities can never come back once gone; an effective one can be raised
    again from the permitted set (drop() needs SETUID/SETGID after the chowns). Names this
    process does not hold are ignored. Raises StillPrivileged when the kernel refuses.
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    header = _Header(_CAP_VERSION_3, 0)
    data = (_Data * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise StillPrivileged(f"capget failed: {os.strerror(ctypes.get_errno())}")
    held = data[0].permitted | (data[1].permitted << 32)
    keep = held & _mask(permitted)
    now = keep & _mask(effective)
    for word in (0, 1):
        data[word].permitted = (keep >> (32 * word)) & 0xFFFFFFFF
        data[word].effective = (now >> (32 * word)) & 0xFFFFFFFF
        data[word].inheritable = 0
    header = _Header(_CAP_VERSION_3, 0)
    if libc.capset(ctypes.byref(header), data) != 0:
        raise StillPrivileged(f"capset failed: {os.strerror(ctypes.get_errno())}")
    # Ambient capabilities would survive an exec; there are none to keep.
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    caps = effective_capabilities()
    if caps is not None and caps & ~now:
        raise StillPrivileged(f"effective capabilities {caps:#x} after limiting to {now:#x}")


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
