"""Augmentation and normalisation on the device, after the uint8 copy.

Training: every image gets its own random-resized crop and flip (the parameters `theta`
come with the batch, drawn on the CPU by data.py), all applied by ONE `affine_grid` +
`grid_sample` call that also resizes to image_size. On a GPU this costs well under a
millisecond per batch of 256, where Pillow crops on CPU workers would need ~10 cores at
5,000 images/s. The copy to the device is uint8 (4× less than float32).

Evaluation: the centre image_size square of the cached image (cached at
round(image_size·256/224), this is the classic resize-256 / centre-crop-224).

Both return float32 NCHW in channels_last memory order, normalised with the ImageNet mean
and standard deviation: what the model (and an exported model) takes.

In training the loop runs `prepare` inside the compiled step (ClassifyTask.prepare_in_step):
Inductor turns the uint8 read, the bilinear sampling and the normalisation into one
generated kernel that writes the model's input once, instead of four eager passes over
the batch (docs/performance.md). So this code stays traceable: tensor operations only, no
reads back to the host, fp32 whatever autocast the step runs under.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _to_float_nchw(pixels: Any) -> Any:
    import torch

    # NHWC uint8 → NCHW view (channels_last strides: no copy), then float.
    return pixels.permute(0, 3, 1, 2).to(torch.float32)


def _constant(values: list[float], like: Any) -> Any:
    """A [1, 3, 1, 1] float32 constant on `like`'s device. Inside a compiled step it is a
    literal of the generated kernel. Eagerly on a GPU, torch.tensor(device="cuda") would
    copy from pageable memory, which blocks the host until the GPU has finished all queued
    work (a sync per batch); from pinned memory the copy is asynchronous."""
    import torch

    if like.device.type == "cuda" and not torch.compiler.is_compiling():
        host = torch.tensor(values, dtype=torch.float32).pin_memory()
        return host.to(like.device, non_blocking=True).view(1, 3, 1, 1)
    return torch.tensor(values, dtype=torch.float32, device=like.device).view(1, 3, 1, 1)


def _normalise(x: Any, mean: Sequence[float], std: Sequence[float]) -> Any:
    import torch

    # (x / 255 - mean) / std as one multiply-add per element.
    scale = _constant([1.0 / (255.0 * s) for s in std], x)
    shift = _constant([-m / s for m, s in zip(mean, std, strict=True)], x)
    out = torch.addcmul(shift, x, scale)
    return out.contiguous(memory_format=torch.channels_last)


def train_transform(
    pixels: Any,
    theta: Any,
    image_size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Any:
    """uint8 [B, S, S, 3] + theta [B, 2, 3] → normalised float32 [B, 3, I, I]."""
    import torch
    import torch.nn.functional as F

    # fp32 even inside the step's bf16 autocast: affine_grid's batched matmul would run in
    # bf16 there, and sampling positions with 8 mantissa bits are off by up to a pixel.
    with torch.autocast(pixels.device.type, enabled=False):
        x = _to_float_nchw(pixels)
        grid = F.affine_grid(
            theta.to(x.dtype), [x.shape[0], 3, image_size, image_size], align_corners=False
        )
        # Crops lie inside the image; "border" only decides the half-pixel at its very edge.
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return _normalise(x, mean, std)


def eval_transform(
    pixels: Any,
    image_size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Any:
    """uint8 [B, S, S, 3] → the normalised centre crop, float32 [B, 3, I, I]."""
    size = pixels.shape[1]
    top = (size - image_size) // 2
    crop = pixels[:, top : top + image_size, top : top + image_size, :]
    return _normalise(_to_float_nchw(crop), mean, std)


def make_prepare(
    image_size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Callable[[tuple[Any, ...], bool], tuple[Any, ...]]:
    """ClassifyTask.prepare: training inputs are (pixels, theta), evaluation (pixels,)."""

    def prepare(inputs: tuple[Any, ...], training: bool) -> tuple[Any, ...]:
        if training:
            pixels, theta = inputs
            return (train_transform(pixels, theta, image_size, mean, std),)
        return (eval_transform(inputs[0], image_size, mean, std),)

    return prepare
