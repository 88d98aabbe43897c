"""In-container checks (`torchrig doctor --inside`): does this image's torch see and use the GPUs?

Run inside the workbench, where torch is installed. Every check takes an InsideContext whose
`torch` is the module (or a stand-in object in tests), so GPU cases are testable without a
GPU; on a machine without one each check still runs and says plainly what is missing.
torch is imported only by `inside_context()`, never at module import.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchrig import contract
from torchrig.command import run_command
from torchrig.compat.resolve import kernels_for
from torchrig.doctor.host import visible_devices_problem
from torchrig.doctor.model import Check, Rule
from torchrig.units import human_bytes

Runner = Callable[[Sequence[str], float], "subprocess.CompletedProcess[str]"]
Which = Callable[[str], "str | None"]

SHM_TOO_SMALL = contract.SHM_ENGINE_DEFAULT  # what NGC images warn about
SHM_LOW = 1 * 2**30
JUPYTER_PORT, SSH_PORT = contract.JUPYTER_PORT, contract.SSH_PORT
PTXAS_TIMEOUT_S = 5.0
PTXAS_NAMES = ("ptxas", "ptxas-blackwell")  # Triton 3.6+: ptxas-blackwell for sm_100 and up
GPU_FIX = (
    'start the workbench with GPUs: `torchrig up` with resources.gpus other than "none" (it '
    "passes --gpus / --device nvidia.com/gpu=…); by hand: `docker run --gpus all …` or "
    "`podman run --device nvidia.com/gpu=all …`; check with `nvidia-smi -L` inside"
)


@dataclass(frozen=True)
class InsideContext:
    """What the in-container checks look at; tests set each field to the case under test."""

    torch: Any = None  # the torch module, or None when it cannot be imported
    torch_error: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    which: Which = shutil.which
    run: Runner = run_command
    triton_dir: Path | None = None  # the triton package folder, found without importing it
    driver_cuda: str = ""  # newest CUDA the driver supports ("13.0"), "" when unknown
    driver_version: str = ""
    gpu_nodes: int | None = None  # /dev/nvidia0, /dev/nvidia1 …, None when /dev is unreadable
    nvidiactl: bool = False  # /dev/nvidiactl: the runtime injected the driver's devices
    shm_bytes: int | None = None
    memlock_bytes: int | None = None
    jupyter_port: int = JUPYTER_PORT
    ssh_port: int = SSH_PORT
    timeout_s: float = 1.0
    disk_paths: tuple[str, ...] | None = None  # None: /workspace and $HOME


def inside_context(env: Mapping[str, str] | None = None, dev: Path = Path("/dev")) -> InsideContext:
    """Read this container: import torch (the slow part), find Triton, ask NVML for the driver."""
    torch: Any = None
    torch_error = ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Failed to initialize NumPy" on a bare image
            torch = importlib.import_module("torch")
    except Exception as exc:  # ImportError, or a broken install raising OSError
        torch_error = f"{type(exc).__name__}: {exc}"
    driver_version, driver_cuda = _driver()
    try:
        nodes: int | None = sum(1 for p in dev.glob("nvidia[0-9]*") if p.name[6:].isdigit())
    except OSError:
        nodes = None
    return InsideContext(
        torch=torch,
        torch_error=torch_error,
        env=dict(os.environ if env is None else env),
        triton_dir=_package_dir("triton"),
        driver_cuda=driver_cuda,
        driver_version=driver_version,
        gpu_nodes=nodes,
        nvidiactl=(dev / "nvidiactl").exists(),
        shm_bytes=_shm_bytes(dev / "shm"),
        memlock_bytes=_memlock_bytes(),
    )


def _driver() -> tuple[str, str]:
    from torchrig.host.probe import probe_nvml

    try:
        driver, _ = probe_nvml()
    except Exception:
        return "", ""
    return driver.version, driver.cuda


def _package_dir(name: str) -> Path | None:
    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    return Path(next(iter(found.submodule_search_locations)))


def _shm_bytes(path: Path) -> int | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_frsize * st.f_blocks


def _memlock_bytes() -> int | None:
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    except (ImportError, OSError, ValueError):
        return None
    return -1 if soft == resource.RLIM_INFINITY else soft


# --- helpers ------------------------------------------------------------------------------


def _cuda_build(ctx: InsideContext) -> str | None:
    version = getattr(ctx.torch, "version", None)
    cuda = getattr(version, "cuda", None)
    return str(cuda) if cuda else None


def _available(ctx: InsideContext) -> tuple[bool, str]:
    """torch.cuda.is_available(), and the warning torch gave with it (its reason, if any)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ok = bool(ctx.torch.cuda.is_available())
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}"
    said = next((str(w.message).splitlines()[0] for w in caught), "")
    return ok, said


