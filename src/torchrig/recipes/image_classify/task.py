"""From an ImageClassifyConfig to the ClassifyTask the shared loop trains.

Every rank lists the folders (cheap, and every rank then reports the same bad input);
rank 0 decodes the cache while the others wait at a barrier, then they map what it wrote.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torchrig.errors import UsageError
from torchrig.recipes.classify.task import ClassifyTask, Mistake
from torchrig.recipes.image_classify import augment, models
from torchrig.recipes.image_classify.cache import DecodedCache, build_cache, open_cache
from torchrig.recipes.image_classify.config import ImageClassifyConfig
from torchrig.recipes.image_classify.data import EvalSet, ImageBatches, holdout
from torchrig.recipes.image_classify.folder import ImageFolder, check_val_classes, scan
from torchrig.recipes.image_classify.mistakes import draw_mistakes
from torchrig.train import distributed as D

RECIPE = "image-classify"
Say = Callable[[str], None]


def _decoder(cfg: ImageClassifyConfig, dist: D.Dist) -> Any:
    """None for Pillow processes, else the GPU's batch decoder (--decode gpu)."""
    if cfg.decode != "gpu":
        return None
    if dist.device.type != "cuda":
        raise UsageError(
            f"--decode gpu needs a CUDA device, and this run is on {dist.device.type}",
            "leave --decode at cpu",
        )
    from torchrig.recipes.image_classify.gpu_decode import nvjpeg

    return nvjpeg(dist.device)


def _cache(tree: ImageFolder, cfg: ImageClassifyConfig, dist: D.Dist, say: Say) -> DecodedCache:
    size = cfg.resolved_cache_size
    found = (
        build_cache(tree, cfg.cache_dir, size, cfg.workers, say, gpu=_decoder(cfg, dist))
        if dist.is_main
        else None
    )
    D.barrier(dist)
    if found is None:
        found = open_cache(tree, cfg.cache_dir, size)
    if found is None:
        raise UsageError(
            f"rank {dist.rank} cannot read the image cache rank 0 built in {cfg.cache_dir}",
            "put --cache on a file system every process can read",
        )
    if found.built:
        how = "GPU (nvjpeg)" if cfg.decode == "gpu" else f"{found.workers} process(es)"
        say(
            f"image cache: {len(found)} images in {found.build_s:.1f} s "
            f"({found.images_per_s:.0f} images/s, {how})"
        )
    return found


def _skipped_note(cache: DecodedCache, tree: ImageFolder) -> str | None:
    if not cache.skipped:
        return None
    _, path, reason = cache.skipped[0]
    return (
        f"skipped {len(cache.skipped)} unreadable image(s) of {len(cache)} in {tree.root}; "
        f"first: {path} ({reason})"
    )


def _readable_rows(cache: DecodedCache, tree: ImageFolder) -> Any:
    import numpy as np

    rows = np.asarray([i for i in range(len(cache)) if cache.readable(i)], dtype=np.int64)
    labels = np.asarray(tree.labels, dtype=np.int64)
    present = set(labels[rows].tolist()) if len(rows) else set()
    for c, name in enumerate(tree.classes):
        if c not in present:
            raise UsageError(
                f"class folder {tree.root / name} has no readable images "
                f"(all {int((labels == c).sum())} failed to decode)",
                "replace the broken files or remove the folder",
            )
    return rows


