"""What a run leaves for people to look at: metrics.jsonl marks a resume, TensorBoard files
evaluations under val/ and shows each step once after a resume, loss.png has a legend, and
report.html holds the curves, the evaluation and the config."""

from __future__ import annotations

import json
from pathlib import Path

from torchrig.train.metrics import MetricsLog, plot_loss
from torchrig.train.report import render, write_report
from torchrig.train.timeline import read_history, read_jsonl


def _tb_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {
        tag: [(e.step, round(e.value, 6)) for e in acc.Scalars(tag)]
        for tag in acc.Tags()["scalars"]
    }


def _crash_and_resume(out: Path) -> None:
    """Steps 1-8 logged, checkpoint at 5, a crash; the resume retrains 6-8 (other losses)."""
    first = MetricsLog(out, enabled=True)
    for step in range(1, 9):
        first.write({"step": step, "loss": 10.0 - step, "lr": 0.1})
        if step == 5:
            first.write({"event": "checkpoint", "step": 5, "seconds": 0.5})
            first.write({"event": "eval", "step": 5, "accuracy": 0.5, "seconds": 1.0})
    first.close()  # (a crash closes nothing; the file is flushed line by line either way)
    second = MetricsLog(out, enabled=True, resumed_from=5)
    for step in range(6, 11):
        second.write({"step": step, "loss": 1.0 / step, "lr": 0.05})
    second.write({"event": "eval", "step": 10, "accuracy": 0.9, "seconds": 1.0})
    second.close()


def test_a_resume_is_marked_and_supersedes_the_steps_after_its_checkpoint(tmp_path: Path) -> None:
    _crash_and_resume(tmp_path)
    records = read_jsonl(tmp_path / "metrics.jsonl")
    resumes = [r for r in records if r.get("event") == "resume"]
    assert len(resumes) == 1 and resumes[0]["step"] == 5
    assert all(isinstance(r.get("time"), float) for r in records)
    hist = read_history(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in hist.train] == list(range(1, 11))
    assert [r["loss"] for r in hist.train][5:] == [1.0 / s for s in range(6, 11)]
    assert [(r["step"], r["accuracy"]) for r in hist.evals] == [(5, 0.5), (10, 0.9)]


def test_tensorboard_has_each_step_once_and_evaluations_under_val(tmp_path: Path) -> None:
    _crash_and_resume(tmp_path)
    scalars = _tb_scalars(tmp_path / "tensorboard")
    loss = scalars["train/loss"]
    assert [s for s, _ in loss] == list(range(1, 11))  # 6-8 once, the resumed run's
    assert dict(loss)[7] == round(1.0 / 7, 6)
    assert scalars["val/accuracy"] == [(5, 0.5), (10, 0.9)]
    assert not any(tag.startswith("train/") and "accuracy" in tag for tag in scalars)
    assert not any("seconds" in tag for tag in scalars)  # checkpoint durations are no curve


def test_loss_png_and_report_are_written(tmp_path: Path) -> None:
    _crash_and_resume(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"recipe": "test", "steps": 10}))
    (tmp_path / "eval.json").write_text(json.dumps({
        "step": 10, "accuracy": 0.9, "per_class": {"cat": {"precision": 1.0, "recall": 0.8,
        "f1": 0.89, "support": 5}}, "mistakes": [{"id": "img-7.png", "true": "cat",
        "predicted": "dog", "confidence": 0.97}],
    }))  # fmt: skip
    png = plot_loss(tmp_path / "metrics.jsonl", tmp_path / "loss.png")
    assert png is not None and png.read_bytes()[:4] == b"\x89PNG"
    page = write_report(tmp_path, env={"torch": "x"}).read_text()
    # Curves: loss/lr and validation (accuracy) as inline SVG; no throughput (none logged).
    assert page.count("<svg") == 2
    assert "Loss and learning rate" in page and "Validation" in page
    assert "img-7.png" in page and "cat" in page and "&quot;recipe&quot;: &quot;test&quot;" in page
    assert "at step 5" in page  # the resume, in the summary
    assert 'src="http' not in page and 'href="http' not in page  # nothing to fetch


def test_a_run_with_no_log_line_yet_still_renders(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text("")
    page = render(tmp_path, env={})
    assert "No training log lines yet" in page and "<svg" not in page