def _device_count(ctx: InsideContext) -> int:
    return int(ctx.torch.cuda.device_count())


def expected_devices(ctx: InsideContext) -> tuple[int | None, str]:
    """How many GPUs CUDA should see here, and from what; None when nothing says."""
    cvd = ctx.env.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        entries = [e.strip() for e in cvd.split(",") if e.strip()]
        valid = 0
        for entry in entries:
            if visible_devices_problem(entry, ctx.gpu_nodes, []):
                break
            valid += 1
        return valid, f"CUDA_VISIBLE_DEVICES={cvd!r}"
    nvd = ctx.env.get("NVIDIA_VISIBLE_DEVICES")
    if nvd is not None:
        value = nvd.strip()
        if value in ("", "none", "void"):
            return 0, f"NVIDIA_VISIBLE_DEVICES={nvd!r}"
        if value != "all" and "=" not in value:
            return len(
                [e for e in value.split(",") if e.strip()]
            ), f"NVIDIA_VISIBLE_DEVICES={nvd!r}"
    if ctx.gpu_nodes is not None:
        return ctx.gpu_nodes, f"{ctx.gpu_nodes} /dev/nvidiaN device node(s)"
    return None, ""


def _why_no_gpu(ctx: InsideContext) -> list[str]:
    """Each reason this container sees no GPU, with its fix, most fundamental first."""
    reasons: list[str] = []
    env = ctx.env
    cvd = env.get("CUDA_VISIBLE_DEVICES")
    nvd = env.get("NVIDIA_VISIBLE_DEVICES")
    if not ctx.nvidiactl:
        reasons.append(f"no GPU was passed into this container (no /dev/nvidiactl): {GPU_FIX}")
    elif nvd is not None and nvd.strip() in ("", "none", "void"):
        reasons.append(
            f"NVIDIA_VISIBLE_DEVICES={nvd!r} passes no GPU: set it to `all` (or indexes/UUIDs)"
        )
    caps = env.get("NVIDIA_DRIVER_CAPABILITIES")
    if caps is not None and not ({"compute", "all"} & {c.strip() for c in caps.split(",")}):
        reasons.append(
            f"NVIDIA_DRIVER_CAPABILITIES={caps!r} lacks compute: set it to `compute,utility`"
        )
    if cvd is not None:
        problem = visible_devices_problem(cvd, ctx.gpu_nodes, [])
        if problem:
            reasons.append(f"CUDA_VISIBLE_DEVICES={cvd!r} {problem}: `unset CUDA_VISIBLE_DEVICES`")
    if ctx.torch is not None and _cuda_build(ctx) is None:
        reasons.append(
            f"this torch {getattr(ctx.torch, '__version__', '?')} is a CPU-only build "
            "(torch.version.cuda is None): rebuild the workbench with a CUDA variant"
        )
    return reasons


# --- checks -------------------------------------------------------------------------------

TORCH = Rule("torch", "PyTorch imports", "docs/doctor.md")


def check_torch(ctx: InsideContext) -> Check:
    if ctx.torch is None:
        return TORCH.fail(
            f"torch cannot be imported ({ctx.torch_error or 'not installed'})",
            "run this inside the workbench: `torchrig exec -- torchrig doctor --inside`",
        )
    return TORCH.ok(f"torch {getattr(ctx.torch, '__version__', '?')}")