def build_task(cfg: ImageClassifyConfig, dist: D.Dist, say: Say = print) -> ClassifyTask:
    import numpy as np
    import torch

    assert cfg.data is not None  # cfg.check() ran
    train_tree = scan(cfg.data, "--data")
    val_tree = scan(cfg.val, "--val") if cfg.val is not None else None
    val_to_train = check_val_classes(train_tree, val_tree) if val_tree is not None else None
    labels = train_tree.classes
    if len(labels) < 2:
        raise UsageError(
            f"--data {train_tree.root} has one class ({labels[0]}): nothing to tell apart",
            "give at least two class folders",
        )

    # The model before the cache: a wrong --model or --weights is reported in a second,
    # not after decoding every image. The same seed on every rank: the same initial weights.
    torch.manual_seed(cfg.seed)
    model = models.build(cfg.model, len(labels))
    weight_notes = models.load_weights(model, cfg.weights) if cfg.weights is not None else []

    train_cache = _cache(train_tree, cfg, dist, say)
    notes = [n for n in [_skipped_note(train_cache, train_tree)] if n] + weight_notes
    train_labels = np.asarray(train_tree.labels, dtype=np.int64)
    rows = _readable_rows(train_cache, train_tree)
    if val_tree is None or val_to_train is None:
        train_rows, val_rows = holdout(train_labels, rows, cfg.val_fraction, cfg.seed)
        val_cache, val_labels, val_ids = train_cache, train_labels, train_tree.paths
        where = f"{len(val_rows)} held out of {train_tree.root} (--val-fraction {cfg.val_fraction})"
    else:
        train_rows = rows
        val_cache = _cache(val_tree, cfg, dist, say)
        note = _skipped_note(val_cache, val_tree)
        if note:
            notes.append(note)
        val_rows = np.asarray(
            [i for i in range(len(val_cache)) if val_cache.readable(i)], dtype=np.int64
        )
        val_labels = np.asarray(val_to_train, dtype=np.int64)[np.asarray(val_tree.labels)]
        val_ids = val_tree.paths
        where = f"{len(val_rows)} from {val_tree.root}"
    if len(val_rows) == 0:
        raise UsageError(
            f"no validation images: {where}",
            "give --val DIR, or more images per class (the hold-out keeps one per class "
            "for training)",
        )
    counts = np.bincount(train_labels[train_rows], minlength=len(labels)).tolist()
    notes.append(
        f"data: {len(labels)} classes, {len(train_rows)} training images, validation {where}"
    )

    flops = models.flops_per_sample(model, cfg.image_size)
    if dist.device.type == "cuda":
        # NHWC: the layout cuDNN's tensor-core convolutions run in, matching the inputs
        # prepare() makes; otherwise every convolution would transpose its weights.
        model = model.to(memory_format=torch.channels_last)
        # Training batches all have one shape ([micro_batch, 3, image_size, image_size]), so
        # timing cuDNN's convolution algorithms once per shape pays back within a few
        # steps; the plain loop it is measured against does the same (issue 18, item 3).
        torch.backends.cudnn.benchmark = True

    batches = ImageBatches(
        train_cache.images, train_rows, train_labels, cfg.micro_batch, cfg.seed,
        dist.rank, dist.world_size, min_scale=cfg.min_scale, flip=cfg.flip,
    )  # fmt: skip
    eval_set = EvalSet(
        val_cache.images, val_rows, val_labels, val_ids, cfg.eval_batch or 2 * cfg.micro_batch
    )
    row_of = {val_ids[r]: int(r) for r in val_rows}

    def report_mistakes(mistakes: list[Mistake], out: Path) -> None:
        draw_mistakes(mistakes, labels, lambda i: eval_set.image(row_of[i]), out / "mistakes.png")

    return ClassifyTask(
        recipe=RECIPE,
        model=model,
        labels=labels,
        train=batches,
        evaluate=eval_set,
        train_counts=counts,
        meta=classifier_meta(cfg, len(labels)),
        prepare=augment.make_prepare(cfg.image_size),
        flops_per_sample=flops,
        unit="images",
        report_mistakes=report_mistakes,
        notes=notes,
        # Every batch is [micro_batch, S, S, 3] uint8 + [micro_batch, 2, 3] crops (ImageBatches
        # runs on across epochs, never a short batch): the step may run as CUDA graphs.
        static_shapes=True,
        prepare_in_step=True,  # augmentation compiled into the step (augment.py)
    )


def classifier_meta(cfg: ImageClassifyConfig, num_classes: int) -> dict[str, Any]:
    """What export.build_model needs, and what a server needs to prepare an image."""
    size = cfg.resolved_cache_size
    return {
        "model": {
            "name": cfg.model,
            "source": models.source(cfg.model),
            "num_classes": num_classes,
        },
        "preprocess": {
            "image_size": cfg.image_size,
            "resize": size,
            "rule": (
                f"RGB; resize the short side to {size} px (bilinear, antialiased); "
                f"centre-crop {cfg.image_size}×{cfg.image_size}; scale to [0, 1]; "
                "subtract mean, divide by std per channel; float32 NCHW"
            ),
            "mean": list(augment.IMAGENET_MEAN),
            "std": list(augment.IMAGENET_STD),
            "layout": "NCHW",
            "channels": "RGB",
        },
    }
