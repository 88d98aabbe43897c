"""What final/ must carry so `torchrig generate` and `torchrig serve` can use it anywhere.

Two defects this fixes (issue 16):

- transformers' GPT2Config defaults its BOS/EOS to 50256 (GPT-2's own vocabulary), so a
  model trained with a 512-token tokenizer was saved claiming an EOS it can never produce:
  generation never stopped at the end of a text. The saved config and generation config
  now carry the tokenizer's real ids, and `use_cache` is on (training turns it off; a
  saved model is for inference, where the KV cache is the fast path).
- A LoRA run saves only the adapter, and peft writes the base as whatever path string the
  base was loaded from (relative to the folder training ran in) or nothing at all for a
  preset's random initialisation. The adapter now names its base by an absolute path, or,
  for a preset base, carries the base weights in final/base (named relative to the adapter,
  so the run folder can be moved).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ADAPTER_CONFIG = "adapter_config.json"
BASE_DIR = "base"  # final/base: a preset's base weights under a LoRA adapter


def stamp_token_ids(model: Any, tokenizer: Any) -> None:
    """Put the tokenizer's BOS/EOS/pad ids into the config(s) save_pretrained writes."""
    if tokenizer is None:
        return
    base = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model
    ids = {
        "bos_token_id": tokenizer.bos_token_id
        if tokenizer.bos_token_id is not None
        else tokenizer.eos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    for target in (base.config, getattr(base, "generation_config", None)):
        if target is None:
            continue
        for key, value in ids.items():
            setattr(target, key, value)
        target.use_cache = True


def finish_adapter(final: Path, model: Any, model_path: Path | None) -> None:
    """For a LoRA model saved in `final`: make adapter_config.json name a base that loads
    from any working folder (see the module docstring)."""
    config_path = final / ADAPTER_CONFIG
    if not config_path.is_file():
        return  # a full model, not an adapter
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if model_path is not None:
        config["base_model_name_or_path"] = str(Path(model_path).resolve())
    else:
        _save_plain_base(model, final / BASE_DIR)
        config["base_model_name_or_path"] = BASE_DIR  # relative to the adapter folder
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _save_plain_base(model: Any, folder: Path) -> None:
    """The frozen base under peft's wrapper, without its LoRA layers, as a plain model."""
    from transformers import AutoModelForCausalLM

    base = model.get_base_model()
    state = {
        key.replace(".base_layer.", "."): value.detach().cpu()
        for key, value in base.state_dict().items()
        if "lora_" not in key
    }
    plain = AutoModelForCausalLM.from_config(base.config)
    plain.load_state_dict(state, strict=True)
    plain.save_pretrained(folder)