CUDA_BUILD = Rule(
    "cuda-build",
    "torch is a CUDA build",
    "FACTS F: torch.cuda.is_available() False with no error (docker-specialized.md)",
)


def check_cuda_build(ctx: InsideContext) -> Check:
    if ctx.torch is None:
        return CUDA_BUILD.skip("no torch")
    cuda = _cuda_build(ctx)
    version = getattr(ctx.torch, "__version__", "?")
    if cuda is None:
        return CUDA_BUILD.fail(
            f"torch {version} is a CPU-only build (torch.version.cuda is None)",
            'set torch.variant = "auto" (or "cu130" …) in torchrig.toml and `torchrig up` '
            "on the GPU host",
        )
    return CUDA_BUILD.ok(f"torch {version} is built with CUDA {cuda}")


CUDA_AVAILABLE = Rule(
    "cuda-available",
    "A CUDA GPU is visible",
    "https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/"
    "docker-specialized.html (FACTS F: no CUDA-capable device is detected)",
)


def check_cuda_available(ctx: InsideContext) -> Check:
    if ctx.torch is None:
        return CUDA_AVAILABLE.skip("no torch")
    ok, said = _available(ctx)
    if ok:
        count = _device_count(ctx)
        return CUDA_AVAILABLE.ok(f"torch.cuda.is_available() is True; {count} device(s)")
    reasons = _why_no_gpu(ctx)
    detail = f" — torch says: {said}" if said else ""
    return CUDA_AVAILABLE.fail(
        f"no CUDA GPU visible: torch.cuda.is_available() is False{detail}",
        "; ".join(reasons)
        or "check `nvidia-smi` in the container; if it fails with 'Failed to initialize NVML: "
        "Unknown Error', recreate the container (`torchrig down && torchrig up`)",
    )


DEVICE_COUNT = Rule(
    "device-count",
    "Device count as expected",
    "https://docs.nvidia.com/cuda/cuda-c-programming-guide/index.html#cuda-environment-variables",
)


def check_device_count(ctx: InsideContext) -> Check:
    if ctx.torch is None or not _available(ctx)[0]:
        return DEVICE_COUNT.skip("no CUDA GPU visible (see cuda-available)")
    count = _device_count(ctx)
    expected, source = expected_devices(ctx)
    if expected is None:
        return DEVICE_COUNT.ok(f"{count} device(s) (nothing says how many to expect)")
    if count < expected:
        return DEVICE_COUNT.fail(
            f"torch sees {count} device(s), {source} says {expected}",
            "check CUDA_VISIBLE_DEVICES (CUDA stops at its first invalid entry) and `nvidia-smi "
            "-L`; with MIG, one process sees one MIG device",
        )
    cvd = ctx.env.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        problem = visible_devices_problem(cvd, ctx.gpu_nodes, [])
        if problem:
            return DEVICE_COUNT.warn(
                f"{count} device(s), but CUDA_VISIBLE_DEVICES={cvd!r} {problem}",
                "`unset CUDA_VISIBLE_DEVICES` or list valid entries",
            )
    if count > expected:
        return DEVICE_COUNT.warn(
            f"torch sees {count} device(s), {source} says {expected}",
            "set CUDA_VISIBLE_DEVICES to the GPUs this workbench should use",
        )
    return DEVICE_COUNT.ok(f"{count} device(s), as {source} says")


DEVICE_ARCH = Rule(
    "device-arch",
    "Kernels for every device",
    "torch/cuda/__init__.py _check_cubins (S48; FACTS T4, T9)",
)


