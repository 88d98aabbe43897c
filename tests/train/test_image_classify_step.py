"""The image recipe's training step as the GPU runs it (issue 18, item 3), checked on a
CPU: the augmentation is compiled into the step (one graph with the model and the loss, no
break), it stays fp32 under the step's bf16 autocast, the loop hands the raw uint8 batch to
the step, and the task's batches allow CUDA graphs. The speed itself is measured on a GPU
(benchmarks/train_image_classify.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_image_classify_data import make_tree

from torchrig.recipes.classify import loop
from torchrig.recipes.classify.config import ClassifyConfig
from torchrig.recipes.image_classify import augment, models
from torchrig.recipes.image_classify.config import from_preset
from torchrig.recipes.image_classify.data import crop_params
from torchrig.recipes.image_classify.task import build_task
from torchrig.recipes.image_classify.train import train
from torchrig.train.distributed import Dist


def _batch(n: int = 6, size: int = 36, seed: int = 0) -> tuple[Any, Any, Any]:
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=g)
    theta = torch.from_numpy(crop_params(n, np.random.default_rng(seed)))
    labels = torch.randint(0, 4, (n,), generator=g)
    return pixels, theta, labels


def _quiet(_: str) -> None:
    pass


def test_augmentation_stays_fp32_under_the_steps_bf16_autocast() -> None:
    # The step runs under bf16 autocast; affine_grid's matmul would follow it and sample
    # at positions rounded to 8 mantissa bits (up to a pixel off at 256 px).
    pixels, theta, _ = _batch(size=256)
    exact = augment.train_transform(pixels, theta, 224)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = augment.train_transform(pixels, theta, 224)
    assert under.dtype == torch.float32
    torch.testing.assert_close(under, exact, atol=1e-5, rtol=0)


def test_the_step_with_its_augmentation_compiles_as_one_graph() -> None:
    # The loss module as the loop builds it for a prepare_in_step task, traced whole: a
    # graph break would split the step (no fusion of the augmentation, and on CUDA the
    # graph replay would stop at the break). Dynamo only (backend "eager"): the trace is
    # what is checked here, the generated kernels run on the GPU.
    torch.manual_seed(0)
    model = models.build("tiny-cnn", 4)
    prepare = augment.make_prepare(32)
    step = loop.ClassifierLoss(model, None, 0.1, prepare)
    pixels, theta, labels = _batch()
    eager = step(labels, pixels, theta)
    torch._dynamo.reset()
    compiled = torch.compile(step, backend="eager", fullgraph=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        traced = compiled(labels, pixels, theta)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reference = loop.ClassifierLoss(model, None, 0.1)(labels, *prepare((pixels, theta), True))
    torch.testing.assert_close(traced, reference)
    # The same loss as preparing first and calling the plain loss module (fp32).
    plain = loop.ClassifierLoss(model, None, 0.1)(labels, *prepare((pixels, theta), True))
    torch.testing.assert_close(eager, plain)
    torch._dynamo.reset()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(make_tree(tmp_path_factory.mktemp("images") / "train", per_class=12))


def test_image_task_runs_its_augmentation_in_the_step_and_allows_cuda_graphs(
    images: Path, tmp_path: Path
) -> None:
    cfg = from_preset("tiny", data=images, out=tmp_path / "run", micro_batch=8)
    cpu = Dist(0, 0, 1, torch.device("cpu"), "gloo")
    task = build_task(cfg, cpu, _quiet)
    assert task.prepare_in_step and task.static_shapes
    cuda = Dist(0, 0, 1, torch.device("cuda"), "nccl")
    assert loop._cuda_graphs(ClassifyConfig(), task, cuda, "none", compiled=True)
    # Fixed shapes across epoch boundaries: 40 training images, batches of 8 and 3 epochs.
    shapes = set()
    for _ in range(15):
        (pixels, theta), labels = next(task.train)
        shapes.add((tuple(pixels.shape), pixels.dtype, tuple(theta.shape), tuple(labels.shape)))
    assert len(shapes) == 1, shapes


def test_the_loop_hands_the_raw_batch_to_the_step(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What reaches the (compiled) step is the uint8 batch and its crop parameters: the
    # augmentation is not run a second time, eagerly, before it.
    seen: list[tuple[torch.dtype, ...]] = []
    forward = loop.ClassifierLoss.forward

    def spy(self: Any, labels: Any, *inputs: Any) -> Any:
        seen.append(tuple(t.dtype for t in inputs))
        return forward(self, labels, *inputs)

    monkeypatch.setattr(loop.ClassifierLoss, "forward", spy)
    cfg = from_preset(
        "tiny", data=images, out=tmp_path / "run", steps=3, log_every=1, tensorboard=False,
        export=False,
    )  # fmt: skip
    result = train(cfg, say=_quiet)
    assert result.completed
    assert seen == [(torch.uint8, torch.float32)] * 3
