"""`python -m torchrig.recipes.causal_lm` (also under torchrun): flags → config → train.

Exit codes: 0 trained, or stopped cleanly by SIGTERM/SIGINT with a checkpoint; 2 bad input
(one line on stderr: what is wrong and the fix); 1 another torchrig error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torchrig.recipes.causal_lm.config import PRESETS, TrainConfig, from_preset
from torchrig.recipes.entry import run_recipe
from torchrig.train.precision import KERNEL_TUNINGS


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m torchrig.recipes.causal_lm",
        description="Pretrain or fine-tune a GPT-2 / Llama-style causal LM (local data only).",
    )
    p.add_argument("--preset", default="tiny", help=f"one of: {', '.join(PRESETS)}")
    src = p.add_argument_group("data (exactly one)")
    src.add_argument("--data", type=Path, nargs="+", help="plain text files to pretrain on")
    src.add_argument("--tokens", type=Path, help="a token file made earlier (.bin + .bin.json)")
    src.add_argument("--sft", type=Path, help="JSONL of {prompt, response}: fine-tune")
    m = p.add_argument_group("model")
    m.add_argument("--model", help="model preset name (tiny-gpt2, gpt2-124m, llama-1b, ...)")
    m.add_argument("--model-path", type=Path, help="local Hugging Face model folder")
    m.add_argument("--tokenizer", type=Path, help="local tokenizer folder (default: train one)")
    m.add_argument("--vocab-size", type=int, help="size of a tokenizer trained on the data")
    m.add_argument("--lora", action="store_true", default=None, help="train LoRA adapters only")
    m.add_argument("--lora-r", type=int)
    m.add_argument("--lora-alpha", type=int)
    t = p.add_argument_group("training")
    t.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, logs)")
    t.add_argument("--steps", type=int, help="optimizer steps in total")
    t.add_argument("--seq-len", type=int)
    t.add_argument("--micro-batch", type=int, help="sequences per process per micro-step")
    t.add_argument(
        "--grad-accum", type=int,
        help="micro-steps per optimizer step (given: the step is micro-batch × grad-accum "
        "sequences per process, and the preset's --global-batch is dropped)",
    )  # fmt: skip
    t.add_argument(
        "--global-batch", type=int,
        help="sequences per optimizer step over all processes (gpt2-124m: 512, ~0.5M "
        "tokens); each process takes its share, the micro-batch its GPU fits at a time",
    )  # fmt: skip
    t.add_argument("--lr", type=float, help="peak learning rate")
    t.add_argument("--warmup", type=int, help="linear warmup steps")
    t.add_argument("--weight-decay", type=float)
    t.add_argument("--grad-clip", type=float, help="max global gradient norm (0: off)")
    t.add_argument("--seed", type=int)
    r = p.add_argument_group("machinery")
    r.add_argument("--device", choices=["auto", "cuda", "cpu"])
    r.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"])
    r.add_argument("--strategy", choices=["auto", "none", "ddp", "fsdp"])
    r.add_argument(
        "--loss", choices=["auto", "full", "chunked"],
        help="output layer + loss: full logits, or chunked (never holds all logits)",
    )  # fmt: skip
    r.add_argument("--loss-chunk", type=int, help="tokens per chunk of --loss chunked")
    tune = r.add_mutually_exclusive_group()
    tune.add_argument(
        "--tune-kernels", dest="tune_kernels", nargs="?", const="blocks", default=None,
        choices=KERNEL_TUNINGS, metavar="LEVEL",
        help="tune the compiled kernels (longer first compile): blocks (the default level: "
        "Triton block sizes), gemm (Triton matmul templates with fused epilogues), max "
        "(both), off",
    )  # fmt: skip
    tune.add_argument(
        "--no-tune-kernels", dest="tune_kernels", action="store_const", const="off"
    )  # fmt: skip
    r.add_argument(
        "--attention", choices=["auto", "flash", "cudnn"],
        help="the attention kernel tried first (auto: cuDNN on H100/H200, else Flash)",
    )  # fmt: skip
    comp = r.add_mutually_exclusive_group()
    comp.add_argument("--compile", dest="compile", action="store_true", default=None)
    comp.add_argument("--no-compile", dest="compile", action="store_false")
    r.add_argument("--log-every", type=int)
    r.add_argument("--ckpt-every", type=int)
    r.add_argument("--keep", type=int, help="checkpoints to keep")
    r.add_argument("--resume", action="store_true", default=None, help="continue the run in --out")
    r.add_argument(
        "--force", action="store_true", default=None,
        help="write into a non-empty --out without checkpoints (same-named files are replaced)",
    )  # fmt: skip
    r.add_argument("--stop-after", type=int, help="steps in this invocation, then save and exit")
    r.add_argument(
        "--val-fraction", type=float,
        help="hold out this share of the pretraining tokens: validation loss and perplexity",
    )  # fmt: skip
    r.add_argument("--eval-every", type=int, help="steps between evaluations (0: at checkpoints)")
    r.add_argument("--no-tensorboard", dest="tensorboard", action="store_false", default=None)
    r.add_argument("--no-export", dest="export", action="store_false", default=None)
    return p


def config_from_args(argv: Sequence[str] | None = None) -> TrainConfig:
    args = vars(parser().parse_args(argv))
    preset = args.pop("preset")
    if args.get("data") is None:
        args.pop("data")
    return from_preset(preset, **args)


def main(argv: Sequence[str] | None = None) -> int:
    def load_train() -> Any:
        from torchrig.recipes.causal_lm.train import train

        return train

    return run_recipe(lambda: config_from_args(argv), load_train)


if __name__ == "__main__":
    sys.exit(main())
