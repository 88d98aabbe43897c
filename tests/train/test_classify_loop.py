"""The shared classification loop on a made-up task (Gaussian blobs, a small MLP): it
learns, evaluates, writes its outputs, weighs classes, resumes exactly, and its evaluation
numbers are right on hand-made cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from blobs import LABELS, blob_cfg, blob_task, quiet

from torchrig.errors import UsageError
from torchrig.recipes.classify import evaluate as E
from torchrig.recipes.classify.loop import run
from torchrig.recipes.classify.meta import read_meta
from torchrig.train.checkpoint import CheckpointManager
from torchrig.train.timeline import read_jsonl


def test_learns_evaluates_and_writes_its_outputs(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run(blob_cfg(out), blob_task(), say=quiet)
    assert result.completed and result.step == 40
    assert result.evaluation is not None and result.evaluation["accuracy"] > 0.9
    saved = json.loads((out / "eval.json").read_text())
    assert saved["accuracy"] == result.evaluation["accuracy"] and saved["samples"] == 150
    assert set(saved["per_class"]) == set(LABELS)
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    meta = read_meta(out / "final")
    assert meta["recipe"] == "test-blobs" and meta["labels"] == LABELS and meta["step"] == 40
    assert meta["evaluation"]["accuracy"] == saved["accuracy"]
    assert read_meta(out)["model"] == {"hidden": 16}
    assert json.loads((out / "config.json").read_text())["recipe"] == "test-blobs"
    from safetensors.torch import load_file

    weights = load_file(out / "final" / "model.safetensors")
    assert set(weights) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    losses = [r["loss"] for r in read_jsonl(out / "metrics.jsonl") if "loss" in r]
    assert losses[-1] < 0.5 * losses[0]
    assert all(r["samples_per_s"] > 0 for r in result.records)


def test_resume_continues_exactly(tmp_path: Path) -> None:
    straight = run(blob_cfg(tmp_path / "a"), blob_task(), say=quiet)
    first = run(blob_cfg(tmp_path / "b", stop_after=20), blob_task(), say=quiet)
    assert first.stopped and first.step == 20 and not first.completed
    second = run(blob_cfg(tmp_path / "b", resume=True), blob_task(), say=quiet)
    assert second.start_step == 20 and second.completed

    def losses(run_dir: Path) -> dict[int, float]:
        return {r["step"]: r["loss"] for r in read_jsonl(run_dir / "metrics.jsonl") if "loss" in r}

    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    a = CheckpointManager.load(CheckpointManager(tmp_path / "a" / "checkpoints").latest(), "model")  # type: ignore[arg-type]
    b = CheckpointManager.load(CheckpointManager(tmp_path / "b" / "checkpoints").latest(), "model")  # type: ignore[arg-type]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert straight.evaluation == second.evaluation


def test_balanced_weights_help_the_rare_class(tmp_path: Path) -> None:
    counts = (20, 20, 1)  # "south" is 1 sample in 41
    plain = run(blob_cfg(tmp_path / "plain", steps=30), blob_task(counts), say=quiet)
    weighted = run(
        blob_cfg(tmp_path / "w", steps=30, class_weights="balanced"), blob_task(counts), say=quiet
    )
    assert plain.evaluation and weighted.evaluation
    rare_plain = plain.evaluation["per_class"]["south"]["recall"]
    rare_weighted = weighted.evaluation["per_class"]["south"]["recall"]
    assert rare_weighted > rare_plain


def test_existing_run_needs_resume(tmp_path: Path) -> None:
    run(blob_cfg(tmp_path / "r", steps=20), blob_task(), say=quiet)
    with pytest.raises(UsageError, match="already has checkpoints"):
        run(blob_cfg(tmp_path / "r", steps=20), blob_task(), say=quiet)


def test_report_on_a_hand_made_case() -> None:
    true = [0, 0, 0, 1, 1, 2]
    pred = [0, 0, 1, 1, 1, 1]
    matrix = E.confusion_matrix(true, pred, 3)
    assert matrix == [[2, 1, 0], [0, 2, 0], [0, 1, 0]]
    rep = E.report(matrix, ["a", "b", "c"])
    assert rep["accuracy"] == pytest.approx(4 / 6, abs=1e-6)
    assert rep["per_class"]["a"] == {"precision": 1.0, "recall": pytest.approx(2 / 3, abs=1e-6),
                                     "f1": 0.8, "support": 3}  # fmt: skip
    assert rep["per_class"]["b"]["precision"] == 0.5 and rep["per_class"]["b"]["recall"] == 1.0
    assert rep["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert rep["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 0.0) / 3, abs=1e-6)
    assert "macro-F1 0." in E.format_report(rep)


def test_balanced_class_weights() -> None:
    assert E.class_weights([10, 10]) == [1.0, 1.0]
    w = E.class_weights([30, 10, 0])
    assert w == [40 / 60, 40 / 20, 0.0]
    # Averaged over the samples, balanced weights are 1.
    assert (30 * w[0] + 10 * w[1]) / 40 == pytest.approx(1.0)


def test_bad_settings_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--class-weights"):
        run(blob_cfg(tmp_path / "x", class_weights="inverse"), blob_task(), say=quiet)
    with pytest.raises(UsageError, match="--steps"):
        run(blob_cfg(tmp_path / "x", steps=0), blob_task(), say=quiet)
    assert not (tmp_path / "x").exists()
