"""A made-up classification task for the shared loop and export tests: three Gaussian
blobs, a small MLP, resumable batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from torchrig.recipes.classify.config import ClassifyConfig
from torchrig.recipes.classify.task import ClassifyTask, EvalBatch
from torchrig.train.distributed import Dist

LABELS = ["north", "east", "south"]
CENTRES = torch.tensor([[0.0, 3.0], [3.0, 0.0], [0.0, -3.0]])


def _blobs(n: int, seed: int, counts: tuple[int, ...] = (1, 1, 1)) -> tuple[Any, Any]:
    g = torch.Generator().manual_seed(seed)
    share = torch.tensor(counts, dtype=torch.float64)
    y = torch.multinomial(share / share.sum(), n, replacement=True, generator=g)
    x = CENTRES[y] + torch.randn(n, 2, generator=g)
    return x, y


class Batches:
    """Endless, resumable: batch k is a pure function of (seed, k)."""

    def __init__(self, x: Any, y: Any, batch: int, seed: int) -> None:
        self.x, self.y, self.batch, self.seed, self.k = x, y, batch, seed, 0

    def __iter__(self) -> Batches:
        return self

    def __next__(self) -> tuple[tuple[Any, ...], Any]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.k)
        idx = torch.randint(0, len(self.y), (self.batch,), generator=g)
        self.k += 1
        return (self.x[idx],), self.y[idx]

    def state_dict(self) -> dict[str, Any]:
        return {"k": self.k}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.k = int(state["k"])


def blob_task(counts: tuple[int, ...] = (1, 1, 1)) -> Any:
    def build(dist: Dist, work: Path) -> ClassifyTask:
        torch.manual_seed(0)
        x, y = _blobs(600, 1, counts)
        vx, vy = _blobs(150, 2)
        model = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))

        def evaluate() -> list[EvalBatch]:
            return [((vx[i : i + 50],), vy[i : i + 50], [f"row {j}" for j in range(i, i + 50)])
                    for i in range(0, 150, 50)]  # fmt: skip

        return ClassifyTask(
            recipe="test-blobs", model=model, labels=LABELS, train=Batches(x, y, 16, 7),
            evaluate=evaluate, train_counts=[int((y == c).sum()) for c in range(3)],
            meta={"model": {"hidden": 16}, "preprocess": {}},
        )  # fmt: skip

    return build


def blob_cfg(out: Path, **kw: Any) -> ClassifyConfig:
    base: dict[str, Any] = dict(out=out, steps=40, lr=0.05, warmup=2, log_every=5,
                                ckpt_every=20, device="cpu", tensorboard=False)  # fmt: skip
    return ClassifyConfig(**{**base, **kw})


def quiet(_: str) -> None:
    pass
