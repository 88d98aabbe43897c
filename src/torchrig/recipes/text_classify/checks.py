"""What text-classify checks before it reads data or writes a file: the model exists, the
tokens per text fit its positions, a tokenizer trained on the data has room to work."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from torchrig.errors import UsageError
from torchrig.recipes.pretrained import model_config, positive_int

if TYPE_CHECKING:
    from torchrig.recipes.text_classify.config import TextClassifyConfig


def _pretrained_positions(path: Path) -> int:
    return positive_int(model_config(path), "max_position_embeddings", default=1 << 30)


def check_before_work(cfg: TextClassifyConfig) -> None:
    from torchrig.recipes.text_classify import model as model_mod
    from torchrig.recipes.text_classify import tokenizer as tok_mod

    if cfg.model_path is not None:
        positions = _pretrained_positions(Path(cfg.model_path))
        source = str(cfg.model_path)
    else:
        positions = model_mod.get_shape(cfg.model).max_positions  # unknown: names the known
        source = cfg.model
    if cfg.max_length > positions:
        raise UsageError(
            f"--max-length {cfg.max_length} is longer than the {positions} positions of {source}",
            f"use --max-length {positions} or less",
        )
    trains_tokenizer = cfg.tokenizer is None and (
        cfg.model_path is None or not tok_mod.has_tokenizer(Path(cfg.model_path))
    )
    if cfg.tokenizer is not None and not Path(cfg.tokenizer).is_dir():
        raise UsageError(
            f"--tokenizer {cfg.tokenizer} does not exist",
            "give a folder saved by a Hugging Face tokenizer, or leave --tokenizer out",
        )
    if trains_tokenizer and cfg.vocab_size < tok_mod.MIN_VOCAB:
        raise UsageError(
            f"--vocab-size {cfg.vocab_size} is too small for a WordPiece tokenizer",
            f"use at least {tok_mod.MIN_VOCAB} (tiny tests) or e.g. 30522 (BERT's)",
        )
    if cfg.data is not None and not Path(cfg.data).is_file():
        what = "is a folder" if Path(cfg.data).is_dir() else "does not exist"
        raise UsageError(f"--data {cfg.data} {what}", "give a .csv, .tsv or .jsonl file")
