"""The image-classify recipe end to end on a CPU: the tiny preset learns a generated task,
resumes exactly, exports a model that gives the trained logits, and bad input is one line
and exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from test_image_classify_data import make_tree

from torchrig.recipes.classify.meta import FINAL_WEIGHTS, read_meta
from torchrig.recipes.classify.task import Mistake
from torchrig.recipes.image_classify import export
from torchrig.recipes.image_classify.__main__ import main
from torchrig.recipes.image_classify.config import from_preset
from torchrig.recipes.image_classify.task import build_task
from torchrig.recipes.image_classify.train import train
from torchrig.train.checkpoint import CheckpointManager
from torchrig.train.distributed import Dist
from torchrig.train.result import RunResult
from torchrig.train.timeline import read_jsonl


def _quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tree(tmp_path_factory.mktemp("images") / "train", per_class=40)


@pytest.fixture(scope="module")
def trained(images: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    out = tmp_path_factory.mktemp("runs") / "tiny"
    cfg = from_preset("tiny", data=images, out=out, steps=30, log_every=5, tensorboard=False)
    return train(cfg, say=_quiet)


def _losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_jsonl(run / "metrics.jsonl") if "loss" in r}


def test_tiny_preset_learns_and_writes_its_outputs(trained: RunResult) -> None:
    out = trained.out
    assert trained.completed and trained.step == 30
    assert trained.evaluation is not None
    # 4 classes (chance 0.25), 16 held-out images.
    assert trained.evaluation["accuracy"] >= 0.9, trained.evaluation
    losses = _losses(out)
    assert losses[30] < 0.2 * losses[5], losses
    rec = trained.records[-1]
    assert rec["samples_per_s"] > 0 and rec["mfu"] is None  # CPU: no datasheet peak
    meta = read_meta(out / "final")
    assert meta["recipe"] == "image-classify"
    assert meta["labels"] == sorted(meta["labels"]) and len(meta["labels"]) == 4
    assert meta["model"] == {"name": "tiny-cnn", "source": "tiny", "num_classes": 4}
    assert meta["preprocess"]["image_size"] == 32 and meta["preprocess"]["resize"] == 36
    assert json.loads((out / "eval.json").read_text())["samples"] == 16
    for name in ("confusion.png", "loss.png", "final/model.safetensors"):
        assert (out / name).stat().st_size > 0, name
    assert list((out / "cache").glob("train-*-36px.u8"))


def test_export_rebuilds_the_trained_model(trained: RunResult, images: Path) -> None:
    """build_model + final/model.safetensors give the logits of the trained model."""
    from safetensors.torch import load_model

    final = trained.out / "final"
    meta = read_meta(final)
    rebuilt = export.build_model(meta, final)
    load_model(rebuilt, str(final / FINAL_WEIGHTS))
    rebuilt.eval()
    (pixels,), names, axes = export.export_inputs(meta, final, 3)
    assert pixels.shape == (3, 3, 32, 32) and pixels.dtype == torch.float32
    assert names == ["pixels"] and axes == {"pixels": {0: "batch"}}

    # The trained weights, as the last checkpoint holds them, in the recipe's own model.
    cfg = from_preset("tiny", data=images, out=trained.out)
    task = build_task(cfg, Dist(0, 0, 1, torch.device("cpu"), "gloo"), _quiet)
    latest = CheckpointManager(trained.out / "checkpoints").latest()
    assert latest is not None and latest.step == 30
    task.model.load_state_dict(CheckpointManager.load(latest, "model"))
    task.model.eval()
    ids: list[str] = []
    with torch.no_grad():
        for inputs, _, batch_ids in task.evaluate():
            ids += batch_ids
            x = task.prepare(inputs, False)[0]
            torch.testing.assert_close(rebuilt(x), task.model(x), rtol=0, atol=0)
        assert not torch.equal(rebuilt(pixels), export.build_model(meta, final).eval()(pixels))

    # The mistakes grid of this task, drawn from its cache.
    assert task.report_mistakes is not None and len(ids) == 16
    task.report_mistakes([Mistake(ids[0], 0, 1, 0.9), Mistake(ids[5], 2, 3, 0.4)], trained.out)
    assert (trained.out / "mistakes.png").read_bytes()[:4] == b"\x89PNG"


def _model_state(run: Path) -> dict[str, Any]:
    latest = CheckpointManager(run / "checkpoints").latest()
    assert latest is not None
    state: dict[str, Any] = CheckpointManager.load(latest, "model")
    return state


def test_resume_continues_exactly(images: Path, tmp_path: Path) -> None:
    """12 steps straight == 6 steps, stop, resume, 6 steps: the same loss at every step and
    bit-identical parameters (batch order, crops and flips all come back)."""
    common: dict[str, Any] = {
        "data": images, "steps": 12, "log_every": 1, "ckpt_every": 100, "export": False,
        "tensorboard": False, "cache": tmp_path / "cache",
    }  # fmt: skip
    straight = train(from_preset("tiny", out=tmp_path / "straight", **common), say=_quiet)
    assert straight.completed
    first = train(from_preset("tiny", out=tmp_path / "split", stop_after=6, **common), say=_quiet)
    assert first.step == 6 and first.stopped and not first.completed
    second = train(from_preset("tiny", out=tmp_path / "split", resume=True, **common), say=_quiet)
    assert second.start_step == 6 and second.completed
    assert _losses(tmp_path / "split") == _losses(tmp_path / "straight")
    a, b = _model_state(tmp_path / "straight"), _model_state(tmp_path / "split")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ") and " — " in err[0] and "Traceback" not in err[0]
    return err[0]


def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(*args: str) -> int:
        return main([*args, "--out", str(tmp_path / "run"), "--steps", "2", "--no-tensorboard"])

    assert run("--data", str(tmp_path / "nope")) == 2
    assert "does not exist" in (line := _one_error_line(capsys)) and "--data" in line

    root = make_tree(tmp_path / "train", per_class=10)
    (root / "zebra").mkdir()
    assert run("--data", str(root)) == 2
    assert "class folder" in (line := _one_error_line(capsys)) and "zebra" in line
    (root / "zebra").rmdir()

    val = make_tree(tmp_path / "val", per_class=1)
    (val / "red-vertical").rename(val / "green")
    assert run("--data", str(root), "--val", str(val)) == 2
    assert "label 'green' is unseen in training" in _one_error_line(capsys)

    assert main(["--preset", "huge", "--data", str(root), "--out", str(tmp_path / "x")]) == 2
    assert "unknown preset 'huge'" in _one_error_line(capsys)
    assert run("--data", str(root), "--model", "timm:nothing-here") == 2
    assert "timm" in _one_error_line(capsys)  # not importable here, or no such model


def test_a_corrupt_image_is_skipped_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_tree(tmp_path / "train", per_class=10)
    good = (root / "blue-vertical" / "000.jpg").read_bytes()
    (root / "blue-vertical" / "broken.jpg").write_bytes(good[:200])
    args = ["--data", str(root), "--out", str(tmp_path / "run"), "--steps", "2"]
    assert main([*args, "--no-tensorboard", "--no-export"]) == 0
    out = capsys.readouterr()
    notes = [line for line in out.out.splitlines() if "unreadable" in line]
    assert len(notes) == 1, out.out
    assert "skipped 1 unreadable image(s) of 41" in notes[0]
    assert "blue-vertical/broken.jpg" in notes[0]
    assert "Traceback" not in out.err


@pytest.mark.parametrize("fmt", ["onnx", "exported-program", "torchscript"])
def test_export_model_in_every_format_matches_pytorch(
    trained: RunResult, tmp_path: Path, fmt: str
) -> None:
    from torchrig.model_export.run import export_model

    result = export_model(trained.out, fmt, tmp_path / f"model-{fmt}")
    assert result.recipe == "image-classify" and result.inputs == ["pixels"]
    assert result.path.stat().st_size > 0 and result.max_abs_diff < 1e-3
    sidecar = json.loads(result.sidecar.read_text())
    assert sidecar["preprocess"]["mean"] and sidecar["export"]["check"]["passed"]