def check_device_arch(ctx: InsideContext) -> Check:
    if ctx.torch is None or not _available(ctx)[0]:
        return DEVICE_ARCH.skip("no CUDA GPU visible (see cuda-available)")
    cuda = ctx.torch.cuda
    archs = [str(a) for a in cuda.get_arch_list()]
    served, missing = [], []
    for index in range(_device_count(ctx)):
        major, minor = cuda.get_device_capability(index)
        cc = f"{int(major)}.{int(minor)}"
        name = str(cuda.get_device_name(index))
        kernels = kernels_for(cc, archs) if archs else None
        if kernels is None:
            missing.append(f"{name} with CUDA capability sm_{major}{minor}")
        else:
            served.append(f"{index}: {name} (sm_{major}{minor}) runs {kernels}")
    if missing:
        return DEVICE_ARCH.fail(
            f"{missing[0]} is not compatible with this PyTorch, which supports "
            f"{' '.join(archs) or 'no CUDA architecture'}: kernels fail with 'no kernel image "
            "is available for execution on the device'",
            "rebuild with a build whose torch.cuda.get_arch_list() covers it: `torchrig doctor` "
            "on the host names one (Blackwell needs cu128 or newer; Volta/Pascal need cu126)",
        )
    return DEVICE_ARCH.ok("; ".join(served))


NCCL = Rule("nccl", "NCCL", "FACTS T2/T3 (NCCL pinned per build)")


def check_nccl(ctx: InsideContext) -> Check:
    if ctx.torch is None:
        return NCCL.skip("no torch")
    if _cuda_build(ctx) is None:
        return NCCL.skip("CPU-only build: no NCCL (multi-GPU needs a CUDA build)")
    try:
        version = ctx.torch.cuda.nccl.version()
    except Exception as exc:
        return NCCL.fail(
            f"torch.cuda.nccl.version() failed: {type(exc).__name__}: {exc}",
            "rebuild the workbench (the nvidia-nccl wheel is missing or broken): "
            "`torchrig build --no-cache`",
        )
    text = ".".join(str(p) for p in version) if isinstance(version, tuple) else str(version)
    return NCCL.ok(f"NCCL {text}")


COMPILER = Rule(
    "c-compiler",
    "C compiler for torch.compile",
    "torch/_inductor (Inductor compiles C++/Triton launchers with the system compiler)",
)


def check_c_compiler(ctx: InsideContext) -> Check:
    wanted = ctx.env.get("CC", "").split()
    names = [*wanted[:1], "cc", "gcc", "clang"]
    for name in names:
        path = ctx.which(name)
        if path:
            return COMPILER.ok(path if path == name else f"{name}: {path}")
    return COMPILER.fail(
        "no C compiler (cc, gcc) on PATH: torch.compile fails with 'InvalidCxxCompiler'",
        "rebuild the workbench with torchrig (its image has gcc), or `sudo apt-get install gcc`",
    )


TRITON_PTXAS = Rule(
    "triton-ptxas",
    "Triton's ptxas vs the driver",
    "S45, S46 (FACTS T7: Triton bundles its own ptxas)",
)
PTXAS_VERSION_RE = re.compile(r"release (\d+)\.(\d+), V(\d+\.\d+\.\d+)")


