"""The ground verify and bench stand on: CUDA must be there, and what exactly is there.

`require_cuda()` is the gate both verbs pass first. It never lets a check fall back to the
CPU: without a usable GPU it raises CheckFailed with one line naming the likely cause.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchrig.errors import CheckFailed

DOCTOR_FIX = "run `torchrig doctor --inside` for the cause and the fix"


@dataclass(frozen=True)
class NoCudaFacts:
    """What we can see when torch.cuda.is_available() is False."""

    torch_version: str | None  # None: torch is not importable
    torch_cuda: str | None  # torch.version.cuda; None for a CPU-only build
    visible_devices: str | None  # CUDA_VISIBLE_DEVICES, None when unset
    driver_present: bool  # /proc/driver/nvidia/version or /dev/nvidiactl exists
    driver_version: str | None
    init_error: str | None  # the first line torch.cuda.init() raised, if any


def no_cuda_reason(f: NoCudaFacts) -> str:
    """One line: why torch cannot see a GPU here, most likely cause first."""
    if f.torch_version is None:
        return "PyTorch is not installed in this Python (verify and bench run inside the workbench)"
    head = "torch.cuda.is_available() is False"
    if f.torch_cuda is None:
        return f"{head}: this PyTorch is a CPU-only build (torch {f.torch_version})"
    if f.visible_devices is not None and f.visible_devices.strip() in ("", "-1", "none", "void"):
        return f"{head}: CUDA_VISIBLE_DEVICES={f.visible_devices!r} hides every GPU"
    if not f.driver_present:
        return (
            f"{head}: no NVIDIA driver or device is visible here (a container started "
            f"without --gpus all or a CDI device?); torch {f.torch_version} is built for "
            f"CUDA {f.torch_cuda}"
        )
    driver = f"driver {f.driver_version}" if f.driver_version else "the NVIDIA driver"
    said = f" (CUDA said: {f.init_error})" if f.init_error else ""
    return (
        f"{head}: {driver} cannot run torch {f.torch_version} built for CUDA {f.torch_cuda}, "
        f"or the GPU is in a bad state{said}"
    )


def _driver_version_from_proc() -> str | None:
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        return None
    for word in text.split():
        parts = word.split(".")
        if len(parts) >= 2 and all(p.isdigit() for p in parts):
            return word
    return None


def require_cuda() -> Any:
    """Import torch and return it, or raise CheckFailed naming why no GPU is usable."""
    try:
        import torch
    except ImportError:
        facts = NoCudaFacts(None, None, None, False, None, None)
        raise CheckFailed(no_cuda_reason(facts), DOCTOR_FIX) from None
    if torch.cuda.is_available():
        return torch
    init_error: str | None = None
    if torch.version.cuda is not None:
        try:
            torch.cuda.init()
        except Exception as exc:  # the reason CUDA gives, whatever its type
            init_error = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    facts = NoCudaFacts(
        torch_version=str(torch.__version__),
        torch_cuda=torch.version.cuda,
        visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
        driver_present=Path("/proc/driver/nvidia/version").exists()
        or Path("/dev/nvidiactl").exists(),
        driver_version=_driver_version_from_proc(),
        init_error=init_error,
    )
    raise CheckFailed(no_cuda_reason(facts), DOCTOR_FIX)


def _nvml() -> Any:
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception:  # no NVML library or no driver: facts we simply do not have
        return None


def _nvml_handle(nv: Any, torch: Any, index: int) -> Any:
    """NVML's handle for CUDA device `index`, matched by PCI bus id (orders can differ)."""
    try:
        p = torch.cuda.get_device_properties(index)
        bus = f"{p.pci_domain_id:08x}:{p.pci_bus_id:02x}:{p.pci_device_id:02x}.0"
        return nv.nvmlDeviceGetHandleByPciBusId(bus)
    except Exception:
        return nv.nvmlDeviceGetHandleByIndex(index)


def driver_version() -> str | None:
    nv = _nvml()
    if nv is not None:
        try:
            v = nv.nvmlSystemGetDriverVersion()
            return v.decode() if isinstance(v, bytes) else str(v)
        except Exception:
            pass
    return _driver_version_from_proc()


def environment(torch: Any, extra: dict[str, str | None] | None = None) -> dict[str, Any]:
    """Versions, GPUs and date: what a result file must say to be comparable later."""
    from torchrig import __version__

    gpus = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        gpus.append(
            {
                "index": i,
                "name": p.name,
                "cc": f"{p.major}.{p.minor}",
                "memory_gib": round(p.total_memory / 2**30, 1),
                "multiprocessors": p.multi_processor_count,
            }
        )
    try:
        nccl = ".".join(str(x) for x in torch.cuda.nccl.version())
    except Exception:
        nccl = None
    env: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "torchrig": __version__,
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "nccl": nccl,
        "driver": driver_version(),
        "gpu_name": gpus[0]["name"] if gpus else None,
        "gpus": gpus,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    env.update(extra or {})
    return env


# NVML clock-event (throttle) reason bits, named as nvidia-smi -q names them.
_THROTTLE_BITS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}


def throttle_names(mask: int) -> list[str]:
    return [name for bit, name in _THROTTLE_BITS.items() if mask & bit]


def gpu_state(torch: Any, index: int) -> dict[str, Any]:
    """Clocks, power, temperature, throttle reasons and PCIe link of one GPU, as NVML reads
    them now. Fields NVML cannot read are left out; an empty dict when NVML is missing."""
    nv = _nvml()
    if nv is None:
        return {}
    state: dict[str, Any] = {}
    try:
        h = _nvml_handle(nv, torch, index)
    except Exception:
        return {}
    reads: dict[str, Any] = {
        "sm_clock_mhz": lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM),
        "sm_clock_max_mhz": lambda: nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_SM),
        "mem_clock_mhz": lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM),
        "mem_clock_max_mhz": lambda: nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_MEM),
        "power_w": lambda: round(nv.nvmlDeviceGetPowerUsage(h) / 1000, 1),
        "power_limit_w": lambda: round(nv.nvmlDeviceGetEnforcedPowerLimit(h) / 1000, 1),
        "temperature_c": lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU),
        "throttle_reasons": lambda: throttle_names(
            int(nv.nvmlDeviceGetCurrentClocksThrottleReasons(h))
        ),
        "pcie_gen": lambda: nv.nvmlDeviceGetCurrPcieLinkGeneration(h),
        "pcie_width": lambda: nv.nvmlDeviceGetCurrPcieLinkWidth(h),
        "pcie_gen_max": lambda: nv.nvmlDeviceGetMaxPcieLinkGeneration(h),
        "pcie_width_max": lambda: nv.nvmlDeviceGetMaxPcieLinkWidth(h),
        "pcie_gen_gpu_max": lambda: nv.nvmlDeviceGetGpuMaxPcieLinkGeneration(h),
        "ecc_mode": lambda: bool(nv.nvmlDeviceGetEccMode(h)[0]),
        "nvlinks_active": lambda: _active_nvlinks(nv, h),
    }
    for key, read in reads.items():
        try:
            state[key] = read()
        except Exception:
            continue
    return state


def _active_nvlinks(nv: Any, handle: Any) -> int:
    active = 0
    for link in range(18):
        try:
            if nv.nvmlDeviceGetNvLinkState(handle, link) == nv.NVML_FEATURE_ENABLED:
                active += 1
        except Exception:
            break
    return active
