"""The image-classify recipe's settings: named presets, overridden by command-line flags.

    tiny             tiny-cnn on 32-px images: trains on a CPU in seconds (tests, smoke runs)
    resnet50         torchvision ResNet-50 at 224 px, micro-batch 256, compiled bf16 on CUDA
    efficientnet-b0  torchvision EfficientNet-B0 at 224 px

The training settings (steps, lr, batch, ...) are ClassifyConfig's, shared with
text-classify; this adds the data, the model and the image pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchrig.errors import UsageError
from torchrig.recipes.classify.config import ClassifyConfig
from torchrig.recipes.classify.config import from_preset as _from_preset
from torchrig.recipes.image_classify.cache import default_cache_size


@dataclass
class ImageClassifyConfig(ClassifyConfig):
    out: Path = Path("runs/image-classify")
    data: Path | None = None  # ImageFolder tree: one subfolder per class
    val: Path | None = None  # same layout; None: hold out val_fraction of --data
    val_fraction: float = 0.1
    model: str = "tiny-cnn"  # tiny-cnn, a torchvision name, or timm:NAME
    weights: Path | None = None  # local .safetensors / .pt to start from
    image_size: int = 32  # side of the square the model sees
    cache_size: int | None = None  # side of the cached images; None: image_size · 256/224
    cache: Path | None = None  # cache folder; None: OUT/cache
    workers: int | None = None  # decoding processes for the cache; None: every CPU
    decode: str = "cpu"  # who decodes the cache: cpu (Pillow processes) or gpu (nvjpeg)
    min_scale: float = 0.25  # smallest area share of a random-resized crop
    flip: bool = True  # random horizontal flips
    eval_batch: int | None = None  # evaluation batch; None: 2 × micro_batch

    @property
    def resolved_cache_size(self) -> int:
        return self.cache_size or default_cache_size(self.image_size)

    @property
    def cache_dir(self) -> Path:
        return self.cache if self.cache is not None else self.out / "cache"

    def check(self) -> None:
        super().check()
        if self.data is None:
            raise UsageError(
                "no training images: --data is missing",
                "give --data DIR, a folder with one subfolder of images per class",
            )
        for flag, folder in (("--data", self.data), ("--val", self.val)):
            if folder is not None and not Path(folder).is_dir():
                kind = "is not a folder" if Path(folder).exists() else "does not exist"
                raise UsageError(
                    f"{flag} {folder} {kind}",
                    "give a folder with one subfolder of images per class (an ImageFolder tree)",
                )
        if self.image_size < 8:
            raise UsageError(f"--image-size {self.image_size} is too small", "use 8 or more")
        if self.resolved_cache_size < self.image_size:
            raise UsageError(
                f"--cache-size {self.resolved_cache_size} is smaller than --image-size "
                f"{self.image_size}",
                "cache at least at the size the model sees (default: image_size · 256/224)",
            )
        if self.val is None and not 0.0 < self.val_fraction < 1.0:
            raise UsageError(
                f"--val-fraction must be between 0 and 1, not {self.val_fraction}",
                "e.g. --val-fraction 0.1, or give --val DIR",
            )
        if not 0.0 < self.min_scale <= 1.0:
            raise UsageError(f"--min-scale must be in (0, 1], not {self.min_scale}", "e.g. 0.25")
        if self.decode not in ("cpu", "gpu"):
            raise UsageError(f"--decode {self.decode!r} is not known", "use cpu or gpu")
        if self.workers is not None and self.workers < 1:
            raise UsageError("--workers must be at least 1", "or leave it out: every CPU")
        if self.eval_batch is not None and self.eval_batch < 1:
            raise UsageError("--eval-batch must be at least 1", "or leave it out")


# Both 224-px presets: AdamW with decoupled weight decay 0.05 and label smoothing 0.1 (timm's
# ResNet strikes-back recipes use the same smoothing); peak lr 2e-3 for 256 images per step,
# linearly more for larger global batches is the usual rule (pass --lr). 5,000 steps of 256
# is ~10 epochs of 128k images: a fine-tuning-sized run; ImageNet from scratch wants ~100×.
_IMAGENET_LIKE: dict[str, Any] = {
    "image_size": 224,
    "cache_size": 256,
    "micro_batch": 256,
    "grad_accum": 1,
    "steps": 5000,
    "lr": 2e-3,
    "warmup": 250,
    "min_lr_ratio": 0.01,
    "weight_decay": 0.05,
    "label_smoothing": 0.1,
    "log_every": 50,
    "ckpt_every": 1000,
}

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "model": "tiny-cnn",
        "image_size": 32,
        "cache_size": 36,
        "micro_batch": 32,
        "grad_accum": 1,
        "steps": 60,
        "lr": 3e-3,
        "warmup": 5,
        "weight_decay": 0.0,
        "log_every": 10,
        "ckpt_every": 20,
    },
    "resnet50": {"model": "resnet50", **_IMAGENET_LIKE},
    "efficientnet-b0": {"model": "efficientnet_b0", **_IMAGENET_LIKE},
}


def from_preset(name: str, **overrides: Any) -> ImageClassifyConfig:
    """The preset's config with `overrides` (None values are ignored: flag not given). A
    preset's cache size belongs to its image size: --image-size alone derives its own."""
    presets = PRESETS
    new_size = overrides.get("image_size") is not None and overrides.get("cache_size") is None
    if name in PRESETS and new_size:
        preset = {k: v for k, v in PRESETS[name].items() if k != "cache_size"}
        presets = {**PRESETS, name: preset}
    return _from_preset(ImageClassifyConfig, presets, name, **overrides)