def ptxas_version(ctx: InsideContext, path: Path) -> str | None:
    """'12.8.93' from `ptxas --version`, None when it does not run."""
    try:
        proc = ctx.run([str(path), "--version"], PTXAS_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    match = PTXAS_VERSION_RE.search(proc.stdout + proc.stderr)
    return match.group(3) if match and proc.returncode == 0 else None


def _ptxas_paths(ctx: InsideContext) -> list[tuple[str, Path]]:
    forced = ctx.env.get("TRITON_PTXAS_PATH")
    if forced:
        return [("TRITON_PTXAS_PATH", Path(forced))]
    if ctx.triton_dir is None:
        return []
    folder = ctx.triton_dir / "backends" / "nvidia" / "bin"
    return [(name, folder / name) for name in PTXAS_NAMES if (folder / name).is_file()]


def _cuda_tuple(version: str) -> tuple[int, int]:
    major, minor = [*version.split("."), "0"][:2]
    return int(major), int(minor)


def check_triton_ptxas(ctx: InsideContext) -> Check:
    if ctx.torch is not None and _cuda_build(ctx) is None:
        return TRITON_PTXAS.skip("CPU-only build: Triton is not used")
    found = _ptxas_paths(ctx)
    if not found:
        if ctx.triton_dir is None:
            return TRITON_PTXAS.warn(
                "Triton is not installed: torch.compile has no GPU backend",
                "rebuild the workbench (`torchrig build --no-cache`): the CUDA torch wheel "
                "pulls in its pinned triton",
            )
        return TRITON_PTXAS.skip(f"no ptxas under {ctx.triton_dir}/backends/nvidia/bin")
    versions = [(name, path, ptxas_version(ctx, path)) for name, path in found]
    listed = ", ".join(f"{name} {v or '(does not run)'}" for name, _, v in versions)
    if not ctx.driver_cuda:
        return TRITON_PTXAS.skip(f"{listed}; no driver to compare with")
    driver = _cuda_tuple(ctx.driver_cuda)
    blackwell = _has_blackwell(ctx)
    newer = [
        (name, v)
        for name, _, v in versions
        if v and _cuda_tuple(v) > driver and (name != "ptxas-blackwell" or blackwell is not False)
    ]
    if newer:
        name, version = newer[0]
        return TRITON_PTXAS.warn(
            f"Triton's {name} is CUDA {version}, newer than the driver's CUDA "
            f"{ctx.driver_cuda} ({ctx.driver_version or 'version ?'}): kernels it compiles can "
            "fail to load ('Triton Error [CUDA]: device kernel image is invalid', "
            "CUDA_ERROR_INVALID_IMAGE)",
            f"update the host's NVIDIA driver to one for CUDA >= {'.'.join(version.split('.')[:2])}"
            ", or point TRITON_PTXAS_PATH at a ptxas no newer than the driver's CUDA",
        )
    return TRITON_PTXAS.ok(f"{listed}; driver supports CUDA {ctx.driver_cuda}")


def _has_blackwell(ctx: InsideContext) -> bool | None:
    """Whether a visible device is sm_100 or newer (ptxas-blackwell's); None when unknown."""
    if ctx.torch is None or not _available(ctx)[0]:
        return None
    majors = [int(ctx.torch.cuda.get_device_capability(i)[0]) for i in range(_device_count(ctx))]
    return any(m >= 10 for m in majors)


SHM = Rule(
    "container-shm",
    "/dev/shm in the container",
    "NGC PyTorch image start-up note; pytorch README.md (FACTS F: DataLoader bus error)",
)


def check_container_shm(ctx: InsideContext) -> Check:
    shm = ctx.shm_bytes
    if shm is None:
        return SHM.skip("/dev/shm size unknown")
    fix = (
        "run the container with --shm-size=8g (`torchrig up` sets it from resources.shm); "
        "not --ipc=host"
    )
    if shm <= SHM_TOO_SMALL:
        return SHM.fail(
            "The SHMEM allocation limit is set to the default of "
            f"{human_bytes(shm, binary=True)}. This may be "
            "insufficient for PyTorch: DataLoader workers die with 'Bus error', NCCL fails",
            fix,
        )
    if shm < SHM_LOW:
        return SHM.warn(
            f"/dev/shm is {human_bytes(shm, binary=True)}: tight for DataLoader workers and NCCL",
            fix,
        )
    return SHM.ok(f"/dev/shm is {human_bytes(shm, binary=True)}")


MEMLOCK = Rule(
    "container-memlock",
    "Locked-memory limit in the container",
    "NVIDIA/nccl-tests#206 (FACTS F: NCCL ibv_reg_mr … Cannot allocate memory)",
)


def check_container_memlock(ctx: InsideContext) -> Check:
    limit = ctx.memlock_bytes
    if limit is None:
        return MEMLOCK.skip("memlock limit unknown")
    if limit == -1:
        return MEMLOCK.ok("unlimited")
    return MEMLOCK.warn(
        f"memlock is {human_bytes(limit, binary=True)}: NCCL over InfiniBand/RoCE fails with "
        "'ibv_reg_mr failed "
        "… Cannot allocate memory' (single-node NVLink/PCIe is not affected)",
        "run the container with --ulimit memlock=-1 (`torchrig up` does, where the host allows it)",
    )


def _services(ctx: InsideContext) -> set[str] | None:
    value = ctx.env.get(contract.ENV_SERVICES)
    if value is None:
        return None
    return {s.strip() for s in value.split(",") if s.strip()}


JUPYTER = Rule("jupyter", "JupyterLab answers", "docs/security.md (workbench services)")


def check_jupyter(ctx: InsideContext) -> Check:
    services = _services(ctx)
    if services is None:
        return JUPYTER.skip("TORCHRIG_SERVICES is not set: not a torchrig workbench")
    if "jupyter" not in services:
        return JUPYTER.skip("not enabled")
    url = f"http://127.0.0.1:{ctx.jupyter_port}/api"
    fix = (
        "see why in the workbench log (`torchrig logs` on the host); `torchrig up` recreates "
        "the workbench"
    )
    conn = http.client.HTTPConnection("127.0.0.1", ctx.jupyter_port, timeout=ctx.timeout_s)
    try:
        conn.request("GET", "/api")
        response = conn.getresponse()
        body = response.read(4096)
    except OSError as exc:
        return JUPYTER.fail(f"{url} does not answer: {exc.strerror or exc}", fix)
    finally:
        conn.close()
    if response.status != 200:
        return JUPYTER.fail(f"{url} answered HTTP {response.status}", fix)
    version = ""
    with contextlib.suppress(ValueError, AttributeError):
        version = str(json.loads(body).get("version", ""))
    return JUPYTER.ok(f"{url} answers" + (f" (jupyter_server {version})" if version else ""))


SSHD = Rule("sshd", "sshd listens", "docs/security.md (workbench services)")


def check_sshd(ctx: InsideContext) -> Check:
    services = _services(ctx)
    if services is None:
        return SSHD.skip("TORCHRIG_SERVICES is not set: not a torchrig workbench")
    if "ssh" not in services:
        return SSHD.skip("not enabled")
    where = f"127.0.0.1:{ctx.ssh_port}"
    fix = (
        "see sshd's reason in the workbench log (`torchrig logs`), then explain it with "
        "`torchrig doctor --explain '<the line>'`"
    )
    try:
        with socket.create_connection(("127.0.0.1", ctx.ssh_port), timeout=ctx.timeout_s) as conn:
            try:
                banner = conn.recv(256).decode("ascii", errors="replace").strip()
            except TimeoutError:
                banner = ""
    except OSError as exc:
        return SSHD.fail(f"nothing listens on {where}: {exc.strerror or exc}", fix)
    if not banner.startswith("SSH-"):
        said = f"it sent {banner[:40]!r}" if banner else "it sent no banner"
        return SSHD.fail(f"{where} accepts connections but is no SSH server: {said}", fix)
    return SSHD.ok(f"{where}: {banner.splitlines()[0][:60]}")


DISK = Rule(
    "disk",
    "Free space in the workspace and home",
    "issue 10 finding 7 (a full workspace: notebook saves failed with [Errno 2] '.~NAME'); "
    "doctor --explain disk-full",
)


def check_disk(ctx: InsideContext) -> Check:
    from torchrig.workbench import disk

    home = ctx.env.get("HOME") or ""
    paths = ctx.disk_paths if ctx.disk_paths is not None else ("/workspace", home)
    measured = [s for s in (disk.space(p) for p in paths if p) if s is not None]
    if not measured:
        return DISK.skip("neither /workspace nor the home folder can be looked at")
    low = disk.low_disk(s.path for s in measured)
    if low:
        return DISK.warn(
            "low disk: " + "; ".join(s.describe() for s in low) + " (saves may fail)",
            "free space there (old checkpoints, caches: `du -sh /workspace/* ~/.cache`), or "
            "give the workspace a bigger disk",
        )
    return DISK.ok("; ".join(s.describe() for s in measured))


InsideCheck = Callable[[InsideContext], Check]

INSIDE_CHECKS: list[InsideCheck] = [
    check_torch,
    check_cuda_build,
    check_cuda_available,
    check_device_count,
    check_device_arch,
    check_nccl,
    check_c_compiler,
    check_triton_ptxas,
    check_container_shm,
    check_container_memlock,
    check_jupyter,
    check_sshd,
    check_disk,
]
