"""`python -m torchrig.recipes.image_classify` (also under torchrun): flags → config → train.

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
from torchrig.recipes.image_classify.config import PRESETS, ImageClassifyConfig, from_preset


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m torchrig.recipes.image_classify",
        description="Train or fine-tune an image classifier on an ImageFolder tree (local "
        "data and weights only).",
    )
    p.add_argument("--preset", default="tiny", help=f"one of: {', '.join(PRESETS)}")
    d = p.add_argument_group("data")
    d.add_argument("--data", type=Path, help="training images: one subfolder per class")
    d.add_argument("--val", type=Path, help="validation images, same classes (default: hold out)")
    d.add_argument("--val-fraction", type=float, help="share of each class held out (0.1)")
    d.add_argument("--cache", type=Path, help="decoded-image cache folder (default OUT/cache)")
    d.add_argument("--workers", type=int, help="processes decoding the cache (default: all CPUs)")
    d.add_argument(
        "--decode", choices=["cpu", "gpu"],
        help="who decodes the cache: cpu (Pillow, --workers processes; the default) or gpu "
        "(nvjpeg through torchvision; CUDA only)",
    )  # fmt: skip
    m = p.add_argument_group("model and images")
    m.add_argument("--model", help="tiny-cnn, a torchvision name (resnet50, ...) or timm:NAME")
    m.add_argument("--weights", type=Path, help="local .safetensors/.pt weights to start from")
    m.add_argument("--image-size", type=int, help="side of the square the model sees")
    m.add_argument("--cache-size", type=int, help="side of the cached images (image_size·256/224)")
    m.add_argument("--min-scale", type=float, help="smallest area share of a random crop (0.25)")
    m.add_argument("--no-flip", dest="flip", action="store_false", default=None)
    m.add_argument("--eval-batch", type=int, help="evaluation batch (default 2 × micro-batch)")
    add_training_arguments(p)
    return p


def config_from_args(argv: Sequence[str] | None = None) -> ImageClassifyConfig:
    args = vars(parser().parse_args(argv))
    return from_preset(args.pop("preset"), **args)


def main(argv: Sequence[str] | None = None) -> int:
    def load_train() -> Any:
        from torchrig.recipes.image_classify.train import train

        return train

    return run_recipe(lambda: config_from_args(argv), load_train)


if __name__ == "__main__":
    sys.exit(main())
