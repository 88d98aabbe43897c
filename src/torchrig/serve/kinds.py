"""What a path given to predict, generate or serve names, with one clear error per wrong case.

RUN                a run folder: classifier.json (text-/image-classify) or a causal-LM's
                   config.json + final/
RUN/final          the finished model (classifier: model.safetensors + classifier.json;
                   causal LM: config.json + model.safetensors, or an adapter)
RUN/checkpoints/…  a classifier checkpoint
RUN/export         an export-model folder (model.onnx + model.onnx.json + tokenizer/)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from torchrig.errors import UsageError

Kind = Literal["classifier", "causal-lm"]
CLASSIFIER_META = "classifier.json"
ADAPTER_CONFIG = "adapter_config.json"


@dataclass(frozen=True)
class Found:
    kind: Kind
    path: Path  # the folder to load (for a causal LM: the one holding its weights)
    recipe: str  # text-classify, image-classify or causal-lm
    given: Path | None = None  # the path as the person gave it (for messages)


def _is_lm_folder(folder: Path) -> bool:
    if (folder / ADAPTER_CONFIG).is_file():
        return True
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    archs = config.get("architectures") or [] if isinstance(config, dict) else []
    return any(str(a).endswith("ForCausalLM") or str(a).endswith("LMHeadModel") for a in archs)


def _recipe_of_run(folder: Path) -> str | None:
    """A run folder's config.json is the recipe's settings; a causal-LM run has "seq_len"
    and no "labels"."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(config, dict) and "seq_len" in config and "vocab_size" in config:
        return "causal-lm"
    return None


def find(path: Path) -> Found:
    """Which kind of model `path` holds; UsageError (exit 2) when none or weights are missing."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path} does not exist", "give a run folder, its final/ or export/")
    if not path.is_dir():
        raise UsageError(
            f"{path} is a file, not a model folder",
            "give the run folder (or its final/ or export/ folder), not a file in it",
        )
    for folder in (path, path / "final"):
        meta = folder / CLASSIFIER_META
        if meta.is_file():
            try:
                recipe = str(json.loads(meta.read_text(encoding="utf-8")).get("recipe"))
            except (OSError, ValueError, AttributeError):
                raise UsageError(f"{meta} is not valid JSON", "re-run the training") from None
            return Found("classifier", path, recipe, path)
    if any(path.glob("*.onnx.json")):
        return Found("classifier", path, "export", path)
    if _is_lm_folder(path):
        _require_lm_weights(path)
        return Found("causal-lm", path, "causal-lm", path)
    if _is_lm_folder(path / "final"):
        _require_lm_weights(path / "final")
        return Found("causal-lm", path / "final", "causal-lm", path)
    if _recipe_of_run(path) == "causal-lm":
        raise UsageError(
            f"{path} is a causal-LM run without a final model (no final/)",
            "let the training finish (it saves final/ at the last step), or resume it with "
            "--resume",
        )
    raise UsageError(
        f"{path} holds no trained model (no {CLASSIFIER_META}, no causal-LM config.json)",
        "give a run folder made by torchrig run (text-classify, image-classify, causal-lm), "
        "its final/ or its export/ folder",
    )


def _require_lm_weights(folder: Path) -> None:
    names = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors")
    if any((folder / n).is_file() for n in names):
        return
    pickled = sorted(p.name for p in folder.glob("*.bin"))
    raise UsageError(
        f"{folder} has no safetensors weights"
        + (f" (only pickled {', '.join(pickled)}, which can run code)" if pickled else ""),
        "copy the whole final/ folder the training wrote (config.json + model.safetensors)",
    )


def require(found: Found, kind: Kind, verb: str) -> None:
    """Refuse a model of the wrong kind for `verb`, naming the verb that fits."""
    if found.kind == kind:
        return
    shown = found.given or found.path
    if found.kind == "causal-lm":
        raise UsageError(
            f"{shown} is a causal-LM run; {verb} needs a text-classify or image-classify run",
            f"generate text with: torchrig generate {shown} --prompt '...'",
        )
    raise UsageError(
        f"{shown} is a {found.recipe} run; {verb} needs a causal-LM run",
        f"classify inputs with: torchrig predict {shown} --input FILE",
    )
