"""`python -m torchrig.recipes.text_classify` (also under torchrun): flags → config → train.

Exit codes: 0 trained, or stopped cleanly by SIGTERM/SIGINT with a checkpoint; 2 bad input
(one line on stderr: what is wrong and the fix); 1 another torchrig error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torchrig.recipes.classify.config import add_training_arguments
from torchrig.recipes.entry import run_recipe
from torchrig.recipes.text_classify.config import PRESETS, TextClassifyConfig, from_preset
from torchrig.recipes.text_classify.model import MODEL_PRESETS


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m torchrig.recipes.text_classify",
        description="Fine-tune a BERT text classifier on local CSV/JSONL data.",
    )
    p.add_argument("--preset", default="tiny", help=f"one of: {', '.join(PRESETS)}")
    d = p.add_argument_group("data")
    d.add_argument("--data", type=Path, help="training rows: .csv, .tsv or .jsonl")
    d.add_argument("--val", type=Path, help="evaluation rows (default: a hold-out of --data)")
    d.add_argument("--val-fraction", type=float, help="share held out without --val (0.1)")
    d.add_argument("--text-column", help='column of the text (default "text")')
    d.add_argument("--label-column", help='column of the label (default "label")')
    d.add_argument("--id-column", help='column naming rows in eval.json (default "id")')
    m = p.add_argument_group("model")
    m.add_argument("--model", help=f"model shape: {', '.join(MODEL_PRESETS)}")
    m.add_argument("--model-path", type=Path, help="local pretrained weights (Hugging Face)")
    m.add_argument("--tokenizer", type=Path, help="local tokenizer folder (default: train one)")
    m.add_argument("--vocab-size", type=int, help="size of a tokenizer trained on the data")
    m.add_argument("--max-length", type=int, help="tokens per text, [CLS] and [SEP] included")
    m.add_argument("--eval-batch", type=int, help="sequences per evaluation batch")
    add_training_arguments(p)
    return p


def config_from_args(argv: Sequence[str] | None = None) -> TextClassifyConfig:
    args = vars(parser().parse_args(argv))
    return from_preset(args.pop("preset"), **args)


def main(argv: Sequence[str] | None = None) -> int:
    def load_train() -> Any:
        from torchrig.recipes.text_classify.train import train

        return train

    return run_recipe(lambda: config_from_args(argv), load_train)


if __name__ == "__main__":
    sys.exit(main())
