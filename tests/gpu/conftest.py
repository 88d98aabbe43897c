"""GPU tests: they run only where torch sees an NVIDIA GPU (the lent device, through the device
tool); anywhere else each one is skipped with a visible reason, never silently passed.

Their output from the lent H100/H200 is committed under benchmarks/results/.
"""

from __future__ import annotations

import pytest

SKIP_REASON = "needs an NVIDIA GPU: run through the device tool; results in benchmarks/results/"


def _why_no_gpu() -> str | None:
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "torch.cuda.is_available() is False"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    why = _why_no_gpu()
    if why is None:
        return
    skip = pytest.mark.skip(reason=f"{SKIP_REASON} ({why})")
    for item in gpu_items:
        item.add_marker(skip)
