"""Fixed inputs for plans in tests: a lock target, a base and torchrig's files, so golden
files do not change with every edit of torchrig's own code (the real files come from
launch/local.py; the tag is computed the same way from either)."""

from __future__ import annotations

from pathlib import Path

from torchrig.host.facts import Driver, Engine, Gpu, HostFacts, System
from torchrig.lock.lockfile import LockFile, Target, read_lock
from torchrig.plan.image import BaseRef, ContextFile

ROOT = Path(__file__).resolve().parent
GOLDEN_LOCK = ROOT / "golden" / "lock" / "torchrig.lock"
BASE = BaseRef("docker.io/library/ubuntu@sha256:" + "0" * 64, ("main", "universe"), "registry")
BOOTSTRAP_BASE = BaseRef(
    "torchrig-base/ubuntu:noble-0123456789ab", ("main", "universe"), "bootstrap"
)
# The demo project and the GPU host (two H100s, driver 580, Docker with the NVIDIA runtime)
# the plan and export tests render for.
DEMO_SPEC = '[project]\nname = "demo"\n[torch]\nversion = "2.13.0"\n'
GPU_HOST = HostFacts(
    system=System(arch="x86_64", cpus=64, memory_bytes=512 << 30, user="alice", uid=4242, gid=4343),
    driver=Driver(version="580.159.04", cuda="13.0"),
    gpus=[Gpu(index=i, name="NVIDIA H100 80GB HBM3", cc="9.0", uuid=f"GPU-{i}") for i in range(2)],
    engines=[Engine(name="docker", path="/usr/bin/docker", reachable=True, nvidia_runtime=True)],
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
