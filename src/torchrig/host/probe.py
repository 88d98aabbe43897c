"""Probe this machine for HostFacts: NVIDIA driver and GPUs, container engines, system limits.

Each source is one function that takes what it reads as parameters: `root` for /proc, /etc
and /dev, `run` for subprocesses, `which` for finding CLIs, `nvml` for the NVML module. Tests
feed recorded outputs through them instead of patching internals.

Nothing here raises. Every failure becomes one line in HostFacts.notes, and "no GPU" and "no
usable container engine" are said there in so many words, with the reasons.

GPU sources, best first: NVML (nvidia-ml-py) → /proc/driver/nvidia → `nvidia-smi -q -x`.
When NVML fails both fallbacks are tried; nvidia-smi, when it answers, replaces the thinner
/proc view (which has no memory size, CUDA version or compute capability).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import platform
import re
import shutil
import socket
import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from xml.etree import ElementTree

from torchrig import contract
from torchrig.command import run_command
from torchrig.host.facts import Driver, Engine, Gpu, HostFacts, System
from torchrig.host.podman_pause import no_new_pause_process

Runner = Callable[[Sequence[str], float], "subprocess.CompletedProcess[str]"]
Which = Callable[[str], "str | None"]

ROOT = Path("/")
ENGINE_NAMES: tuple[str, ...] = ("docker", "podman")
ENGINE_TIMEOUT_S = 4.0  # a DOCKER_HOST that does not answer must not stall `torchrig plan`
NVIDIA_SMI_TIMEOUT_S = 5.0
CDI_SPEC_DIRS = ("etc/cdi", "var/run/cdi")
DOCKER_DEFAULT_SHM_BYTES = contract.SHM_ENGINE_DEFAULT

T = TypeVar("T")

NO_GPU = "No NVIDIA GPU found"
NO_ENGINE = "No usable container engine"


class Unavailable(Exception):
    """A source is absent or failed; the message is the one-line reason."""


def probe_host(
    engines: bool | tuple[str, ...] = True,
    *,
    root: Path = ROOT,
    run: Runner = run_command,
    which: Which = shutil.which,
    nvml: Any = None,
) -> HostFacts:
    """Collect the facts of this machine. `engines=False` skips docker/podman (faster); a
    tuple of names probes only those (a verb given --engine: `podman info` took 3-7 s on a
    busy 2-core host, all of it before a `torchrig up --engine docker` could start)."""
    notes: list[str] = []
    names = ENGINE_NAMES if engines is True else tuple(engines or ())
    with ThreadPoolExecutor(max_workers=len(ENGINE_NAMES)) as pool:
        # Engines answer over sockets and subprocesses; probe them while NVML initialises.
        pending = [
            pool.submit(probe_engine, name, root=root, run=run, which=which) for name in names
        ]
        system = _step(notes, "system", lambda: probe_system(root, notes), System())
        driver, gpus = probe_gpus(root=root, run=run, which=which, nvml=nvml, notes=notes)
        found = [future.result() for future in pending]
    engine_list = [engine for engine, _ in found]
    for _, engine_notes in found:
        notes.extend(engine_notes)
    if engines and not any(e.reachable for e in engine_list):
        why = "; ".join(f"{e.name}: {e.error or 'not reachable'}" for e in engine_list)
        notes.append(f"{NO_ENGINE} ({why})")
    return HostFacts(
        collected_at=datetime.now(UTC).isoformat(timespec="seconds"),
        hostname=_hostname(),
        system=system,
        driver=driver,
        gpus=gpus,
        engines=engine_list,
        notes=notes,
    )


# --- system ------------------------------------------------------------------------------


def probe_system(root: Path = ROOT, notes: list[str] | None = None) -> System:
    """OS, kernel, CPUs, memory, /dev/shm, memlock, glibc and the user running torchrig."""
    notes = [] if notes is None else notes
    uid, gid = os.getuid(), os.getgid()
    return System(
        os=_step(notes, "os-release", lambda: read_os_release(root), ""),
        kernel=platform.release(),
        arch=normalise_arch(platform.machine()),
        cpus=_cpu_count(),
        memory_bytes=_step(notes, "/proc/meminfo", lambda: read_memory_bytes(root), 0),
        shm_bytes=_step(notes, "/dev/shm", lambda: read_shm_bytes(root), None),
        memlock_bytes=_step(notes, "memlock limit", read_memlock_bytes, None),
        glibc=_glibc_version(),
        user=_user_name(uid),
        uid=uid,
        gid=gid,
    )


def read_os_release(root: Path = ROOT) -> str:
    for name in ("etc/os-release", "usr/lib/os-release"):
        path = root / name
        if path.is_file():
            return parse_os_release(path.read_text("utf-8", errors="replace"))
    raise Unavailable("no /etc/os-release")


def parse_os_release(text: str) -> str:
    """PRETTY_NAME, falling back to NAME VERSION."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            values[key] = _unquote(value)
    pretty = values.get("PRETTY_NAME") or " ".join(
        v for v in (values.get("NAME", ""), values.get("VERSION", "")) if v
    )
    return pretty.strip()


