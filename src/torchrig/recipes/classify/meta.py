"""classifier.json: what a trained classifier is, for export and serving.

    {"format": 1, "recipe": "image-classify", "labels": ["cat", "dog"],
     "model": {...}, "preprocess": {...}, "torch": "2.13.0", "step": 1000,
     "evaluation": {"accuracy": ..., "macro_f1": ...}}

"model" is what the recipe's `export.build_model` needs to rebuild the network (weights
come from model.safetensors in final/, or model.pt of a checkpoint); "preprocess" is what a
server must do to an input first (tokenizer and length; image size, resize and
normalisation). The run folder holds one from the start, so any checkpoint can be exported;
final/ holds its own copy with the step and the evaluation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchrig.errors import UsageError
from torchrig.fsutil import write_atomically

if TYPE_CHECKING:
    from torchrig.recipes.classify.task import ClassifyTask

FORMAT = 1
META_FILE = "classifier.json"
FINAL_WEIGHTS = "model.safetensors"


def classifier_meta(task: ClassifyTask) -> dict[str, Any]:
    import torch

    return {
        "format": FORMAT,
        "recipe": task.recipe,
        "labels": list(task.labels),
        **task.meta,
        "torch": str(torch.__version__),
    }


def write_meta(folder: Path, meta: dict[str, Any]) -> Path:
    path = folder / META_FILE
    write_atomically(path, json.dumps(meta, indent=2) + "\n")
    return path


def read_meta(folder: Path) -> dict[str, Any]:
    path = folder / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(
            f"{folder} has no {META_FILE}",
            "give a run folder of text-classify or image-classify, its final/ folder or one of "
            "its checkpoints/step-* folders",
        ) from None
    except ValueError as exc:
        raise UsageError(f"{path} is not valid JSON ({exc})", "re-run the training") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "recipe" not in meta:
        raise UsageError(
            f"{path} is not a classifier description of format {FORMAT}",
            "re-run the training with this torchrig",
        )
    return meta
