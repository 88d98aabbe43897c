"""What `torchrig export-model` needs from this recipe: the untrained skeleton of the model
the loop trained, and example inputs. The exported model takes float32 NCHW pixels already
resized and normalised as meta["preprocess"] describes (a server does that part)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torchrig.errors import UsageError
from torchrig.recipes.image_classify import models


def _model_meta(meta: dict[str, Any]) -> tuple[str, int]:
    try:
        spec = meta["model"]
        return str(spec["name"]), int(spec["num_classes"])
    except (KeyError, TypeError, ValueError):
        raise UsageError(
            "classifier.json has no model name and number of classes",
            "export a run folder made by the image-classify recipe",
        ) from None


def build_model(meta: dict[str, Any], root: Path) -> Any:
    """The model of classifier.json's `meta`, untrained; the caller loads the weights."""
    name, num_classes = _model_meta(meta)
    return models.build(name, num_classes)


def export_inputs(
    meta: dict[str, Any], root: Path, batch: int
) -> tuple[tuple[Any, ...], list[str], dict[str, dict[int, str]]]:
    """(example inputs, input names, dynamic axes): `batch` normalised images."""
    import torch

    try:
        size = int(meta["preprocess"]["image_size"])
    except (KeyError, TypeError, ValueError):
        raise UsageError(
            "classifier.json has no preprocess.image_size",
            "export a run folder made by the image-classify recipe",
        ) from None
    pixels = torch.randn(batch, 3, size, size)  # the caller seeds torch for fresh inputs
    return (pixels,), ["pixels"], {"pixels": {0: "batch"}}
