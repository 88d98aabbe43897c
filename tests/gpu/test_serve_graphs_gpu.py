"""A classifier served through CUDA graphs (serve/graphs.py) on a real GPU predicts what the
eager model predicts: texts of every length bucket, batches of every size up to the
graphs' largest and beyond it (the eager fallback inside GraphedClassifier), and images.

The graphs run under bf16 autocast where the GPU has it, the eager model in fp32: the
probabilities agree to bf16's precision, and the label wherever the model is not near a tie.

    PYTHONPATH=src python -m pytest tests/gpu/test_serve_graphs_gpu.py -q
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.serve.conftest import image_run, text_run  # noqa: F401 (fixtures)
from torchrig.serve import classifier

pytestmark = pytest.mark.gpu

TOLERANCE = 0.02  # bf16 against fp32, on probabilities


def _agree(eager: list[dict[str, Any]], graphed: list[dict[str, Any]]) -> None:
    assert len(eager) == len(graphed)
    for want, got in zip(eager, graphed, strict=True):
        labels = list(want["probabilities"])
        gaps = [abs(want["probabilities"][x] - got["probabilities"][x]) for x in labels]
        assert max(gaps) <= TOLERANCE, (want, got)
        ranked = sorted(want["probabilities"].values(), reverse=True)
        if ranked[0] - ranked[1] > 2 * TOLERANCE:
            assert got["label"] == want["label"], (want, got)
        assert got["top_k"][0]["label"] == got["label"]


def test_graphed_text_classifier_predicts_what_the_eager_one_does(text_run: Path) -> None:  # noqa: F811
    eager = classifier.load(text_run, device="cuda")
    graphed = classifier.load(text_run, device="cuda")
    said = graphed.use_cuda_graphs(8)
    assert said.startswith("CUDA graphs: on"), said
    words = "refund password parcel invoice locked late charge please help my".split()  # noqa: SIM905
    texts = [" ".join(words[: 1 + i % len(words)] * (1 + i)) for i in range(11)]  # 1 … 100+ words
    for size in (1, 3, 8, 11):  # 11 > the largest graph (8): the eager fallback
        batch = [eager.prepare(t) for t in texts[:size]]
        _agree(eager.predict(batch, top_k=3), graphed.predict(batch, top_k=3))


def test_graphed_image_classifier_predicts_what_the_eager_one_does(image_run: Path) -> None:  # noqa: F811
    import numpy as np

    eager = classifier.load(image_run, device="cuda")
    graphed = classifier.load(image_run, device="cuda")
    assert graphed.use_cuda_graphs(4).startswith("CUDA graphs: on")
    size = int(eager.meta["preprocess"]["resize"])
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(5)]
    for count in (1, 3, 5):
        _agree(eager.predict(images[:count]), graphed.predict(images[:count]))
