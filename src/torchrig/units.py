"""Sizes for people: the one formatter every message and report uses."""

from __future__ import annotations

_DECIMAL = ("B", "KB", "MB", "GB", "TB")
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB")


def human_bytes(n: int | None, *, binary: bool = False) -> str:
    """`2.6 GB`, `126 GiB`, `512 B`; "?" when unknown.

    Decimal units by default, as download sizes are quoted; `binary` (KiB, MiB, GiB) for
    memory, /dev/shm, limits and disks, which the kernel and the engines count in powers of
    two. One decimal at most, none for a whole number (`64 MiB`, `79.6 GiB`).
    """
    if n is None:
        return "?"
    base = 1024 if binary else 1000
    units = _BINARY if binary else _DECIMAL
    value = float(n)
    unit = units[0]
    for unit in units:
        if abs(value) < base or unit == units[-1]:
            break
        value /= base
    if unit == "B":
        return f"{n} B"
    return f"{value:.1f}".removesuffix(".0") + f" {unit}"
