"""Host checks: what must hold on this machine before a pull or build is worth starting.

Each check is one function of a HostContext, which holds everything it may look at: the
host facts (probed, or loaded with `--host FILE`), the spec (or the defaults when there is
none yet), the build the resolver chose for them, and the lock. Checks that look at the
live machine (ports, the workspace folder, the environment) say "skip" when the facts come
from a file, since they would describe this machine rather than that one.

The driver and kernel checks reuse the resolver's rules (minor-version compatibility, which
arch entry serves which compute capability), so doctor and `torchrig plan` cannot disagree.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from torchrig.compat.model import Compat, load_compat
from torchrig.compat.resolve import Resolution, driver_older_than, kernels_for, resolve
from torchrig.doctor.model import Check, Rule
from torchrig.errors import HostError, TorchrigError
from torchrig.fsutil import writable_by
from torchrig.host.facts import Engine, Gpu, HostFacts
from torchrig.lock.lockfile import LockFile
from torchrig.spec.model import Spec
from torchrig.units import human_bytes

GIB = 2**30
DOCKER_DEFAULT_SHM = 64 * 2**20
# What a workbench image costs on disk: layers are stored compressed and unpacked, and a
# build keeps its cache, so about 2.5 times what is downloaded.
IMAGE_DISK_FACTOR = 2.5
# Download estimates when there is no lock yet (a cu13x stack is ~4 GB of wheels: torch,
# cuBLAS, cuDNN, NCCL, cuSPARSELt, Triton, and the workbench's Python packages).
ESTIMATE_CUDA_DOWNLOAD = int(4.5 * GIB)
ESTIMATE_CPU_DOWNLOAD = 1 * GIB
ENGINE_ORDER = ("docker", "podman")
DEFAULT_SPEC_NOTE = (
    "no torchrig.toml here: checked against the defaults `torchrig init` starts from"
)


@dataclass(frozen=True)
class HostContext:
    """Everything a host check may look at. Build one with `host_context()`, or by hand in
    tests, where every field can be set to the case under test."""

    host: HostFacts
    compat: Compat
    spec: Spec | None = None
    spec_note: str = ""  # why the spec is the defaults, when it is
    spec_error: TorchrigError | None = None
    resolution: Resolution | None = None
    resolution_error: TorchrigError | None = None
    lock_path: Path | None = None  # None: no spec file, so no lock to look at
    lock: LockFile | None = None
    lock_error: TorchrigError | None = None
    workspace: Path | None = None
    engine: str | None = None  # the engine asked for with --engine
    env: Mapping[str, str] = field(default_factory=dict)
    live: bool = True  # the facts describe this machine (not a --host FILE)


def default_spec() -> Spec:
    from torchrig.spec.load import parse_spec

    return parse_spec('[project]\nname = "workbench"\n')


def host_context(
    host: HostFacts,
    *,
    spec_path: Path | None,
    engine: str | None = None,
    env: Mapping[str, str] | None = None,
    live: bool = True,
    compat: Compat | None = None,
) -> HostContext:
    """Load spec, build and lock the way `torchrig up` would, keeping errors as findings.

    `spec_path` None means ./torchrig.toml if it exists, else the defaults; a path that was
    named explicitly must exist.
    """
    from torchrig.spec.load import SPEC_FILE, load_spec

    compat = compat or load_compat()
    spec: Spec | None = None
    spec_error: TorchrigError | None = None
    note = ""
    path = spec_path if spec_path is not None else Path(SPEC_FILE)
    from_file = spec_path is not None or path.exists()
    if from_file:
        try:
            spec = load_spec(path)
        except TorchrigError as exc:
            spec_error = exc
    else:
        spec, note = default_spec(), DEFAULT_SPEC_NOTE
    resolution, resolution_error = (
        target_build(spec, host, compat) if spec is not None else (None, None)
    )
    lock_path = path.parent / "torchrig.lock" if from_file and spec is not None else None
    lock, lock_error = None, None
    if lock_path is not None and lock_path.exists():
        from torchrig.lock.lockfile import read_lock

        try:
            lock = read_lock(lock_path)
        except TorchrigError as exc:
            lock_error = exc
    return HostContext(
        host=host,
        compat=compat,
        spec=spec,
        spec_note=note,
        spec_error=spec_error,
        resolution=resolution,
        resolution_error=resolution_error,
        lock_path=lock_path,
        lock=lock,
        lock_error=lock_error,
        workspace=path.resolve().parent,
        engine=engine,
        env=dict(os.environ if env is None else env),
        live=live,
    )


def target_build(
    spec: Spec, host: HostFacts, compat: Compat
) -> tuple[Resolution | None, TorchrigError | None]:
    """The build `up` would use, or, when none fits this host, the build the spec would get
    on a host that fits: so the driver and kernel checks can say exactly what is missing."""
    try:
        return resolve(spec, host, compat), None
    except TorchrigError as exc:
        error = exc
    try:
        return resolve(spec, _without_gpu_facts(host), compat), error
    except TorchrigError:
        return None, error


def _without_gpu_facts(host: HostFacts) -> HostFacts:
    """The same GPUs (count, indexes, UUIDs) with driver and compute capability unknown."""
    gpus = [g.model_copy(update={"name": "", "cc": None}) for g in host.gpus]
    return host.model_copy(update={"driver": None, "gpus": gpus})


# --- helpers ------------------------------------------------------------------------------


def _selected_gpus(ctx: HostContext) -> list[Gpu]:
    """The host's GPUs that the spec gives the workbench (lenient: never raises)."""
    sel = ctx.spec.resources.gpus if ctx.spec else "all"
    gpus = ctx.host.gpus
    if sel == "none":
        return []
    if sel == "all":
        return list(gpus)
    if isinstance(sel, int):
        return list(gpus[:sel])
    return [g for g in gpus if str(g.index) in sel or g.uuid in sel]


