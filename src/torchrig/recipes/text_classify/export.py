"""What `torchrig export-model` needs from this recipe: the trained module rebuilt from
classifier.json, and example inputs with their names and dynamic axes.

    build_model(meta, root)          the TextClassifier skeleton (random weights): load
                                     final/model.safetensors (or a checkpoint's model.pt)
                                     into it
    export_inputs(meta, root, batch) ((input_ids, attention_mask), names, dynamic axes)

`meta` is the content of classifier.json, `root` the folder that holds it (its tokenizer
is in root / meta["preprocess"]["tokenizer"]; nothing here needs it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torchrig.errors import UsageError

INPUT_NAMES = ["input_ids", "attention_mask"]


def _model_meta(meta: dict[str, Any]) -> dict[str, Any]:
    model = meta.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("config"), dict):
        raise UsageError(
            "classifier.json has no model config (model.config)",
            "re-run the training with this torchrig",
        )
    return model


def build_model(meta: dict[str, Any], root: Path) -> Any:
    """The module the loop trained, untrained, in eval mode, on the CPU, fp32."""
    from transformers import CONFIG_MAPPING

    from torchrig.recipes.text_classify.model import from_config

    config_dict = dict(_model_meta(meta)["config"])
    model_type = config_dict.get("model_type")
    if model_type not in CONFIG_MAPPING:
        raise UsageError(
            f"classifier.json names model type {model_type!r}, which this transformers "
            "does not know",
            "export with the transformers version the model was trained with",
        )
    config = CONFIG_MAPPING[model_type].from_dict(config_dict)
    return from_config(config).eval()


def export_inputs(
    meta: dict[str, Any], root: Path, batch: int
) -> tuple[tuple[Any, ...], list[str], dict[str, dict[int, str]]]:
    """Example inputs of `batch` rows at the trained max_length: ids drawn from the
    vocabulary (fixed seed), the first row full, the others padded by a few tokens so the
    mask is not all ones. Batch and sequence are dynamic axes (use batch ≥ 2: torch.export
    specialises a dimension of size 1)."""
    import torch

    config = _model_meta(meta)["config"]
    preprocess = meta.get("preprocess") or {}
    length = int(preprocess.get("max_length", 128))
    vocab = int(config["vocab_size"])
    pad = int(preprocess.get("pad_token_id", config.get("pad_token_id") or 0))
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (batch, length), generator=g, dtype=torch.int64)
    lengths = torch.clamp(length - torch.arange(batch) * 3, min=2)
    mask = (torch.arange(length)[None, :] < lengths[:, None]).to(torch.int64)
    ids = torch.where(mask.bool(), ids, torch.full_like(ids, pad))
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    return (ids, mask), list(INPUT_NAMES), axes
