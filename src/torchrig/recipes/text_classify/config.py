"""The text-classify recipe's settings: named presets, overridden by command-line flags.

    tiny        tiny-bert, 32 tokens: learns a generated intent task on a CPU in seconds
    bert-base   BERT-base, 128 tokens, lr 5e-5 with 6% warmup: fine-tuning on a GPU
                (compiled, bf16 where the GPU has it: the loop's defaults on CUDA)

A preset fixes the model, the sequence length and the training hyperparameters; the data,
the output folder and every flag given are put on top. A preset may give its warmup as a
share of the steps (`warmup_share`): then `--steps` moves the warmup with it, unless
`--warmup` is given too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchrig.errors import UsageError
from torchrig.recipes.classify import config as classify_config
from torchrig.recipes.classify.config import ClassifyConfig


@dataclass
class TextClassifyConfig(ClassifyConfig):
    out: Path = Path("runs/text-classify")
    # Data.
    data: Path | None = None  # training rows: .csv, .tsv or .jsonl
    val: Path | None = None  # evaluation rows; None: a stratified hold-out of data
    val_fraction: float = 0.1
    text_column: str = "text"
    label_column: str = "label"
    id_column: str = "id"  # names rows in eval.json when present
    # Tokenizer and model.
    tokenizer: Path | None = None  # local folder; None: model_path's, else train one
    vocab_size: int = 1000  # size of a tokenizer trained on the data
    model: str = "tiny-bert"  # a model.MODEL_PRESETS name (ignored with model_path)
    model_path: Path | None = None  # local pretrained weights
    max_length: int = 32  # tokens per sequence, [CLS] and [SEP] included
    eval_batch: int = 128

    def check(self) -> None:
        super().check()
        if self.data is None:
            raise UsageError("no training data", "give --data FILE (.csv or .jsonl)")
        if not 0.0 < self.val_fraction < 1.0:
            raise UsageError(
                f"--val-fraction must be between 0 and 1, not {self.val_fraction}",
                "e.g. --val-fraction 0.1",
            )
        if self.max_length < 2:
            raise UsageError(
                f"--max-length must be at least 2 ([CLS] and [SEP]), not {self.max_length}",
                "e.g. --max-length 128",
            )
        if self.eval_batch < 1:
            raise UsageError("--eval-batch must be at least 1", "e.g. --eval-batch 128")
        from torchrig.recipes.text_classify.checks import check_before_work

        check_before_work(self)  # the model, lengths and paths, before any data is read


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "model": "tiny-bert",
        "vocab_size": 1000,
        "max_length": 32,
        "micro_batch": 32,
        "steps": 60,
        "lr": 3e-3,
        "warmup": 6,
        "weight_decay": 0.01,
        "log_every": 10,
        "ckpt_every": 30,
    },
    # BERT's fine-tuning recipe (Devlin et al.; transformers' run_glue): AdamW at 5e-5,
    # linear warmup over 6% of the steps (RoBERTa's choice), batch 32, 128 tokens.
    "bert-base": {
        "model": "bert-base",
        "vocab_size": 30522,
        "max_length": 128,
        "micro_batch": 32,
        "steps": 2000,
        "lr": 5e-5,
        "warmup_share": 0.06,
        "weight_decay": 0.01,
        "log_every": 50,
        "ckpt_every": 500,
    },
}


def from_preset(name: str, **overrides: Any) -> TextClassifyConfig:
    """The preset's config with `overrides` (None values are ignored: flag not given)."""
    if name not in PRESETS:  # the shared from_preset names the known ones
        return classify_config.from_preset(TextClassifyConfig, PRESETS, name, **overrides)
    preset = dict(PRESETS[name])
    share = preset.pop("warmup_share", None)
    if share is not None and overrides.get("warmup") is None:
        steps = overrides.get("steps") or preset["steps"]
        preset["warmup"] = max(1, round(share * steps))
    return classify_config.from_preset(
        TextClassifyConfig, {**PRESETS, name: preset}, name, **overrides
    )