def _cc(ctx: HostContext, gpu: Gpu) -> str | None:
    if gpu.cc:
        return gpu.cc
    known = ctx.compat.gpu_for(gpu.name)
    return known.cc if known else None


def _sm(cc: str) -> str:
    return "sm_" + cc.replace(".", "")


def _span(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{items[0]} … {items[-1]}"


def _build_label(res: Resolution) -> str:
    return f"torch {res.torch} {res.variant}"


def _alternative(ctx: HostContext) -> str:
    """A CUDA build that does run here, found by the resolver with the spec's torch choice
    loosened one step at a time; '' when there is none."""
    spec = ctx.spec
    if spec is None:
        return ""
    steps: list[dict[str, str]] = [{"variant": "auto"}, {"variant": "auto", "version": "latest"}]
    for update in steps:
        if all(getattr(spec.torch, key) == value for key, value in update.items()):
            continue
        loose = spec.model_copy(update={"torch": spec.torch.model_copy(update=update)})
        try:
            res = resolve(loose, ctx.host, ctx.compat)
        except TorchrigError:
            continue
        if res.cuda:
            settings = ", ".join(f'torch.{key} = "{value}"' for key, value in update.items())
            return f"or set {settings} in torchrig.toml ({_build_label(res)} runs on this host)"
    return ""


def _with_alternative(fix: str, ctx: HostContext) -> str:
    alternative = _alternative(ctx)
    return f"{fix}; {alternative}" if alternative else fix


def chosen_engine(ctx: HostContext) -> Engine | None:
    """The engine `up` would use: the one asked for, else the first that answers, else the
    first installed (so its error can be shown)."""
    if ctx.engine:
        return ctx.host.engine(ctx.engine)
    engines = [e for name in ENGINE_ORDER if (e := ctx.host.engine(name)) is not None]
    return next((e for e in engines if e.reachable), None) or next(
        (e for e in engines if e.present), None
    )


def _gpus_wanted(ctx: HostContext) -> bool:
    return bool(ctx.resolution and ctx.resolution.cuda and _selected_gpus(ctx))


# --- checks -------------------------------------------------------------------------------

DRIVER = Rule(
    "driver",
    "NVIDIA driver",
    "https://docs.nvidia.com/datacenter/tesla/driver-installation-guide/",
)


def check_driver(ctx: HostContext) -> Check:
    host, driver = ctx.host, ctx.host.driver
    install = (
        "install the NVIDIA driver (>= 580 runs every current build; Ubuntu: `sudo "
        "ubuntu-drivers install --gpgpu`), reboot, and check with `nvidia-smi`"
    )
    if driver is None:
        why = next((n for n in host.notes if n.startswith("No NVIDIA GPU")), "No NVIDIA driver")
        if ctx.spec is not None and ctx.spec.resources.gpus == "none":
            return DRIVER.ok(f'{why}; the spec asks for no GPU (resources.gpus = "none")')
        if ctx.resolution is not None and ctx.resolution.cuda:
            return DRIVER.fail(
                f"{why}, but the build is {_build_label(ctx.resolution)} (CUDA "
                f"{ctx.resolution.cuda})",
                f"{install}; or plan for a GPU server from here with --host FILE",
            )
        return DRIVER.warn(
            f"{why}: the workbench will be CPU-only",
            f'{install}; for a CPU-only workbench set resources.gpus = "none"',
        )
    cuda = f", supports CUDA up to {driver.cuda}" if driver.cuda else ""
    if not host.gpus:
        return DRIVER.warn(
            f"driver {driver.version} is loaded but lists no GPU{cuda}",
            "check `nvidia-smi -L` and `sudo dmesg | grep -i nvrm`; reseat or reboot",
        )
    names = sorted({g.name or "unnamed GPU" for g in host.gpus})
    return DRIVER.ok(f"driver {driver.version}{cuda}; {len(host.gpus)} GPU(s): {', '.join(names)}")


DRIVER_CUDA = Rule(
    "driver-cuda",
    "Driver runs the build's CUDA",
    "S22, S25 (FACTS T5, T5b: minor-version compatibility 13.x >= 580, 12.x >= 525.60.13)",
)


def check_driver_cuda(ctx: HostContext) -> Check:
    res, driver = ctx.resolution, ctx.host.driver
    if res is None:
        return DRIVER_CUDA.skip("no build to check (see the build check)")
    if not res.cuda:
        return DRIVER_CUDA.skip(f"{_build_label(res)} needs no NVIDIA driver")
    if driver is None:
        return DRIVER_CUDA.skip("no NVIDIA driver (see the driver check)")
    major = int(res.cuda.split(".")[0])
    mvc = ctx.compat.minor_compat_for(major)
    toolkit = ctx.compat.toolkit_driver(res.cuda)
    label = _build_label(res)
    if mvc and driver_older_than(driver.version, mvc.min_driver):
        want = toolkit.min_driver if toolkit else mvc.min_driver
        return DRIVER_CUDA.fail(
            f"{label} is built with CUDA {res.cuda}, which needs driver >= {mvc.min_driver} "
            f"(CUDA {major}.x minor-version compatibility); this host has {driver.version}",
            _with_alternative(f"update the NVIDIA driver to >= {want}", ctx),
        )
    if toolkit and driver_older_than(driver.version, toolkit.min_driver):
        return DRIVER_CUDA.warn(
            f"driver {driver.version} runs {label} (CUDA {res.cuda}) only under minor-version "
            f"compatibility: it is older than CUDA {toolkit.label}'s {toolkit.min_driver}, so "
            "PTX JIT (Triton, torch.compile) may fail with cudaErrorUnsupportedPtxVersion",
            f"update the NVIDIA driver to >= {toolkit.min_driver}",
        )
    need = toolkit.min_driver if toolkit else (mvc.min_driver if mvc else "?")
    return DRIVER_CUDA.ok(f"driver {driver.version} runs {label} (CUDA {res.cuda}, >= {need})")


GPU_ARCH = Rule(
    "gpu-arch",
    "GPU kernels in the build",
    "M, S48 (FACTS T4: torch.cuda.get_arch_list() per build; T9)",
)


def check_gpu_arch(ctx: HostContext) -> Check:
    res = ctx.resolution
    if res is None:
        return GPU_ARCH.skip("no build to check (see the build check)")
    gpus = _selected_gpus(ctx)
    if not gpus:
        return GPU_ARCH.skip("no GPU goes into the workbench")
    label = _build_label(res)
    if not res.cuda:
        if ctx.spec is not None and ctx.spec.torch.variant == "cpu":
            return GPU_ARCH.ok(f"{label} is CPU-only, as the spec asks: the GPUs go unused")
        return GPU_ARCH.warn(
            f"{label} is CPU-only: {len(gpus)} GPU(s) go unused",
            'set torch.variant = "auto" in torchrig.toml',
        )
    archs = res.arch_list
    if not archs:
        return GPU_ARCH.warn(
            f"the arch list of {label} is unknown: the GPUs' kernels cannot be checked",
            "after `torchrig up`, run `torchrig doctor --inside` in the workbench",
        )
    served, missing, unknown = [], [], []
    for gpu in gpus:
        cc = _cc(ctx, gpu)
        if cc is None:
            unknown.append(f"GPU {gpu.index} {gpu.name or '?'}")
            continue
        kernels = kernels_for(cc, archs)
        if kernels is None:
            missing.append((gpu, cc))
        else:
            served.append(f"GPU {gpu.index} {gpu.name} ({_sm(cc)}) runs {kernels}")
    if missing:
        gpu, cc = missing[0]
        others = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        return GPU_ARCH.fail(
            f"{gpu.name} ({_sm(cc)}){others} has no kernels in {label}, which has "
            f"{_span(archs)}: CUDA would fail with 'no kernel image is available for "
            "execution on the device'",
            _with_alternative(f"use a build whose arch list serves {_sm(cc)}", ctx),
        )
    if unknown:
        return GPU_ARCH.warn(
            f"compute capability unknown for {', '.join(unknown)}: kernels not checked",
            "run `torchrig doctor --inside` in the workbench to check on the device",
        )
    return GPU_ARCH.ok(f"{'; '.join(served)} of {label}")


MIG = Rule("mig", "MIG mode", "https://docs.nvidia.com/datacenter/tesla/mig-user-guide/")


def check_mig(ctx: HostContext) -> Check:
    gpus = ctx.host.gpus
    if not gpus:
        return MIG.skip("no GPU")
    on = [g for g in gpus if g.mig]
    if on:
        which = ", ".join(f"GPU {g.index} ({g.name})" for g in on)
        index = on[0].index
        return MIG.warn(
            f"MIG mode is on for {which}: CUDA apps see its MIG devices, not the whole GPU, "
            "and one process sees one MIG device",
            "list them with `nvidia-smi -L` and select them by MIG UUID: resources.gpus = "
            f'["MIG-…"]; or turn MIG off: `sudo nvidia-smi -i {index} -mig 0` (then reset '
            "the GPU)",
        )
    unknown = [str(g.index) for g in gpus if g.mig is None]
    if unknown:
        return MIG.ok(f"off where known; unknown for GPU {', '.join(unknown)}")
    return MIG.ok("off on every GPU")


CUDA_VISIBLE = Rule(
    "cuda-visible-devices",
    "CUDA_VISIBLE_DEVICES",
    "https://docs.nvidia.com/cuda/cuda-c-programming-guide/index.html#cuda-environment-variables",
)


def visible_devices_problem(value: str, count: int | None, uuids: list[str]) -> str:
    """Why a CUDA_VISIBLE_DEVICES value hides GPUs, or '' when it does not.

    CUDA reads the list up to the first entry it cannot match and ignores the rest.
    `count` is the number of GPUs when known; UUIDs may be prefixes, as CUDA accepts.
    """
    if value.strip() == "":
        return "is set but empty: CUDA sees no GPU at all"
    for entry in (e.strip() for e in value.split(",")):
        if entry.isdigit():
            if count is not None and int(entry) >= count:
                have = (
                    "there is no GPU"
                    if count == 0
                    else (
                        "there is only GPU 0"
                        if count == 1
                        else f"there are {count} (0–{count - 1})"
                    )
                )
                return (
                    f"names GPU {entry}, but {have}; CUDA stops at it and ignores the entries "
                    "after it"
                )
        elif entry.startswith("GPU-"):
            if uuids and not any(u.startswith(entry) for u in uuids):
                return f"names {entry}, which is no GPU here; CUDA stops at it"
        elif not entry.startswith("MIG-"):
            return f"has {entry!r}, which is neither an index nor a UUID; CUDA stops at it"
    return ""


def check_cuda_visible_devices(ctx: HostContext) -> Check:
    if not ctx.live:
        return CUDA_VISIBLE.skip("facts come from a file: this machine's environment is moot")
    value = ctx.env.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return CUDA_VISIBLE.ok("not set: CUDA programs see every GPU")
    gpus = ctx.host.gpus
    problem = visible_devices_problem(value, len(gpus), [g.uuid for g in gpus if g.uuid])
    if problem:
        return CUDA_VISIBLE.warn(
            f"CUDA_VISIBLE_DEVICES={value!r} {problem} (in this shell; the workbench gets its "
            "GPUs from resources.gpus, not from this variable)",
            "`unset CUDA_VISIBLE_DEVICES`, or list valid indexes/UUIDs from `nvidia-smi -L`",
        )
    return CUDA_VISIBLE.ok(f"CUDA_VISIBLE_DEVICES={value!r} names GPUs of this host")


ENGINE = Rule(
    "engine", "Container engine", "https://docs.docker.com/engine/install/linux-postinstall/"
)


def check_engine(ctx: HostContext) -> Check:
    engine = chosen_engine(ctx)
    if engine is None or not engine.present:
        if ctx.engine:
            return ENGINE.fail(
                f"{ctx.engine} is not installed",
                f"install it (`sudo apt-get install {_package(ctx.engine)}`)",
            )
        why = (
            "; ".join(f"{e.name}: {e.error or 'not installed'}" for e in ctx.host.engines)
            or "no engine was probed"
        )
        return ENGINE.fail(
            f"no container engine ({why})",
            "install Docker (`sudo apt-get install docker.io`) or Podman (`sudo apt-get "
            "install podman`)",
        )
    if not engine.reachable:
        error = engine.error or "it did not answer"
        if "permission denied" in error.lower():
            return ENGINE.fail(
                f"{engine.name} is installed but this user may not use it: {error}",
                "`sudo usermod -aG docker $USER`, then log out and in (or `newgrp docker`); "
                "the docker group is root-equivalent: rootless Docker or Podman avoid that",
            )
        if engine.name == "docker":
            hint = " (check DOCKER_HOST)" if ctx.env.get("DOCKER_HOST") else ""
            return ENGINE.fail(
                f"docker is installed but its daemon does not answer: {error}",
                f"start it: `sudo systemctl start docker`{hint}",
            )
        return ENGINE.fail(
            f"podman is installed but does not work: {error}",
            "run `podman info` to see why (rootless: check /etc/subuid and /etc/subgid)",
        )
    mode = {True: "rootless", False: "rootful", None: ""}[engine.rootless]
    version = engine.server_version or engine.client_version or "?"
    extra = f", {mode}" if mode else ""
    return ENGINE.ok(f"{engine.name} {version} answers{extra}")


def _package(engine: str) -> str:
    return "docker.io" if engine == "docker" else "podman"


TOOLKIT = Rule(
    "container-toolkit",
    "GPUs into containers",
    "NVIDIA/nvidia-docker#1034, #1642; https://docs.nvidia.com/datacenter/cloud-native/"
    "container-toolkit/latest/install-guide.html",
)


def check_container_toolkit(ctx: HostContext) -> Check:
    if not _gpus_wanted(ctx):
        return TOOLKIT.skip("no GPU goes into the workbench")
    engine = chosen_engine(ctx)
    if engine is None or not engine.reachable:
        return TOOLKIT.skip("no usable container engine (see the engine check)")
    cdi = [d for d in engine.cdi_devices if d.startswith("nvidia.com/gpu=")]
    if engine.name == "docker":
        if engine.path.startswith("/snap/"):
            return TOOLKIT.fail(
                f"Docker is installed as a snap ({engine.path}): the NVIDIA Container "
                "Toolkit cannot configure it",
                "remove the snap (`sudo snap remove docker`), install Docker from your "
                "distribution or docker.com, then the toolkit",
            )
        if engine.nvidia_runtime:
            return TOOLKIT.ok("Docker has the nvidia runtime registered")
        if cdi:
            return TOOLKIT.ok(f"Docker can use CDI devices ({_span(cdi)})")
        return TOOLKIT.fail(
            "Docker has no NVIDIA runtime and no CDI spec: --gpus fails with 'could not "
            'select device driver "" with capabilities: [[gpu]]\'',
            "install nvidia-container-toolkit, then `sudo nvidia-ctk runtime configure "
            "--runtime=docker && sudo systemctl restart docker` (check: `docker run --rm "
            "--gpus all ubuntu nvidia-smi -L`)",
        )
    if cdi:
        return TOOLKIT.ok(f"Podman has CDI devices ({_span(cdi)})")
    return TOOLKIT.fail(
        "Podman has no CDI spec for nvidia.com/gpu (/etc/cdi, /var/run/cdi): it cannot pass "
        "GPUs in",
        "install nvidia-container-toolkit, then `sudo nvidia-ctk cdi generate "
        "--output=/etc/cdi/nvidia.yaml` (check: `podman run --rm --device nvidia.com/gpu=all "
        "ubuntu nvidia-smi -L`)",
    )


DISK = Rule(
    "disk",
    "Free disk for images",
    "torchrig estimate: an image takes about 2.5 × its download (compressed + unpacked layers)",
)


def check_disk(ctx: HostContext) -> Check:
    engine = chosen_engine(ctx)
    if engine is None or not engine.reachable:
        return DISK.skip("no usable container engine (see the engine check)")
    free = engine.storage_free_bytes
    where = engine.storage_path or "the engine's storage"
    if free is None:
        return DISK.skip(f"free space at {where} unknown")
    download, how = _download_bytes(ctx)
    need = int(download * IMAGE_DISK_FACTOR)
    finding = (
        f"{human_bytes(free, binary=True)} free at {where}; the image needs about "
        f"{human_bytes(need, binary=True)} "
        f"({IMAGE_DISK_FACTOR:g} × {human_bytes(download, binary=True)} to download, {how})"
    )
    setting = (
        "data-root in /etc/docker/daemon.json"
        if engine.name == "docker"
        else "graphroot in storage.conf"
    )
    fix = (
        f"free space (`{engine.name} system prune`, `{engine.name} image prune -a`) or move "
        f"the engine's storage to a bigger disk ({setting})"
    )
    if free < need:
        return DISK.fail(finding, fix)
    if free < 2 * need:
        return DISK.warn(finding + ": little room for a rebuild", fix)
    return DISK.ok(finding)


def _download_bytes(ctx: HostContext) -> tuple[int, str]:
    res = ctx.resolution
    target = ctx.lock.target(res.variant) if ctx.lock and res else None
    if target is not None and target.download_bytes > 0:
        return target.download_bytes, f"from torchrig.lock ({target.variant})"
    if res is not None and not res.cuda:
        return ESTIMATE_CPU_DOWNLOAD, "estimated for a CPU build: no lock yet"
    return ESTIMATE_CUDA_DOWNLOAD, "estimated for a CUDA build: no lock yet"


SHM = Rule(
    "shm",
    "/dev/shm on the host",
    "pytorch README.md, torch/csrc/DataLoader.cpp (FACTS F: DataLoader bus error)",
)


def check_shm(ctx: HostContext) -> Check:
    from torchrig.plan.run import shm_size

    shm = ctx.host.system.shm_bytes
    if shm is None:
        return SHM.skip("size of /dev/shm unknown")
    given = shm_size(ctx.spec or default_spec(), ctx.host)
    if shm <= DOCKER_DEFAULT_SHM:
        return SHM.warn(
            f"/dev/shm here is only {human_bytes(shm, binary=True)}: DataLoader workers die "
            "with 'Bus error' and "
            f"NCCL fails in processes run outside the workbench (the workbench is not "
            f"affected: torchrig runs it with its own --shm-size={given})",
            "for other containers pass --shm-size=8g; on this machine: `sudo mount -o "
            "remount,size=8g /dev/shm`",
        )
    return SHM.ok(f"{human_bytes(shm, binary=True)}; the workbench gets its own --shm-size={given}")


MEMLOCK = Rule(
    "memlock",
    "Locked-memory limit",
    "NVIDIA/nccl-tests#206 (FACTS F: NCCL ibv_reg_mr … Cannot allocate memory)",
)


def check_memlock(ctx: HostContext) -> Check:
    memlock = ctx.host.system.memlock_bytes
    if memlock is None:
        return MEMLOCK.skip("memlock limit unknown")
    if memlock == -1:
        return MEMLOCK.ok("unlimited")
    engine = chosen_engine(ctx)
    if engine is not None and engine.reachable and engine.rootless:
        user = ctx.host.system.user or "$USER"
        return MEMLOCK.warn(
            f"memlock is {human_bytes(memlock, binary=True)} and {engine.name} runs rootless: "
            "the workbench cannot "
            "raise it (--ulimit memlock=-1), so NCCL over InfiniBand/RoCE fails with "
            "'ibv_reg_mr failed … Cannot allocate memory'",
            f"raise this user's limit: add `{user} - memlock unlimited` to "
            "/etc/security/limits.conf, then log in again",
        )
    return MEMLOCK.ok(
        f"{human_bytes(memlock, binary=True)} in this shell; the workbench runs with "
        "--ulimit memlock=-1"
    )


PORTS = Rule("ports", "Ports on 127.0.0.1", "torchrig.toml services.*.port (spec reference)")


def check_ports(ctx: HostContext) -> Check:
    from torchrig.contract import PORTS as CONTAINER_PORTS
    from torchrig.launch.local import choose_ports

    if not ctx.live:
        return PORTS.skip("facts come from a file: ports on this machine are moot")
    spec = ctx.spec or default_spec()
    wanted = {
        name: getattr(spec.services, name).port or CONTAINER_PORTS[name]
        for name in CONTAINER_PORTS
        if getattr(spec.services, name).enabled
    }
    if not wanted:
        return PORTS.skip("no service publishes a port")
    try:
        chosen = choose_ports(spec)
    except HostError as exc:
        return PORTS.fail(exc.message, exc.fix or "free a port")
    busy = [name for name, port in wanted.items() if chosen.get(name) != port]
    shown = ", ".join(f"{name} {port}" for name, port in wanted.items())
    if busy:
        first = busy[0]
        taken = ", ".join(f"{wanted[n]} ({n})" for n in busy)
        moved = ", ".join(f"{n} → {chosen[n]}" for n in busy)
        return PORTS.warn(
            f"127.0.0.1:{taken} in use (by another program, or this workbench if it is up): "
            f"`torchrig up` will take the next free port ({moved})",
            f"see who holds it: `ss -ltnp 'sport = :{wanted[first]}'`; or set "
            f"services.{first}.port in torchrig.toml",
        )
    return PORTS.ok(f"free: {shown}")


WORKSPACE = Rule(
    "workspace",
    "Workspace writable by the workbench user",
    "https://jupyter-docker-stacks.readthedocs.io/en/latest/using/troubleshooting.html",
)


def check_workspace(ctx: HostContext) -> Check:
    from torchrig.launch.workspace_access import has_write
    from torchrig.plan.run import identity

    if not ctx.live:
        return WORKSPACE.skip("facts come from a file: this machine's folders are moot")
    if ctx.workspace is None:
        return WORKSPACE.skip("no workspace folder")
    who = identity(ctx.spec or default_spec(), ctx.host)
    path = ctx.workspace
    try:
        st = path.stat()
    except FileNotFoundError:
        return WORKSPACE.fail(f"workspace {path} does not exist", f"`mkdir -p {path}`")
    except OSError as exc:
        return WORKSPACE.fail(f"cannot read {path}: {exc.strerror}", "check its permissions")
    owner = f"{st.st_uid}:{st.st_gid}, mode {stat.S_IMODE(st.st_mode):04o}"
    # By mode and ACL: as root, `up` lets the workbench user write a root-owned folder
    # with an ACL entry (launch/workspace_access.py), which the mode alone does not show.
    if writable_by(st, who.uid, who.gid) or has_write(path, who.uid, who.gid):
        return WORKSPACE.ok(
            f"{path} ({owner}) is writable by the workbench user {who.name} (uid {who.uid})"
        )
    if ctx.host.system.uid == 0 and st.st_uid == 0:
        return WORKSPACE.ok(
            f"{path} ({owner}) is root's: `torchrig up` gives the workbench user {who.name} "
            f"(uid {who.uid}) the owner's rights with a POSIX ACL entry, never a chown "
            "(docs/workbench.md, Run as root)"
        )
    return WORKSPACE.warn(
        f"{path} ({owner}) is not writable by the workbench user {who.name} (uid {who.uid}, "
        f"gid {who.gid}): saving notebooks and checkpoints fails with 'Permission denied'",
        f"`sudo chown -R {who.uid}:{who.gid} {path}`, or run torchrig as the folder's owner "
        "(user.uid/user.gid in torchrig.toml); never chmod 777",
    )


BUILD = Rule("build", "A PyTorch build fits", "docs/resolution.md (FACTS T1–T5, T10)")


def check_build(ctx: HostContext) -> Check:
    if ctx.spec_error is not None:
        return BUILD.fail(ctx.spec_error.message, ctx.spec_error.fix or "fix torchrig.toml")
    if ctx.resolution_error is not None:
        return BUILD.fail(
            ctx.resolution_error.message,
            ctx.resolution_error.fix or "change torch.version or torch.variant",
        )
    res = ctx.resolution
    if res is None:
        return BUILD.skip("no spec")
    cuda = f" (CUDA {res.cuda})" if res.cuda else ""
    note = f" [{ctx.spec_note}]" if ctx.spec_note else ""
    return BUILD.ok(
        f"{_build_label(res)}{cuda}, Python {res.python} on {res.base.distribution}{note}"
    )


LOCK = Rule("lock", "torchrig.lock", "docs/resolution.md; `torchrig lock --check`")


def check_lock(ctx: HostContext) -> Check:
    from torchrig.lock.make import check_lock as stale

    if ctx.lock_path is None:
        return LOCK.skip("no torchrig.toml, so no lock")
    if ctx.lock_error is not None:
        return LOCK.fail(ctx.lock_error.message, ctx.lock_error.fix or "run `torchrig lock`")
    if ctx.lock is None:
        return LOCK.ok("none yet: `torchrig up` locks first (or run `torchrig lock`)")
    if ctx.spec is None:
        return LOCK.skip("torchrig.toml is broken (see the build check)")
    problems = stale(ctx.lock, ctx.spec, ctx.compat)
    if problems:
        return LOCK.fail(
            "torchrig.toml no longer matches torchrig.lock: " + "; ".join(problems),
            "run `torchrig lock`",
        )
    res = ctx.resolution
    if res is not None:
        target = ctx.lock.target(res.variant)
        if target is None:
            have = ", ".join(t.variant for t in ctx.lock.targets)
            return LOCK.fail(
                f"torchrig.lock has targets {have}, but this host needs {res.variant}",
                f"run `torchrig lock --variant {res.variant}`",
            )
        return LOCK.ok(
            f"matches torchrig.toml; {res.variant}: {len(target.packages)} packages, "
            f"{human_bytes(target.download_bytes)} to download"
        )
    return LOCK.ok("matches torchrig.toml")


HostCheck = Callable[[HostContext], Check]

# In the order a person fixes things: driver and build, GPUs, engine, then the smaller stuff.
HOST_CHECKS: list[HostCheck] = [
    check_driver,
    check_build,
    check_driver_cuda,
    check_gpu_arch,
    check_mig,
    check_cuda_visible_devices,
    check_engine,
    check_container_toolkit,
    check_disk,
    check_shm,
    check_memlock,
    check_ports,
    check_workspace,
    check_lock,
]