def read_memory_bytes(root: Path = ROOT) -> int:
    return parse_meminfo((root / "proc/meminfo").read_text("utf-8", errors="replace"))


def parse_meminfo(text: str) -> int:
    match = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.MULTILINE)
    if not match:
        raise Unavailable("no MemTotal line in /proc/meminfo")
    return int(match.group(1)) * 1024


def read_shm_bytes(root: Path = ROOT) -> int:
    path = root / "dev/shm"
    if not path.is_dir():
        raise Unavailable("/dev/shm does not exist")
    st = os.statvfs(path)
    return st.f_frsize * st.f_blocks


def read_memlock_bytes() -> int:
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    return -1 if soft == resource.RLIM_INFINITY else soft


def normalise_arch(machine: str) -> str:
    machine = machine.lower()
    return {"arm64": "aarch64", "amd64": "x86_64", "x64": "x86_64"}.get(machine, machine)


def _cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))  # honours taskset and cgroup cpusets
    return os.cpu_count() or 0


def _glibc_version() -> str:
    with contextlib.suppress(AttributeError, ValueError, OSError):
        value = os.confstr("CS_GNU_LIBC_VERSION") or ""  # "glibc 2.36"
        if value.startswith("glibc "):
            return value.split()[1]
    lib, version = platform.libc_ver()
    return version if lib == "glibc" else ""


def _user_name(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):  # a container user with no passwd entry
        return os.environ.get("USER", "")


def _hostname() -> str:
    try:
        return socket.gethostname()
    except OSError:
        return platform.node()


# --- GPUs --------------------------------------------------------------------------------


def probe_gpus(
    *,
    root: Path = ROOT,
    run: Runner = run_command,
    which: Which = shutil.which,
    nvml: Any = None,
    notes: list[str] | None = None,
) -> tuple[Driver | None, list[Gpu]]:
    """Driver and GPUs from the best source that answers; says why when there are none."""
    notes = [] if notes is None else notes
    try:
        driver, gpus = probe_nvml(nvml, notes)
        if not gpus:
            notes.append(f"{NO_GPU} (NVML: driver {driver.version} is loaded but lists no GPU)")
        return driver, gpus
    except Exception as exc:
        reasons = [f"NVML: {_why(exc)}"]

    sources: list[tuple[str, Callable[[], tuple[Driver, list[Gpu]]]]] = [
        ("/proc/driver/nvidia", lambda: probe_proc_nvidia(root)),
        ("nvidia-smi", lambda: probe_nvidia_smi(run, which)),
    ]
    fallbacks: list[tuple[str, tuple[Driver, list[Gpu]]]] = []
    for label, source in sources:
        try:
            fallbacks.append((label, source()))
        except Exception as exc:
            reasons.append(f"{label}: {_why(exc)}")
    # nvidia-smi (last) is the richer source; /proc still gives the driver when it alone works.
    for label, (driver, gpus) in reversed(fallbacks):
        if gpus:
            notes.append(f"GPU facts from {label}: {'; '.join(reasons)}")
            return driver, gpus
    if fallbacks:
        label, (driver, _) = fallbacks[-1]
        notes.append(
            f"{NO_GPU} ({label}: driver {driver.version} lists no GPU; {'; '.join(reasons)})"
        )
        return driver, []
    notes.append(f"{NO_GPU} ({'; '.join(reasons)})")
    return None, []


