"""The causal-LM recipe's settings: named presets, overridden by command-line flags.

    tiny        tiny-gpt2, 64-token windows: trains on a CPU in seconds (tests, smoke runs)
    gpt2-124m   GPT-2 small pretraining, 1024-token windows (nanoGPT's hyperparameters)
    llama-1b    a Llama-3.2-1B-shaped model, 2048-token windows

A preset fixes the model shape and the training hyperparameters; the data, the output
folder and anything given on the command line are added on top. The resolved config is
written to OUT/config.json and into every checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from torchrig.errors import UsageError
from torchrig.recipes import settings
from torchrig.train.attention import ATTENTION_CHOICES
from torchrig.train.precision import KERNEL_TUNINGS

# Tokens per chunk of the chunked loss: 8192 × 50,304 bf16 logits = 0.8 GB live at a time
# (GPT-2 124M at micro-batch 64: 8 chunks). Larger chunks keep the matmuls large and make
# fewer passes over the fp32 weight gradient (read and written once per chunk).
LOSS_CHUNK_TOKENS = 8192


@dataclass
class TrainConfig:
    # What to train.
    model: str = "tiny-gpt2"  # a MODEL_PRESETS name (ignored with model_path)
    model_path: Path | None = None  # local Hugging Face folder: fine-tune these weights
    tokenizer: Path | None = None  # local tokenizer folder; None: train one on the data
    vocab_size: int = 512  # size of a tokenizer trained on the data
    # Data: text files (pretraining), a token file made earlier, or JSONL pairs (SFT).
    data: list[Path] = field(default_factory=list)
    tokens: Path | None = None
    sft: Path | None = None
    out: Path = Path("runs/causal-lm")
    # Shape of a step: micro_batch × seq_len tokens per micro-step per process,
    # grad_accum micro-steps per optimizer step.
    seq_len: int = 64
    micro_batch: int = 8
    grad_accum: int = 1
    # Sequences per optimizer step over all processes. Set (the gpt2-124m and llama-1b
    # presets: nanoGPT's ~0.5M tokens), each of N processes takes global_batch / N of them,
    # micro_batch at a time, and grad_accum makes up the rest: the same training run on one
    # GPU or eight, only the time differs. None: micro_batch × grad_accum per process.
    global_batch: int | None = None
    steps: int = 60
    # Optimizer and schedule.
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup: int = 5
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    # LoRA (peft): only adapters train.
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    # Machinery.
    seed: int = 1337
    device: str = "auto"  # auto | cuda | cpu
    precision: str = "auto"  # auto | bf16 | fp16 | fp32
    compile: bool | None = None  # None: on CUDA, off on CPU
    # Inductor's tuning of the compiled kernels (precision.KERNEL_TUNINGS: off, blocks,
    # gemm, max): a longer first compile, sometimes faster steps. None: the table's choice.
    tune_kernels: str | None = None
    strategy: str = "auto"  # auto | none | ddp | fsdp
    # The output layer + loss: "full" logits for every token at once, or "chunked"
    # (torchrig.train.linear_ce: no full logits tensor); "auto" is LOSS_BY_MODEL's choice.
    loss: str = "auto"  # auto | full | chunked
    loss_chunk: int = LOSS_CHUNK_TOKENS  # tokens per chunk of the chunked loss
    attention: str = "auto"  # auto | flash | cudnn (torchrig.train.attention)
    log_every: int = 10
    ckpt_every: int = 20
    keep: int = 3
    resume: bool = False
    force: bool = False  # write into a non-empty --out that holds no checkpoints
    stop_after: int | None = None  # optimizer steps in this run, then save and exit
    # Held-out evaluation (torchrig.train.heldout): the last share of the pretraining tokens,
    # never trained on; a loss and perplexity every eval_every steps (0: at each checkpoint).
    val_fraction: float = 0.0
    eval_every: int = 0
    tensorboard: bool = True
    export: bool = True  # save the final model (save_pretrained) in OUT/final
    # Set by from_preset when the preset's micro-batch follows the GPU's memory and neither
    # --micro-batch nor --grad-accum was given; fit_to_device then picks it.
    auto_micro_batch: bool = False
    # Set by from_preset when --micro-batch was given: a global batch must then split into
    # it exactly (else one clear error); otherwise fit_to_device may take a smaller one.
    micro_batch_given: bool = False

    def to_json(self) -> dict[str, Any]:
        return settings.to_json(self)

    def check(self) -> None:
        """Raise UsageError for settings that cannot work, naming the flag."""
        settings.require_at_least_one(
            {
                "--seq-len": self.seq_len,
                "--micro-batch": self.micro_batch,
                "--grad-accum": self.grad_accum,
                "--steps": self.steps,
                "--log-every": self.log_every,
                "--loss-chunk": self.loss_chunk,
                "--global-batch": 1 if self.global_batch is None else self.global_batch,
                "--ckpt-every": self.ckpt_every,
                "--keep": self.keep,
            }
        )
        if self.loss not in LOSSES:
            raise UsageError(f"unknown --loss {self.loss!r}", f"use one of: {', '.join(LOSSES)}")
        if self.tune_kernels is not None and self.tune_kernels not in KERNEL_TUNINGS:
            raise UsageError(
                f"unknown --tune-kernels {self.tune_kernels!r}",
                f"use one of: {', '.join(KERNEL_TUNINGS)}",
            )
        if self.attention not in ATTENTION_CHOICES:
            raise UsageError(
                f"unknown --attention {self.attention!r}",
                f"use one of: {', '.join(ATTENTION_CHOICES)}",
            )
        loss_for(self.model, self.loss, self.strategy)  # chunked + fsdp: refused now
        if self.lr <= 0:
            raise UsageError(f"--lr must be positive, not {self.lr}", "e.g. --lr 3e-4")
        if self.warmup < 0:
            raise UsageError(f"--warmup must be 0 or more, not {self.warmup}", "e.g. --warmup 100")
        if self.stop_after is not None and self.stop_after < 1:
            raise UsageError("--stop-after must be at least 1", "give a number of steps")
        if not 0.0 <= self.val_fraction < 0.5:
            raise UsageError(
                f"--val-fraction must be at least 0 and below 0.5, not {self.val_fraction}",
                "e.g. --val-fraction 0.05 (5% of the tokens held out)",
            )
        if self.eval_every < 0:
            raise UsageError(
                f"--eval-every must be 0 or more, not {self.eval_every}",
                "0 evaluates at each checkpoint",
            )
        if self.val_fraction and self.sft is not None:
            raise UsageError(
                "--val-fraction holds out pretraining tokens, and --sft data has none",
                "drop --val-fraction, or pretrain with --data or --tokens",
            )
        sources = [bool(self.data), self.tokens is not None, self.sft is not None]
        if sum(sources) != 1:
            raise UsageError(
                "give exactly one data source: --data TEXT..., --tokens FILE.bin or "
                "--sft FILE.jsonl",
                "plain text to pretrain, or prompt/response JSONL to fine-tune",
            )
        # Before anything is written to --out: a wrong path must leave no run folder behind.
        given: list[tuple[str, Path | None]] = [("--data", p) for p in self.data]
        given += [("--tokens", self.tokens), ("--sft", self.sft)]
        for flag, path in given:
            if path is not None and Path(path).is_dir():
                raise UsageError(
                    f"{flag} {path} is a folder, not a file",
                    f"give the files in it, e.g. --data {path}/*.txt"
                    if flag == "--data"
                    else f"give {flag} the file itself",
                )
            if path is not None and not Path(path).exists():
                raise UsageError(
                    f"data file {path} does not exist", "check the path given for the data"
                )
            if path is not None and not Path(path).is_file():
                raise UsageError(f"{flag} {path} is not a regular file", "give a text file")
        if self.lora and self.model_path is None and not self.model.startswith("tiny"):
            raise UsageError(
                "--lora adapts pretrained weights, but no --model-path was given",
                "give --model-path DIR (a local Hugging Face folder)",
            )


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "model": "tiny-gpt2",
        "vocab_size": 512,
        "seq_len": 64,
        "micro_batch": 8,
        "grad_accum": 1,
        "steps": 60,
        "lr": 3e-3,
        "warmup": 5,
        "weight_decay": 0.0,
        "log_every": 10,
        "ckpt_every": 20,
    },
    # nanoGPT's GPT-2 small run: 512 × 1024 = 0.5M tokens per step on any number of GPUs
    # (each its share, the micro-batch its memory fits: 16 here, 128 on an 80 GB GPU).
    "gpt2-124m": {
        "model": "gpt2-124m",
        "vocab_size": 50257,
        "seq_len": 1024,
        "global_batch": 512,
        "micro_batch": 16,
        "steps": 20000,
        "lr": 6e-4,
        "warmup": 700,
        "weight_decay": 0.1,
        "log_every": 10,
        "ckpt_every": 1000,
    },
    # Llama-3.2-1B's shape with a 32k trained tokenizer; 256 × 2048 = 0.5M tokens per step.
    "llama-1b": {
        "model": "llama-1b",
        "vocab_size": 32000,
        "seq_len": 2048,
        "global_batch": 256,
        "micro_batch": 8,
        "steps": 20000,
        "lr": 3e-4,
        "warmup": 2000,
        "weight_decay": 0.1,
        "log_every": 10,
        "ckpt_every": 500,
    },
}


# Micro-batch by GPU memory: (GiB of device memory at least, micro-batch), largest first;
# --grad-accum makes up the step's sequences. A larger micro-batch does the same step in
# fewer, larger kernels and fewer micro-steps (GPT-2 124M on an H100 80GB, 2026-12-07, the
# recipe: 492.2k tokens/s at 64, 503.2k at 128; a plain loop 467k at 32). Peak memory,
# compiled bf16 with the chunked loss: 24.3 GiB at 64, 54.8 GiB at 128 (an 80 GB card
# shows 79.2 GiB; benchmarks/results/train-causal-lm-gpt2-124m-H100-2026-12-07-record.json).
MICRO_BATCH_BY_MEMORY: dict[str, tuple[tuple[float, int], ...]] = {
    "gpt2-124m": ((75.0, 128), (60.0, 64), (30.0, 32), (0.0, 16)),
}


LOSSES = ("auto", "full", "chunked")

# What --loss auto runs, per model preset (others: "full"). One place for the recipe and
# `torchrig bench`'s GPT-2 line. "chunked" saves the full logits' memory (peak 28.5 → 24.3
# GiB at GPT-2 124M micro-batch 64) with the same arithmetic, and was faster on an H100
# 80GB (2026-12-07, one process each, beside the plain loop): 496.2k vs 493.7k tokens/s at
# micro-batch 64, 499.3k vs 498.1k at 128 (benchmarks/results/train-causal-lm-gpt2-124m-
# H100-2026-12-07-mb*-variants.json).
LOSS_BY_MODEL: dict[str, str] = {"gpt2-124m": "chunked"}


# What --tune-kernels defaults to per model preset (others: off). Read by the recipe and
# `torchrig bench`'s GPT-2 line, like LOSS_BY_MODEL. Off: on the same H100 it gave +0.6%
# at micro-batch 64 (496.7k vs 493.7k) for a 135 s compile instead of 28 s, and at 128 its
# compile had not finished after 165 s (…-mb128-tuned-cut.json); "gemm" gave 0.9994× the
# plain loop at 128 after a ~420 s compile, cuBLAS winning every matmul (…-mb128-gemm.json).
TUNE_KERNELS_BY_MODEL: dict[str, str] = {"gpt2-124m": "off"}


def tune_kernels_for(model: str, requested: str | None = None) -> str:
    """The kernel tuning a run uses (precision.KERNEL_TUNINGS): the request, else the table."""
    if requested is not None:
        return requested
    return TUNE_KERNELS_BY_MODEL.get(model, "off")


def loss_for(model: str, requested: str = "auto", strategy: str = "none") -> str:
    """The loss a run uses: the request, or for "auto" the model's LOSS_BY_MODEL entry;
    "full" under FSDP, where the chunked loss cannot reach the sharded output weight."""
    if strategy == "fsdp":
        if requested == "chunked":
            raise UsageError(
                "--loss chunked does not run under FSDP (the output layer's weight is "
                "gathered only inside the model's own forward)",
                "use --loss full (or auto) with fsdp, or --strategy ddp",
            )
        return "full"
    if requested != "auto":
        return requested
    return LOSS_BY_MODEL.get(model, "full")


def micro_batch_for(model: str, memory_bytes: int | None, default: int) -> int:
    """The micro-batch MICRO_BATCH_BY_MEMORY gives `model` on a device of `memory_bytes`
    (`default` for other models, or when the memory is not known: a CPU)."""
    table = MICRO_BATCH_BY_MEMORY.get(model)
    if table is None or memory_bytes is None:
        return default
    gib = memory_bytes / 2**30
    return next((micro for at_least, micro in table if gib >= at_least), default)


def from_preset(name: str, **overrides: Any) -> TrainConfig:
    """The preset's config with `overrides` (None values are ignored: flag not given)."""
    cfg = settings.from_preset(TrainConfig, PRESETS, name, **overrides)
    given = {k for k, v in overrides.items() if v is not None}
    if {"grad_accum", "global_batch"} <= given:
        raise UsageError(
            "--grad-accum and --global-batch both set the optimizer step",
            "give --global-batch (the accumulation follows), or --micro-batch and --grad-accum",
        )
    if "grad_accum" in given:
        cfg.global_batch = None  # the step is what was asked: micro × accum per process
    cfg.micro_batch_given = "micro_batch" in given
    preset_model = PRESETS[name].get("model")
    cfg.auto_micro_batch = (
        cfg.model == preset_model
        and preset_model in MICRO_BATCH_BY_MEMORY
        and not given & {"micro_batch", "grad_accum", "model_path"}
    )
    return cfg


