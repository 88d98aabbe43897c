"""What goes into a lock target: the requirement set and the sources, as one digestible value.

The inputs are host-independent on purpose: `torchrig lock --check` on a laptop or in CI
must agree with the machine that made the lock.
"""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel, ConfigDict

from torchrig.spec.model import Spec

# What torchrig adds beside torch. Kept small: every package here lands in every image.
STACKS: dict[str, tuple[str, ...]] = {
    "workbench": (
        "jupyterlab",
        "ipywidgets",
        "numpy",
        "pandas",
        "matplotlib",
        "transformers",
        "accelerate",
        "tensorboard",
    ),
    "minimal": ("jupyterlab", "numpy"),
    "none": (),
}
# Locked when [services.serve] is on: torchrig serve's server (pyproject's [serve] extra) and
# what it loads the recipes' models with ([train]'s transformers, safetensors, peft for LoRA,
# pillow for images), which the minimal stack lacks (its serving image failed to load a text
# classifier: no transformers).
SERVE_PACKAGES = (
    "fastapi>=0.115",
    "uvicorn>=0.30",
    "httptools>=0.6",
    "uvloop>=0.19",
    "prometheus-client",
    "transformers",
    "safetensors",
    "peft",
    "pillow",
)
# torchrig's own runtime dependencies inside the image (doctor, verify, bench, recipes).
# uv is not among them: locking happens on the host.
TORCHRIG_RUNTIME = ("pydantic>=2.7,<3", "packaging>=23", "rich>=13", "nvidia-ml-py>=12.535")
# Pinned by the constraints file so a later `pip install` cannot swap the GPU stack.
GUARDED_PREFIXES = ("torch", "torchvision", "torchaudio", "triton", "nvidia-", "cuda-")

LOCK_FORMAT = 1


class LockInputs(BaseModel):
    model_config = ConfigDict(frozen=True)

    packages: list[str]
    flavour: str
    torchvision: bool
    torchaudio: bool
    python: str
    platform: str
    index: str
    extra_indexes: list[str]
    find_links: list[str]
    torch_index: str

    def digest(self) -> str:
        body = json.dumps(
            {"format": LOCK_FORMAT, **self.model_dump()}, sort_keys=True, separators=(",", ":")
        )
        return "sha256:" + hashlib.sha256(body.encode()).hexdigest()


def stack_packages(spec: Spec) -> list[str]:
    """The stack, the services' own packages, torchrig's runtime and the user's packages."""
    wanted = list(STACKS[spec.python.stack])
    if spec.services.jupyter.enabled and "jupyterlab" not in wanted:
        wanted.append("jupyterlab")
    if spec.services.tensorboard.enabled and "tensorboard" not in wanted:
        wanted.append("tensorboard")
    if spec.services.metrics.enabled:
        wanted.append("prometheus-client")  # the metrics service (torchrig.monitor.exporter)
    if spec.services.serve.enabled:
        wanted.extend(SERVE_PACKAGES)  # `torchrig run serve RUN` (docs/serve.md)
    wanted.extend(TORCHRIG_RUNTIME)
    wanted.extend(spec.python.packages)
    seen: set[str] = set()
    unique = []
    for item in wanted:
        if item not in seen:
            seen.add(item)
            unique.append(item)
    return unique


def lock_inputs(spec: Spec, *, python: str, platform: str) -> LockInputs:
    return LockInputs(
        packages=stack_packages(spec),
        flavour=spec.torch.flavour,
        torchvision=spec.torch.torchvision,
        torchaudio=spec.torch.torchaudio,
        python=python,
        platform=platform,
        index=spec.sources.index,
        extra_indexes=list(spec.sources.extra_indexes),
        find_links=list(spec.sources.find_links),
        torch_index=spec.sources.torch_index,
    )


def devel_requirements(cuda: str) -> list[str]:
    """nvcc and the CUDA headers from NVIDIA's PyPI wheels, matching torch's CUDA minor."""
    if not cuda:
        return []
    major, minor = cuda.split(".")[:2]
    series = f"=={major}.{minor}.*"
    if major == "13":
        names = ("nvidia-cuda-nvcc", "nvidia-cuda-cccl", "nvidia-nvvm", "nvidia-cuda-crt")
        return [f"{name}{series}" for name in names]
    return [f"nvidia-cuda-nvcc-cu{major}{series}", f"nvidia-cuda-cccl-cu{major}{series}"]


def is_guarded(name: str) -> bool:
    return name == "torch" or any(
        name == p or (p.endswith("-") and name.startswith(p)) for p in GUARDED_PREFIXES
    )