def probe_nvml(nvml: Any = None, notes: list[str] | None = None) -> tuple[Driver, list[Gpu]]:
    """Driver and GPUs through NVML. Raises when NVML itself cannot start."""
    notes = [] if notes is None else notes
    if nvml is None:
        try:
            nvml = importlib.import_module("pynvml")
        except ImportError:
            raise Unavailable("nvidia-ml-py is not installed") from None
    nvml.nvmlInit()
    try:
        version = _text(nvml.nvmlSystemGetDriverVersion())
        get_cuda = getattr(nvml, "nvmlSystemGetCudaDriverVersion_v2", None) or (
            nvml.nvmlSystemGetCudaDriverVersion
        )
        cuda = _step(notes, "NVML CUDA version", lambda: cuda_version_string(get_cuda()), "")
        driver = Driver(version=version, cuda=cuda, source="nvml")
        gpus: list[Gpu] = []
        for index in range(nvml.nvmlDeviceGetCount()):
            try:
                gpus.append(_nvml_gpu(nvml, index, notes))
            except Exception as exc:
                notes.append(f"NVML: GPU {index} skipped: {_why(exc)}")
        return driver, gpus
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()


def _nvml_gpu(nvml: Any, index: int, notes: list[str]) -> Gpu:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    where = f"NVML GPU {index}"

    def cc() -> str:
        major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
        return f"{int(major)}.{int(minor)}"

    return Gpu(
        index=index,
        name=_text(nvml.nvmlDeviceGetName(handle)),
        uuid=_step(notes, f"{where} UUID", lambda: _text(nvml.nvmlDeviceGetUUID(handle)), ""),
        memory_mib=_step(
            notes, f"{where} memory", lambda: nvml.nvmlDeviceGetMemoryInfo(handle).total >> 20, None
        ),
        cc=_step(notes, f"{where} compute capability", cc, None),
        mig=_nvml_mig(nvml, handle, notes, where),
        pci_bus_id=_step(
            notes,
            f"{where} PCI bus id",
            lambda: normalise_bus_id(_text(nvml.nvmlDeviceGetPciInfo(handle).busId)),
            "",
        ),
        source="nvml",
    )


def _nvml_mig(nvml: Any, handle: Any, notes: list[str], where: str) -> bool | None:
    not_supported = getattr(nvml, "NVMLError_NotSupported", None)
    try:
        current, _pending = nvml.nvmlDeviceGetMigMode(handle)
    except Exception as exc:
        if not_supported is not None and isinstance(exc, not_supported):
            return False  # a GPU without MIG (everything before A100/H100) has it off
        notes.append(f"{where} MIG mode: {_why(exc)}")
        return None
    return bool(current == getattr(nvml, "NVML_DEVICE_MIG_ENABLE", 1))


def cuda_version_string(value: int) -> str:
    """NVML's integer CUDA version, 13000 → '13.0', 12080 → '12.8'."""
    return f"{value // 1000}.{value % 1000 // 10}"


def normalise_bus_id(bus_id: str) -> str:
    """NVML's form, '00000000:00:06.0', from it or /proc's '0000:00:06.0'."""
    match = re.fullmatch(r"([0-9a-fA-F]+):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])", bus_id)
    if not match:
        return bus_id.strip()
    domain, bus, device, function = match.groups()
    return f"{int(domain, 16):08X}:{bus.upper()}:{device.upper()}.{function}"