def fit_to_device(cfg: TrainConfig, memory_bytes: int | None, world: int = 1) -> TrainConfig:
    """`cfg` shaped for `world` processes on devices of `memory_bytes`: with global_batch,
    each process's share of the step's sequences, micro_batch at a time (the device's, with
    auto_micro_batch), grad_accum the rest; without, micro_batch × grad_accum per process,
    the micro-batch raised to the device's where it divides them."""
    micro = cfg.micro_batch
    if cfg.auto_micro_batch:
        micro = micro_batch_for(cfg.model, memory_bytes, cfg.micro_batch)
    if cfg.global_batch is None:
        sequences = cfg.micro_batch * cfg.grad_accum
        if sequences % micro:
            return cfg
        return replace(cfg, micro_batch=micro, grad_accum=sequences // micro)
    share, left = divmod(cfg.global_batch, world)
    if left or not share:
        raise UsageError(
            f"--global-batch {cfg.global_batch} does not split evenly over {world} processes",
            f"give a multiple of {world}, or --micro-batch and --grad-accum per process",
        )
    if not cfg.micro_batch_given:  # the largest that fits and divides the share
        micro = max(m for m in range(1, min(micro, share) + 1) if share % m == 0)
    elif share % micro:
        raise UsageError(
            f"--micro-batch {micro} does not divide the {share} sequences each of {world} "
            f"process(es) takes of --global-batch {cfg.global_batch}",
            f"give a micro-batch that divides {share}, or --grad-accum to set the step yourself",
        )
    return replace(cfg, micro_batch=micro, grad_accum=share // micro)
