"""Training and evaluation batches from the decoded cache.

Training (`ImageBatches`). Epoch e's order is a permutation of the training rows seeded by
(seed, e); rank r takes every world_size-th row of it (each epoch's last
len % world_size rows are left out so that ranks see equal counts); a rank's batches run
on across epoch boundaries. Each batch is one gather of rows from the memory-mapped cache
plus the random crop-and-flip parameters of its images, drawn on the CPU from a generator
seeded by (seed, rank, position): the augmentation that augment.py applies on the device is
then a pure function of the batch, so `state_dict()` (the position) is all a resumed run
needs to make exactly the same batches, pixels included.

    yields ((images uint8 [B, S, S, 3], theta float32 [B, 2, 3]), labels int64 [B])

Evaluation (`EvalSet`): the validation rows in a fixed order, no randomness.

    yields ((images uint8 [B, S, S, 3],), labels int64 [B], ids: relative paths)

The hold-out (`holdout`): without --val, a share of every class is kept back, chosen by a
generator seeded from the seed and the class, so a given seed always holds out the same
images and every class is represented in proportion.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from torchrig.errors import UsageError
from torchrig.train.sampling import EpochOrder, generator

# RandomResizedCrop's aspect-ratio range (torchvision, timm): 3/4 to 4/3.
RATIO = (3 / 4, 4 / 3)
# Streams of the seed: 0 = epoch order (followed by the epoch), 1 = augmentation, 2 = hold-out.
_ORDER, _AUGMENT, _HOLDOUT = 0, 1, 2


def holdout(labels: Any, rows: Any, fraction: float, seed: int) -> tuple[Any, Any]:
    """(train rows, val rows): `fraction` of each class's `rows` held out, at least one image
    of a class always left for training. Both sorted."""
    import numpy as np

    if not 0.0 < fraction < 1.0:
        raise UsageError(
            f"--val-fraction must be between 0 and 1, not {fraction}",
            "e.g. --val-fraction 0.1, or give --val DIR",
        )
    labels = np.asarray(labels)
    rows = np.asarray(rows, dtype=np.int64)
    train: list[Any] = []
    val: list[Any] = []
    for c in np.unique(labels[rows]):
        mine = rows[labels[rows] == c]
        order = generator(seed, _HOLDOUT, int(c)).permutation(len(mine))
        n_val = min(round(len(mine) * fraction), len(mine) - 1)
        val.append(mine[order[:n_val]])
        train.append(mine[order[n_val:]])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def crop_params(
    n: int, rng: Any, min_scale: float = 0.25, flip: bool = True, ratio: tuple[float, float] = RATIO
) -> Any:
    """Affine matrices [n, 2, 3] (float32) mapping output to input coordinates in
    affine_grid's [-1, 1] convention: a random-resized crop (area share in [min_scale, 1],
    aspect ratio in `ratio`, placed uniformly inside the image) and a horizontal flip with
    probability 1/2. A crop wider or taller than the image is clipped to it (torchvision
    retries instead; at these ranges clipping only touches extreme ratios at scale ≈ 1)."""
    import numpy as np

    area = rng.uniform(min_scale, 1.0, n)
    aspect = np.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1]), n))
    w = np.minimum(np.sqrt(area * aspect), 1.0)
    h = np.minimum(np.sqrt(area / aspect), 1.0)
    cx = rng.uniform(-1.0, 1.0, n) * (1.0 - w)
    cy = rng.uniform(-1.0, 1.0, n) * (1.0 - h)
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0) if flip else np.ones(n)
    theta: Any = np.zeros((n, 2, 3), dtype=np.float32)
    theta[:, 0, 0] = w * sign
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy
    return theta


class ImageBatches:
    """Endless augmented-later training batches of one rank (see the module docstring)."""

    def __init__(
        self,
        images: Any,
        rows: Any,
        labels: Any,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        *,
        min_scale: float = 0.25,
        flip: bool = True,
    ) -> None:
        import numpy as np

        if batch_size < 1:
            raise UsageError(f"the batch size must be at least 1, not {batch_size}")
        self.images = images
        self.rows = np.asarray(rows, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)  # by cache row
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.min_scale = min_scale
        self.flip = flip
        self.order = EpochOrder(
            len(self.rows), seed, rank, world_size, "training image(s)", stream=(_ORDER,)
        )
        self.per_rank = self.order.per_rank
        self.position = 0  # images of this rank's stream consumed so far

    @property
    def epoch(self) -> int:
        return self.order.epoch_of(self.position)

    def __iter__(self) -> Iterator[tuple[tuple[Any, ...], Any]]:
        return self

    def __next__(self) -> tuple[tuple[Any, ...], Any]:
        import numpy as np
        import torch

        picked = self.rows[self.order.indices(self.position, self.batch_size)]
        # Rows in file order: the gather then reads the memmap forwards (page-cache and
        # read-ahead friendly). Which images form the batch is what the order decides.
        picked.sort()
        pixels = torch.from_numpy(np.ascontiguousarray(self.images[picked]))
        labels = torch.from_numpy(self.labels[picked])
        rng = generator(self.seed, _AUGMENT, self.rank, self.position)
        theta = torch.from_numpy(crop_params(self.batch_size, rng, self.min_scale, self.flip))
        self.position += self.batch_size
        return (pixels, theta), labels

    def state_dict(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
            "batch_size": self.batch_size,
            "images": len(self.rows),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # The image count stands for the data: another tree would give other batches.
        mine = self.state_dict()
        keys = ("seed", "world_size", "batch_size", "images")
        changed = [f"{k} {state.get(k)!r} → {mine[k]!r}" for k in keys if state.get(k) != mine[k]]
        if changed:
            raise UsageError(
                "cannot resume the data position: " + ", ".join(changed),
                "resume with the data and settings of the checkpoint, or start a new run",
            )
        self.position = int(state["position"])


class EvalSet:
    """The validation rows of a cache, in order; calling it yields one pass of batches."""

    def __init__(
        self, images: Any, rows: Any, labels: Any, ids: list[str], batch_size: int
    ) -> None:
        import numpy as np

        self.images = images
        self.rows = np.asarray(rows, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)  # by cache row
        self.ids = ids  # by cache row
        self.batch_size = batch_size

    def __len__(self) -> int:
        return len(self.rows)

    def __call__(self) -> Iterator[tuple[tuple[Any, ...], Any, list[str]]]:
        import numpy as np
        import torch

        for start in range(0, len(self.rows), self.batch_size):
            rows = self.rows[start : start + self.batch_size]
            pixels = torch.from_numpy(np.ascontiguousarray(self.images[rows]))
            yield (pixels,), torch.from_numpy(self.labels[rows]), [self.ids[r] for r in rows]

    def image(self, row: int) -> Any:
        """The cached pixels of one row, [S, S, 3] uint8 (for the mistakes grid)."""
        import numpy as np

        return np.asarray(self.images[row])
