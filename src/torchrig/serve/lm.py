"""A trained causal LM ready to generate: weights (full, or a LoRA adapter merged into its
base), tokenizer, context length, device.

Only local safetensors are read (pickled weights can run code) and nothing is downloaded.
An adapter's base is the absolute path its adapter_config.json names, or a path relative
to the adapter folder (final/base for a preset's base: recipes/causal_lm/serving.py). The
adapter is merged into the base once at load time: generation then costs what the plain
model costs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchrig.errors import UsageError
from torchrig.serve.kinds import ADAPTER_CONFIG


@dataclass
class LanguageModel:
    model: Any
    tokenizer: Any
    context: int  # the longest sequence (prompt + generated) the model was trained for
    device: Any
    name: str
    vocab: int  # the tokenizer's size: ids past it are embedding padding, never sampled
    # Static-cache decoders made at first use (decode_graph.pick), by kind: "graph", "eager".
    decoders: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def eos_id(self) -> int | None:
        eos = self.tokenizer.eos_token_id
        return None if eos is None else int(eos)


def pick_device(requested: str = "auto") -> Any:
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA GPU is visible", "use --device cpu or auto")
    if requested not in ("cpu", "cuda"):
        raise UsageError(f"unknown device {requested!r}", "use auto, cpu or cuda")
    return torch.device(requested)


def context_length(config: Any) -> int:
    for key in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    raise UsageError(
        "the model's config names no context length (n_positions / max_position_embeddings)",
        "save the model with transformers' save_pretrained",
    )


def quiet_transformers() -> None:
    """No progress bars or config warnings on a command's output: an old final/ config's
    GPT-2 default BOS/EOS (50256) is warned about, and the tokenizer's ids are used anyway."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def _load_weights(folder: Path, dtype: Any) -> Any:
    from transformers import AutoModelForCausalLM

    quiet_transformers()

    if not (folder / "config.json").is_file():
        raise UsageError(
            f"the base model folder {folder} has no config.json",
            "keep the base model the adapter was trained on at that path, or retrain",
        )
    try:
        return AutoModelForCausalLM.from_pretrained(
            folder, local_files_only=True, use_safetensors=True, dtype=dtype
        )
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(
            f"cannot load the model in {folder}: {exc}".splitlines()[0][:300],
            "check that the folder is a causal LM saved by transformers (safetensors)",
        ) from None


def _adapter_base(folder: Path) -> Path:
    try:
        config = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UsageError(f"{folder / ADAPTER_CONFIG} is not valid JSON", "retrain") from None
    base = config.get("base_model_name_or_path")
    if not base:
        raise UsageError(
            f"the LoRA adapter in {folder} does not name its base model",
            "retrain with this torchrig (it records the base), or set "
            "base_model_name_or_path in adapter_config.json to the base model's folder",
        )
    path = Path(str(base))
    resolved = path if path.is_absolute() else folder / path
    if not resolved.is_dir():
        raise UsageError(
            f"the LoRA adapter's base model {resolved} does not exist",
            "put the base model back at that path, or set base_model_name_or_path in "
            f"{folder / ADAPTER_CONFIG}",
        )
    return resolved


def load(folder: Path, device: str = "auto", dtype: str = "auto") -> LanguageModel:
    """The model in `folder` (a final/ folder: kinds.find gives it) on `device`, eval mode."""
    import torch

    from torchrig.recipes.causal_lm.tokenizer import load_tokenizer

    dev = pick_device(device)
    torch_dtype = {
        "auto": torch.bfloat16 if dev.type == "cuda" else torch.float32,
        "fp32": torch.float32,
        "bf16": torch.bfloat16,
        "fp16": torch.float16,
    }.get(dtype)
    if torch_dtype is None:
        raise UsageError(f"unknown dtype {dtype!r}", "use auto, fp32, bf16 or fp16")
    folder = Path(folder)
    if (folder / ADAPTER_CONFIG).is_file():
        base_dir = _adapter_base(folder)
        model = _load_weights(base_dir, torch_dtype)
        try:
            from peft import PeftModel
        except ImportError:
            raise UsageError(
                "this run is a LoRA adapter, and the peft package is not installed",
                "pip install peft (in the workbench: add it to [python].packages)",
            ) from None
        model = PeftModel.from_pretrained(model, folder, is_trainable=False).merge_and_unload()
    else:
        base_dir = folder
        model = _load_weights(folder, torch_dtype)
    tok_dir = folder if (folder / "tokenizer.json").is_file() else base_dir
    tokenizer = load_tokenizer(tok_dir)
    model.config.use_cache = True
    model = model.to(dev).eval()
    embed_rows = int(model.get_input_embeddings().weight.shape[0])
    if len(tokenizer) > embed_rows:
        raise UsageError(
            f"the tokenizer in {tok_dir} has {len(tokenizer)} tokens, more than the model's "
            f"{embed_rows}",
            "use the tokenizer saved with the model (final/tokenizer.json)",
        )
    return LanguageModel(
        model=model,
        tokenizer=tokenizer,
        context=context_length(model.config),
        device=dev,
        name=folder.parent.name if folder.name == "final" else folder.name,
        vocab=len(tokenizer),
    )
