"""GPU readings through NVML (nvidia-ml-py), one snapshot per scrape.

Every reading is optional: NVML answers NotSupported for some of them on some boards
(power on a few, utilisation on MIG instances, ECC where it is off), and one missing
reading must not lose the others. Where there is no NVML at all (a CPU machine, a container
started without GPUs) the snapshot has no GPUs and says why in one line.

MIG: a GPU in MIG mode is listed once per GPU instance (its memory and processes are the
instance's own; NVML does not report utilisation, power or clocks per instance, so those
stay with the parent GPU), labelled with the instance's id and profile as NVIDIA's DCGM
exporter labels them (GPU_I_ID, GPU_I_PROFILE).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

T = TypeVar("T")
MIB = 1 << 20

# NVML's clock event ("throttle") reason bits, by the names Prometheus users see.
THROTTLE_REASONS = {
    "gpu_idle": 0x1,
    "applications_clocks_setting": 0x2,
    "sw_power_cap": 0x4,
    "hw_slowdown": 0x8,
    "sync_boost": 0x10,
    "sw_thermal_slowdown": 0x20,
    "hw_thermal_slowdown": 0x40,
    "hw_power_brake_slowdown": 0x80,
    "display_clock_setting": 0x100,
}


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    used_bytes: int | None


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str
    name: str
    mig_instance: int | None = None
    mig_profile: str | None = None
    util_percent: float | None = None
    mem_copy_util_percent: float | None = None
    mem_used_bytes: int | None = None
    mem_total_bytes: int | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    temp_c: float | None = None
    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    throttle_mask: int | None = None
    ecc_corrected: int | None = None
    ecc_uncorrected: int | None = None
    processes: tuple[GpuProcess, ...] = ()

    @property
    def throttle(self) -> dict[str, bool]:
        if self.throttle_mask is None:
            return {}
        return {name: bool(self.throttle_mask & bit) for name, bit in THROTTLE_REASONS.items()}


@dataclass(frozen=True)
class GpuSnapshot:
    gpus: list[Gpu] = field(default_factory=list)
    driver: str | None = None
    absent: str | None = None
    """Why there are no GPU readings (None when NVML answered)."""


def _load_nvml() -> Any:
    import pynvml

    return pynvml


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Reader:
    """Reads one snapshot; `nvml` is the pynvml module (a fake one in tests)."""

    def __init__(self, nvml: Any | None = None) -> None:
        self._nvml: Any = nvml
        self._ready = False
        self._why = ""

    def _init(self) -> bool:
        if self._ready:
            return True
        try:
            if self._nvml is None:
                self._nvml = _load_nvml()
            self._nvml.nvmlInit()
        except ImportError:
            self._why = "nvidia-ml-py is not installed: no GPU metrics"
            return False
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
            self._why = (
                f"no NVIDIA driver reachable ({_text(exc) or type(exc).__name__}): no GPU metrics"
            )
            return False
        self._ready = True
        return True

    def _try(self, call: Callable[[], T]) -> T | None:
        """One reading, or None where the board does not support it (or it failed)."""
        try:
            return call()
        except Exception:
            return None

    def read(self) -> GpuSnapshot:
        if not self._init():
            return GpuSnapshot(absent=self._why)
        nv = self._nvml
        try:
            count = int(nv.nvmlDeviceGetCount())
        except Exception as exc:
            return GpuSnapshot(absent=f"NVML could not count GPUs ({_text(exc)})")
        if count == 0:
            return GpuSnapshot(
                absent="NVML sees no GPU in this container (started without --gpus?)"
            )
        driver = self._try(lambda: _text(nv.nvmlSystemGetDriverVersion()))
        gpus: list[Gpu] = []
        for index in range(count):
            handle = self._try(partial(nv.nvmlDeviceGetHandleByIndex, index))
            if handle is None:
                continue
            gpus.extend(self._device(index, handle))
        return GpuSnapshot(gpus=gpus, driver=driver)

    def _device(self, index: int, handle: Any) -> list[Gpu]:
        nv = self._nvml
        t = self._try
        name = t(lambda: _text(nv.nvmlDeviceGetName(handle))) or "unknown"
        uuid = t(lambda: _text(nv.nvmlDeviceGetUUID(handle))) or f"gpu-{index}"
        util = t(lambda: nv.nvmlDeviceGetUtilizationRates(handle))
        mem = t(lambda: nv.nvmlDeviceGetMemoryInfo(handle))
        power = t(lambda: nv.nvmlDeviceGetPowerUsage(handle))  # mW
        limit = t(lambda: nv.nvmlDeviceGetEnforcedPowerLimit(handle))  # mW
        base = Gpu(
            index=index,
            uuid=uuid,
            name=name,
            util_percent=None if util is None else float(util.gpu),
            mem_copy_util_percent=None if util is None else float(util.memory),
            mem_used_bytes=None if mem is None else int(mem.used),
            mem_total_bytes=None if mem is None else int(mem.total),
            power_w=None if power is None else power / 1000.0,
            power_limit_w=None if limit is None else limit / 1000.0,
            temp_c=_num(t(lambda: nv.nvmlDeviceGetTemperature(handle, nv.NVML_TEMPERATURE_GPU))),
            sm_clock_mhz=_num(t(lambda: nv.nvmlDeviceGetClockInfo(handle, nv.NVML_CLOCK_SM))),
            mem_clock_mhz=_num(t(lambda: nv.nvmlDeviceGetClockInfo(handle, nv.NVML_CLOCK_MEM))),
            throttle_mask=_int(t(lambda: nv.nvmlDeviceGetCurrentClocksThrottleReasons(handle))),
            ecc_corrected=self._ecc(handle, nv.NVML_MEMORY_ERROR_TYPE_CORRECTED),
            ecc_uncorrected=self._ecc(handle, nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED),
            processes=self._processes(handle),
        )
        mig = t(lambda: nv.nvmlDeviceGetMigMode(handle))
        if not mig or not mig[0]:
            return [base]
        # MIG on: the parent keeps the board-wide readings; each instance its memory and
        # processes (NVML's per-process list is empty on the parent in MIG mode).
        found = [base]
        slots = t(lambda: int(nv.nvmlDeviceGetMaxMigDeviceCount(handle))) or 0
        for slot in range(slots):
            child = t(partial(nv.nvmlDeviceGetMigDeviceHandleByIndex, handle, slot))
            if child is None:
                continue
            cmem = t(partial(nv.nvmlDeviceGetMemoryInfo, child))
            found.append(
                Gpu(
                    index=index,
                    uuid=_text(t(partial(nv.nvmlDeviceGetUUID, child)) or f"{uuid}/{slot}"),
                    name=name,
                    mig_instance=_int(t(partial(nv.nvmlDeviceGetGpuInstanceId, child))),
                    mig_profile=_mig_profile(t(partial(nv.nvmlDeviceGetName, child))),
                    mem_used_bytes=None if cmem is None else int(cmem.used),
                    mem_total_bytes=None if cmem is None else int(cmem.total),
                    processes=self._processes(child),
                )
            )
        return found

    def _ecc(self, handle: Any, kind: int) -> int | None:
        nv = self._nvml
        return _int(
            self._try(lambda: nv.nvmlDeviceGetTotalEccErrors(handle, kind, nv.NVML_VOLATILE_ECC))
        )

    def _processes(self, handle: Any) -> tuple[GpuProcess, ...]:
        procs = self._try(lambda: self._nvml.nvmlDeviceGetComputeRunningProcesses(handle)) or []
        out = []
        for p in procs:
            used = getattr(p, "usedGpuMemory", None)
            out.append(GpuProcess(int(p.pid), int(used) if isinstance(used, int) else None))
        return tuple(out)

    def close(self) -> None:
        if self._ready:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
            self._ready = False


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _mig_profile(raw: Any) -> str | None:
    """'NVIDIA A100-SXM4-40GB MIG 1g.5gb' → '1g.5gb' (the profile DCGM puts in GPU_I_PROFILE)."""
    if not raw:
        return None
    name = _text(raw)
    return name.rsplit("MIG", 1)[-1].strip() if "MIG" in name else name
