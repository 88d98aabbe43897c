"""The classification recipes on a real GPU: bf16 autocast, torch.compile and pinned
prefetch on CUDA; a torchvision ResNet through the image pipeline (GPU augmentation,
channels_last); the trained models export and match PyTorch."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))


def _quiet(_: str) -> None:
    pass


def test_image_classify_resnet18_learns_on_the_gpu_and_exports(tmp_path: Path) -> None:
    import torch
    from test_image_classify_data import make_tree

    from torchrig.model_export.run import export_model
    from torchrig.recipes.image_classify.config import from_preset
    from torchrig.recipes.image_classify.train import train

    assert torch.cuda.is_available()
    images = make_tree(tmp_path / "images", per_class=60)
    cfg = from_preset(
        "tiny", data=images, out=tmp_path / "run", model="resnet18", image_size=48,
        steps=60, lr=2e-3, micro_batch=32, device="cuda", log_every=10, tensorboard=False,
    )  # fmt: skip
    result = train(cfg, say=_quiet)
    assert result.completed and result.precision == "bf16" and result.compiled
    assert result.evaluation is not None and result.evaluation["accuracy"] >= 0.8
    # A small model on 48-px images uses a sliver of an H100/H200: the MFU is there (the GPU
    # is in the peak table) but rounds to a few hundredths of a percent.
    assert all(r["mfu"] is not None and r["mfu"] >= 0 for r in result.records)
    exported = export_model(tmp_path / "run", "exported-program", tmp_path / "m.pt2")
    assert exported.recipe == "image-classify" and exported.max_abs_diff < 1e-3


def test_text_classify_learns_on_the_gpu_and_exports(tmp_path: Path) -> None:
    import torch
    from test_text_classify_data import make_tickets

    from torchrig.model_export.run import export_model
    from torchrig.recipes.text_classify.config import from_preset
    from torchrig.recipes.text_classify.train import train

    assert torch.cuda.is_available()
    data = make_tickets(tmp_path / "tickets.csv", n=1200)
    cfg = from_preset(
        "tiny", data=data, out=tmp_path / "run", device="cuda", steps=80, tensorboard=False
    )
    result = train(cfg, say=_quiet)
    assert result.completed and result.precision == "bf16" and result.compiled
    assert result.evaluation is not None and result.evaluation["accuracy"] >= 0.8
    exported = export_model(tmp_path / "run", "onnx", tmp_path / "m.onnx")
    assert exported.recipe == "text-classify" and exported.max_abs_diff < 1e-3
