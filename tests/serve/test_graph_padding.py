"""The padding CUDA graphs serve through (serve/graphs.py) must not change a real row's
logits: checked here on the CPU with the trained tiny classifiers, where the padded call is
run eagerly; the graphs themselves need a GPU (benchmarks/serve.py measures them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchrig.serve import classifier
from torchrig.serve.graphs import Padding, bucket_sizes, smallest_fit


def test_buckets_are_powers_of_two_up_to_the_limit() -> None:
    assert bucket_sizes(32) == [1, 2, 4, 8, 16, 32]
    assert bucket_sizes(24) == [1, 2, 4, 8, 16, 24]
    assert bucket_sizes(128, 16) == [16, 32, 64, 128]
    assert bucket_sizes(10, 16) == [10]
    assert bucket_sizes(1) == [1]
    assert smallest_fit([16, 32, 64], 17) == 32
    assert smallest_fit([16, 32, 64], 65) is None


def _logits(model: classifier.Classifier, inputs: tuple[object, ...]) -> object:
    import torch

    with torch.inference_mode():
        return model.model(*(torch.as_tensor(x) for x in inputs))


def test_padded_text_rows_give_the_same_logits(text_run: Path) -> None:
    import torch

    model = classifier.load(text_run, device="cpu")
    texts = ["refund my order please", "password locked", "where is my parcel now today"]
    inputs = model._inputs(texts)
    pad = model.tokenizer.pad_token_id
    padding = Padding((pad, 0), mask_index=1, has_length=True)
    padded = padding.pad(inputs, batch=8, length=32)
    assert padded[0].shape == (8, 32) and padded[1].shape == (8, 32)
    assert padded[1][3:, 0].tolist() == [1] * 5 and int(padded[1][3:, 1:].sum()) == 0
    before, after = _logits(model, inputs), _logits(model, padded)
    assert torch.isfinite(after).all()
    torch.testing.assert_close(after[:3], before, rtol=1e-4, atol=1e-5)


def test_padded_image_rows_give_the_same_logits(image_run: Path) -> None:
    import numpy as np
    import torch

    model = classifier.load(image_run, device="cpu")
    size = int(model.meta["preprocess"]["resize"])
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(3)]
    inputs = model._inputs(images)
    padded = Padding((0.0,)).pad(inputs, batch=4, length=None)
    assert padded[0].shape[0] == 4 and padded[0].shape[1:] == inputs[0].shape[1:]
    torch.testing.assert_close(_logits(model, padded)[:3], _logits(model, inputs))


def test_graphs_say_why_they_are_off_on_a_cpu(text_run: Path) -> None:
    model = classifier.load(text_run, device="cpu")
    said = model.use_cuda_graphs(32)
    assert said == "CUDA graphs: off (they need the PyTorch model on a GPU)"
    assert model.predict([model.prepare("refund please")])[0]["label"] in model.labels


@pytest.mark.parametrize("texts", [["a"], ["refund " * 200]])
def test_long_and_short_texts_fit_a_length_bucket_after_truncation(
    text_run: Path, texts: list[str]
) -> None:
    model = classifier.load(text_run, device="cpu")
    inputs = model._inputs(texts)
    max_length = int(model.meta["preprocess"].get("max_length", 128))
    lengths = bucket_sizes(max_length, min(16, max_length))
    assert smallest_fit(lengths, int(inputs[0].shape[1])) is not None  # truncation keeps it in