def probe_proc_nvidia(root: Path = ROOT) -> tuple[Driver, list[Gpu]]:
    """The kernel module's view: driver version, and name/UUID/bus of each GPU (no CC)."""
    base = root / "proc/driver/nvidia"
    version_file = base / "version"
    if not version_file.is_file():
        raise Unavailable("not present, the NVIDIA kernel module is not loaded")
    driver = Driver(
        version=parse_proc_driver_version(version_file.read_text("utf-8", errors="replace")),
        source="proc",
    )
    gpus_dir = base / "gpus"
    info_files = sorted(gpus_dir.glob("*/information")) if gpus_dir.is_dir() else []
    gpus = [
        parse_proc_gpu_information(path.read_text("utf-8", errors="replace"), index)
        for index, path in enumerate(info_files)
    ]
    return driver, gpus


def parse_proc_driver_version(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("NVRM version:"):
            match = re.search(r"\s(\d+\.\d+(?:\.\d+)?)\s", line + " ")
            if match:
                return match.group(1)
    raise Unavailable("no driver version in /proc/driver/nvidia/version")


def parse_proc_gpu_information(text: str, index: int) -> Gpu:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return Gpu(
        index=index,
        name=fields.get("Model", ""),
        uuid=fields.get("GPU UUID", ""),
        pci_bus_id=normalise_bus_id(fields.get("Bus Location", "")),
        source="proc",
    )


def probe_nvidia_smi(
    run: Runner = run_command, which: Which = shutil.which
) -> tuple[Driver, list[Gpu]]:
    path = which("nvidia-smi")
    if not path:
        raise Unavailable("not on PATH")
    try:
        proc = run([path, "-q", "-x"], NVIDIA_SMI_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise Unavailable(f"no answer within {NVIDIA_SMI_TIMEOUT_S:g} s") from None
    if proc.returncode != 0:
        raise Unavailable(
            _first_line(proc.stdout + "\n" + proc.stderr) or f"exit {proc.returncode}"
        )
    return parse_nvidia_smi_xml(proc.stdout)


def parse_nvidia_smi_xml(text: str) -> tuple[Driver, list[Gpu]]:
    log = ElementTree.fromstring(text)
    driver = Driver(
        version=_smi_value(log.findtext("driver_version")) or "",
        cuda=_smi_value(log.findtext("cuda_version")) or "",
        source="nvidia-smi",
    )
    gpus = []
    for index, gpu in enumerate(log.findall("gpu")):
        mig = _smi_value(gpu.findtext("mig_mode/current_mig"))
        memory = _smi_value(gpu.findtext("fb_memory_usage/total"))
        memory_match = re.fullmatch(r"(\d+)\s*MiB", memory or "")
        gpus.append(
            Gpu(
                index=index,
                name=_smi_value(gpu.findtext("product_name")) or "",
                uuid=_smi_value(gpu.findtext("uuid")) or "",
                memory_mib=int(memory_match.group(1)) if memory_match else None,
                cc=_smi_compute_capability(gpu),
                mig=None if mig is None else mig.lower() == "enabled",
                pci_bus_id=normalise_bus_id(
                    _smi_value(gpu.findtext("pci/pci_bus_id")) or (gpu.get("id") or "")
                ),
                source="nvidia-smi",
            )
        )
    return driver, gpus


def _smi_compute_capability(gpu: ElementTree.Element) -> str | None:
    """Newer nvidia-smi versions report it; the element name has not been stable."""
    for tag in ("compute_cap", "compute_capability", "cuda_compute_capability"):
        element = gpu.find(tag)
        if element is None:
            continue
        text = (element.text or "").strip()
        if re.fullmatch(r"\d+\.\d+", text):
            return text
        major, minor = element.findtext("major"), element.findtext("minor")
        if major and minor and major.strip().isdigit() and minor.strip().isdigit():
            return f"{int(major)}.{int(minor)}"
    return None


def _smi_value(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.strip()
    return None if text in ("", "N/A", "Not Supported", "[N/A]") else text


# --- container engines -------------------------------------------------------------------


def probe_engine(
    name: str,
    *,
    root: Path = ROOT,
    run: Runner = run_command,
    which: Which = shutil.which,
) -> tuple[Engine, list[str]]:
    """One engine: CLI, versions, whether it answers, rootless, NVIDIA runtime/CDI, storage."""
    notes: list[str] = []
    engine = Engine(name="podman" if name == "podman" else "docker")
    try:
        path = which(engine.name)
        if not path:
            engine.error = f"the {engine.name} CLI is not installed (not on PATH)"
            return engine, notes
        engine.path = path
        if engine.name == "docker":
            _probe_docker(engine, run, notes)
        else:
            # Rootless Podman starts a pause process that outlives it: not left behind.
            with no_new_pause_process(root / "proc"):
                _probe_podman(engine, run, notes)
        if engine.reachable:
            engine.cdi_devices = _step(notes, "CDI specs", lambda: read_cdi_devices(root), [])
            engine.storage_free_bytes = _free_bytes(root, engine.storage_path)
    except Exception as exc:  # a bug in a parser must not cost the whole report
        engine.error = engine.error or _why(exc)
        notes.append(f"{engine.name}: {_why(exc)}")
    return engine, notes


def _probe_docker(engine: Engine, run: Runner, notes: list[str]) -> None:
    # Both questions at once: they are independent, and each is a CLI start and a daemon
    # round trip on the way of every `up` (issue 18: up ≤ 3 s). `info` is read only if
    # `version` says the daemon answered.
    with ThreadPoolExecutor(max_workers=1) as pool:
        asked = pool.submit(_engine_json, run, [engine.path, "info", "--format", "{{json .}}"])
        ok, version, error = _engine_json(run, [engine.path, "version", "--format", "{{json .}}"])
        engine.client_version = str((version.get("Client") or {}).get("Version", ""))
        server = version.get("Server") or {}
        if not ok or not server:
            engine.error = error or "the Docker daemon did not answer"
            return
        engine.reachable = True
        engine.server_version = str(server.get("Version", ""))
        ok, info, error = asked.result()
    if not ok:
        notes.append(f"docker info failed: {error}")
        return
    apply_docker_info(engine, info)


def apply_docker_info(engine: Engine, info: dict[str, Any]) -> None:
    options = [str(o) for o in info.get("SecurityOptions") or []]
    engine.rootless = any("name=rootless" in o.split(",") for o in options)
    engine.nvidia_runtime = "nvidia" in (info.get("Runtimes") or {})
    engine.storage_path = str(info.get("DockerRootDir") or "")
    engine.server_version = engine.server_version or str(info.get("ServerVersion") or "")


def _probe_podman(engine: Engine, run: Runner, notes: list[str]) -> None:
    ok, version, error = _engine_json(run, [engine.path, "version", "--format", "json"])
    engine.client_version = str((version.get("Client") or {}).get("Version", ""))
    if not ok and not version:
        notes.append(f"podman version failed: {error}")
    # Podman has no daemon: it answers when `podman info` works (remote mode included).
    ok, info, error = _engine_json(run, [engine.path, "info", "--format", "json"])
    if not ok:
        engine.error = error or "podman info failed"
        return
    engine.reachable = True
    apply_podman_info(engine, info)


def apply_podman_info(engine: Engine, info: dict[str, Any]) -> None:
    security = (info.get("host") or {}).get("security") or {}
    rootless = security.get("rootless")
    engine.rootless = rootless if isinstance(rootless, bool) else None
    engine.storage_path = str((info.get("store") or {}).get("graphRoot") or "")
    engine.server_version = str((info.get("version") or {}).get("Version") or "")
    engine.client_version = engine.client_version or engine.server_version


def _engine_json(run: Runner, cmd: list[str]) -> tuple[bool, dict[str, Any], str]:
    """(answered, parsed stdout, error line). stdout is parsed even on failure: `docker
    version` prints the client half before saying the daemon is unreachable."""
    verb = " ".join([Path(cmd[0]).name, cmd[1]])
    try:
        proc = run(cmd, ENGINE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        hint = " (check DOCKER_HOST)" if os.environ.get("DOCKER_HOST") else ""
        return False, {}, f"`{verb}` did not answer within {ENGINE_TIMEOUT_S:g} s{hint}"
    except OSError as exc:
        return False, {}, f"`{verb}` could not run: {_why(exc)}"
    try:
        data = json.loads(proc.stdout)
        parsed: dict[str, Any] = data if isinstance(data, dict) else {}
    except json.JSONDecodeError:
        parsed = {}
    if proc.returncode != 0:
        return False, parsed, _first_line(proc.stderr) or f"`{verb}` exited {proc.returncode}"
    if not parsed:
        return False, parsed, f"`{verb}` printed no JSON object"
    return True, parsed, ""


def read_cdi_devices(root: Path = ROOT) -> list[str]:
    """Fully qualified CDI device names ('nvidia.com/gpu=all') from the spec directories."""
    names: list[str] = []
    for spec_dir in CDI_SPEC_DIRS:
        directory = root / spec_dir
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            if path.suffix not in (".yaml", ".yml", ".json"):
                continue
            text = path.read_text("utf-8", errors="replace")
            kind, devices = parse_cdi_json(text) if path.suffix == ".json" else parse_cdi_yaml(text)
            names.extend(f"{kind}={device}" for device in devices if kind)
    return list(dict.fromkeys(names))


def parse_cdi_json(text: str) -> tuple[str, list[str]]:
    spec = json.loads(text)
    if not isinstance(spec, dict):
        return "", []
    devices = spec.get("devices") or []
    names = [str(d["name"]) for d in devices if isinstance(d, dict) and d.get("name")]
    return str(spec.get("kind") or ""), names


def parse_cdi_yaml(text: str) -> tuple[str, list[str]]:
    """`kind:` and the device names of a CDI spec, without a YAML library.

    Handles both layouts seen in the wild: `- name: all` (hand-written) and nvidia-ctk's
    sorted keys, where `name: all` follows the device's `containerEdits` block.
    """
    kind = ""
    names: list[str] = []
    in_devices = False
    item_indent: int | None = None  # where the dashes of the `devices:` list sit
    key_indent: int | None = None  # where a device's own keys (name, containerEdits) sit
    for raw in text.splitlines():
        line = raw.rstrip()
        stripped = line.lstrip()
        if not stripped or stripped.startswith("#") or stripped in ("---", "..."):
            continue
        indent = len(line) - len(stripped)
        if indent == 0 and not stripped.startswith("-"):
            key, _, value = stripped.partition(":")
            in_devices = key.strip() == "devices"
            item_indent = key_indent = None
            if key.strip() == "kind":
                kind = _unquote(value)
            continue
        if not in_devices:
            continue
        if stripped.startswith("-") and item_indent in (None, indent):
            item_indent = indent
            rest = stripped[1:].lstrip()
            key_indent = indent + (len(stripped) - len(rest) if rest else 2)
            indent, stripped = key_indent, rest
        if indent == key_indent and stripped.startswith("name:"):
            names.append(_unquote(stripped[len("name:") :]))
    return kind, names


def _free_bytes(root: Path, storage_path: str) -> int | None:
    if not storage_path:
        return None
    path = root / storage_path.lstrip("/")
    try:
        return shutil.disk_usage(path).free if path.exists() else None
    except OSError:
        return None


# --- helpers -----------------------------------------------------------------------------


def _step(notes: list[str], what: str, read: Callable[[], T], default: T) -> T:
    """Run one read; on any failure note why and use the default."""
    try:
        return read()
    except Exception as exc:
        notes.append(f"{what}: {_why(exc)}")
        return default


def _why(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"{exc.filename} does not exist"
    line = _first_line(str(exc))
    return line if line else type(exc).__name__


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:300]
    return ""


def _text(value: object) -> str:
    """NVML strings are bytes in old pynvml releases."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace").strip("\x00 ").strip()
    return str(value).strip()


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value
