"""Fixed inputs for plans in tests: a lock target, a base and torchrig's files, so golden
files do not change with every edit of torchrig's own code (the real files come from
launch/local.py; the tag is computed the same way from either)."""

from __future__ import annotations

from pathlib import Path

from torchrig.lock.lockfile import LockFile, Target, read_lock
from torchrig.plan.image import BaseRef, ContextFile

ROOT = Path(__file__).resolve().parent
GOLDEN_LOCK = ROOT / "golden" / "lock" / "torchrig.lock"
BASE = BaseRef("docker.io/library/ubuntu@sha256:" + "0" * 64, ("main", "universe"), "registry")
BOOTSTRAP_BASE = BaseRef(
    "torchrig-base/ubuntu:noble-0123456789ab", ("main", "universe"), "bootstrap"
)
TORCHRIG_FILES = (
    ContextFile(path="torchrig/__init__.py", sha256="1" * 64, size=100),
    ContextFile(path="torchrig/workbench/entrypoint.py", sha256="2" * 64, size=2000),
)


def golden_lock() -> LockFile:
    return read_lock(GOLDEN_LOCK)


def cuda_target() -> Target:
    target = golden_lock().target("cu130")
    assert target is not None
    return target


def cpu_target() -> Target:
    """The cu130 target without the CUDA libraries, as a CPU lock would be."""
    cuda = cuda_target()
    packages = [p for p in cuda.packages if not p.name.startswith(("nvidia-", "triton"))]
    return cuda.model_copy(update={"variant": "cpu", "cuda": "", "packages": packages})
