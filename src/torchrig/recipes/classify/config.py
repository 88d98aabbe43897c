"""Training settings the classification recipes share; each recipe's config adds its own
(data paths, model, sequence length or image size) by subclassing ClassifyConfig."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from torchrig.errors import UsageError
from torchrig.recipes import settings

C = TypeVar("C", bound="ClassifyConfig")


@dataclass
class ClassifyConfig:
    out: Path = Path("runs/classify")
    # micro_batch samples per process per micro-step, grad_accum micro-steps per step.
    micro_batch: int = 32
    grad_accum: int = 1
    steps: int = 100
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup: int = 10
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    grad_clip: float = 1.0
    class_weights: str = "none"  # none | balanced (weights inversely proportional to counts)
    label_smoothing: float = 0.0
    seed: int = 1337
    device: str = "auto"  # auto | cuda | cpu
    precision: str = "auto"  # auto | bf16 | fp16 | fp32
    compile: bool | None = None  # None: on CUDA, off on CPU
    # None: wherever the step allows them (loop._cuda_graphs says when); True: required
    # (an error where they cannot run); False: never.
    cuda_graphs: bool | None = None
    strategy: str = "auto"  # auto | none | ddp (these models fit one GPU: no FSDP)
    log_every: int = 10
    eval_every: int = 0  # evaluate every N steps as well as at the end (0: at the end only)
    ckpt_every: int = 100
    keep: int = 3
    resume: bool = False
    force: bool = False  # write into a non-empty --out that holds no checkpoints
    stop_after: int | None = None  # optimizer steps in this invocation, then save and exit
    tensorboard: bool = True
    export: bool = True  # write OUT/final (weights + classifier.json) at the end

    def to_json(self) -> dict[str, Any]:
        return settings.to_json(self)

    def check(self) -> None:
        """Raise UsageError for settings that cannot work, naming the flag."""
        settings.require_at_least_one(
            {
                "--micro-batch": self.micro_batch,
                "--grad-accum": self.grad_accum,
                "--steps": self.steps,
                "--log-every": self.log_every,
                "--ckpt-every": self.ckpt_every,
                "--keep": self.keep,
            }
        )
        if self.lr <= 0:
            raise UsageError(f"--lr must be positive, not {self.lr}", "e.g. --lr 3e-4")
        if self.warmup < 0 or self.eval_every < 0:
            raise UsageError("--warmup and --eval-every must be 0 or more")
        if self.class_weights not in ("none", "balanced"):
            raise UsageError(
                f"--class-weights {self.class_weights!r} is not known", "use none or balanced"
            )
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UsageError("--label-smoothing must be in [0, 1)", "e.g. --label-smoothing 0.1")
        if self.strategy not in ("auto", "none", "ddp"):
            raise UsageError(
                f"--strategy {self.strategy!r} is not known for classification",
                "use auto, none or ddp",
            )
        if self.stop_after is not None and self.stop_after < 1:
            raise UsageError("--stop-after must be at least 1", "give a number of steps")


def add_training_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of every ClassifyConfig field (defaults None: the preset decides)."""
    t = p.add_argument_group("training")
    t.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, logs)")
    t.add_argument("--steps", type=int, help="optimizer steps in total")
    t.add_argument("--micro-batch", type=int, help="samples per process per micro-step")
    t.add_argument("--grad-accum", type=int, help="micro-steps per optimizer step")
    t.add_argument("--lr", type=float, help="peak learning rate")
    t.add_argument("--warmup", type=int, help="linear warmup steps")
    t.add_argument("--weight-decay", type=float)
    t.add_argument("--grad-clip", type=float, help="max global gradient norm (0: off)")
    t.add_argument(
        "--class-weights", choices=["none", "balanced"], help="balanced: weigh rare classes up"
    )
    t.add_argument("--label-smoothing", type=float)
    t.add_argument("--seed", type=int)
    r = p.add_argument_group("machinery")
    r.add_argument("--device", choices=["auto", "cuda", "cpu"])
    r.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"])
    r.add_argument("--strategy", choices=["auto", "none", "ddp"])
    comp = r.add_mutually_exclusive_group()
    comp.add_argument("--compile", dest="compile", action="store_true", default=None)
    comp.add_argument("--no-compile", dest="compile", action="store_false")
    graphs = r.add_mutually_exclusive_group()
    graphs.add_argument(
        "--cuda-graphs", dest="cuda_graphs", action="store_true", default=None,
        help="require CUDA graphs for the compiled step (default: used wherever the step allows)",
    )  # fmt: skip
    graphs.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false")
    r.add_argument("--log-every", type=int)
    r.add_argument("--eval-every", type=int, help="also evaluate every N steps (0: at the end)")
    r.add_argument("--ckpt-every", type=int)
    r.add_argument("--keep", type=int, help="checkpoints to keep")
    r.add_argument("--resume", action="store_true", default=None, help="continue the run in --out")
    r.add_argument(
        "--force", action="store_true", default=None,
        help="write into a non-empty --out without checkpoints (same-named files are replaced)",
    )  # fmt: skip
    r.add_argument("--stop-after", type=int, help="steps in this invocation, then save and exit")
    r.add_argument("--no-tensorboard", dest="tensorboard", action="store_false", default=None)
    r.add_argument("--no-export", dest="export", action="store_false", default=None)


def from_preset(cls: type[C], presets: dict[str, dict[str, Any]], name: str, **overrides: Any) -> C:
    """The preset's config with `overrides` (None values are ignored: flag not given)."""
    return settings.from_preset(cls, presets, name, **overrides)
