"""Start-up notes in the style of NGC containers (SECURITY F7): warnings, never fatal.

- /dev/shm at Docker's default 64 MB: DataLoader workers die with "Bus error", NCCL with
  "failed to extend /dev/shm".
- No NVIDIA driver visible in a CUDA image: torch.cuda.is_available() is False.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from torchrig import contract
from torchrig.units import human_bytes

SHM_DEFAULT_LIMIT = contract.SHM_ENGINE_DEFAULT
IMAGE_INFO = contract.IMAGE_INFO.lstrip("/")  # under the root being checked

SHM_NOTE = (
    "NOTE: The SHMEM allocation limit is set to the default of {size}. This may be\n"
    "   insufficient for PyTorch: DataLoader workers and NCCL pass data through /dev/shm.\n"
    "   torchrig sizes it with resources.shm in torchrig.toml (docker run: --shm-size=8g);\n"
    "   avoid --ipc=host, which shares the host's IPC namespace."
)
DRIVER_WARNING = (
    "WARNING: The NVIDIA Driver was not detected.  GPU functionality will not be available.\n"
    "   Start the workbench with GPUs (resources.gpus in torchrig.toml; docker run --gpus all\n"
    "   with the NVIDIA Container Toolkit installed on the host); `torchrig doctor` checks it."
)


def shm_bytes(root: Path = Path("/")) -> int | None:
    try:
        st = os.statvfs(root / "dev/shm")
    except OSError:
        return None
    return st.f_blocks * st.f_frsize


def shm_note(size: int | None) -> str | None:
    if size is None or size > SHM_DEFAULT_LIMIT:
        return None
    return SHM_NOTE.format(size=human_bytes(size, binary=True))


def image_cuda(root: Path = Path("/")) -> str | None:
    """The image's CUDA version from its build info; "none" for a CPU image; None if unknown."""
    try:
        info = json.loads((root / IMAGE_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = info.get("io.torchrig.cuda") if isinstance(info, dict) else None
    return str(value) if value else None


def driver_visible(root: Path = Path("/")) -> bool:
    """The toolkit puts the driver's /proc entry, device nodes and libcuda in the container."""
    if (root / "proc/driver/nvidia/version").exists():
        return True
    dev = root / "dev"
    if any(dev.glob("nvidia[0-9]*")):
        return True
    for libdir in ("usr/lib/x86_64-linux-gnu", "usr/lib/aarch64-linux-gnu", "usr/lib64"):
        if (root / libdir / "libcuda.so.1").exists():
            return True
    return False


def notes(root: Path = Path("/")) -> list[str]:
    found = []
    shm = shm_note(shm_bytes(root))
    if shm:
        found.append(shm)
    if image_cuda(root) != "none" and not driver_visible(root):
        found.append(DRIVER_WARNING)
    return found
