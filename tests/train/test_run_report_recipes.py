"""The recipes' runs leave report.html, mark a resume in metrics.jsonl with no step drawn twice
(plots, TensorBoard), file evaluations under TensorBoard's val/, and the causal LM measures a
held-out loss and perplexity with --val-fraction."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from blobs import blob_cfg, blob_task, quiet

from torchrig.recipes.causal_lm.__main__ import main as lm_main
from torchrig.recipes.causal_lm.config import from_preset
from torchrig.recipes.causal_lm.train import train
from torchrig.recipes.classify.loop import run
from torchrig.train.timeline import read_history, read_jsonl


def _tb(folder: Path) -> dict[str, list[int]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    # Sorted by step: the reader takes event files in name order, and two writers of one
    # process in one second are named by a counter, where "...9" sorts after "...10".
    return {tag: sorted(e.step for e in acc.Scalars(tag)) for tag in acc.Tags()["scalars"]}


def test_a_resumed_classifier_run_is_marked_and_reported(tmp_path: Path) -> None:
    out = tmp_path / "run"
    common = {"eval_every": 10, "tensorboard": True, "log_every": 5}
    run(blob_cfg(out, stop_after=20, **common), blob_task(), say=quiet)
    # The crash a resume recovers from: log lines past the last checkpoint, then gone.
    with (out / "metrics.jsonl").open("a") as log:
        log.write(json.dumps({"step": 25, "loss": 99.0, "lr": 0.01}) + "\n")
    run(blob_cfg(out, resume=True, **common), blob_task(), say=quiet)
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in records if r.get("event") == "resume"] == [20]
    hist = read_history(out / "metrics.jsonl")
    steps = [r["step"] for r in hist.train]
    assert steps == sorted(set(steps)) and 99.0 not in [r["loss"] for r in hist.train]
    assert [r["step"] for r in hist.evals] == [10, 20, 30, 40]
    tags = _tb(out / "tensorboard")
    assert tags["train/loss"] == sorted(set(tags["train/loss"]))  # each step once
    assert tags["val/accuracy"] == [10, 20, 30, 40]
    page = (out / "report.html").read_text()
    assert "Confusion matrix" in page and "at step 20" in page and page.count("<svg") == 3


def test_causal_lm_measures_held_out_loss_and_perplexity(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "lm"
    common = {"data": [corpus], "out": out, "steps": 20, "log_every": 5, "val_fraction": 0.1,
              "eval_every": 10}  # fmt: skip
    train(from_preset("tiny", stop_after=10, **common), say=quiet)
    train(from_preset("tiny", resume=True, **common), say=quiet)  # (its token file is remade)
    evals = read_history(out / "metrics.jsonl").evals
    assert [e["step"] for e in evals] == [10, 20]
    for e in evals:
        assert e["perplexity"] == pytest.approx(math.exp(e["val_loss"]), rel=1e-3)
    assert evals[1]["val_loss"] < evals[0]["val_loss"]  # it learns what it never saw
    assert _tb(out / "tensorboard")["val/perplexity"] == [10, 20]
    page = (out / "report.html").read_text()
    assert "val perplexity" in page and "val loss" in page


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--val-fraction", "0.7"], "--val-fraction must be at least 0 and below 0.5"),
        (["--val-fraction", "0.1", "--eval-every", "-1"], "--eval-every must be 0 or more"),
    ],
)
def test_bad_held_out_settings_are_one_line(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], says: str
) -> None:
    out = tmp_path / "x"
    assert lm_main(["--preset", "tiny", "--data", str(corpus), "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1 and not out.exists()


def test_held_out_tokens_need_pretraining_data(
    tmp_path: Path, sft_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--preset", "tiny", "--sft", str(sft_data), "--out", str(tmp_path / "x"),
            "--val-fraction", "0.1"]  # fmt: skip
    assert lm_main(argv) == 2
    assert "--val-fraction holds out pretraining tokens" in capsys.readouterr().err
