"""Remember that this host's engine refuses raised rlimits, until the next boot.

The workbench asks for unlimited memlock and a larger stack (NCCL over RDMA needs them). A
daemon without CAP_SYS_RESOURCE (a VM's or a nested Docker) refuses: the container is
created, fails to start, is removed and run again without them (launch/up.py). That failed
attempt cost 1.1 s of every `torchrig up` on the 2-core test host (2026-12-07, issue 18),
and the answer only changes when the daemon restarts with other limits: kept per user and
engine, keyed by the kernel's boot id.
"""

from __future__ import annotations

import os
from pathlib import Path

from torchrig.fsutil import write_atomically

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def _marker(engine: str) -> Path:
    root = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(root) / "torchrig" / f"rlimits-refused-{engine}"


def _boot_id() -> str:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""


def refused(engine: str) -> bool:
    """This engine refused raised rlimits earlier since this boot."""
    boot = _boot_id()
    try:
        return bool(boot) and _marker(engine).read_text().strip() == boot
    except OSError:
        return False


def remember_refused(engine: str) -> None:
    boot = _boot_id()
    if not boot:
        return
    marker = _marker(engine)
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(marker, boot + "\n")
    except OSError:
        pass  # only a shortcut: the next `up` tries the limits again
