"""The text-classify recipe end to end on a CPU: the tiny preset learns generated ticket
intents, resumes exactly, reports bad input in one line with exit 2, and what it saves
rebuilds (export.build_model) into the model it trained, with the saved tokenizer and
classifier.json's preprocessing reproducing its evaluation."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from test_text_classify_data import make_tickets, ticket_rows, write_rows

from torchrig.errors import UsageError
from torchrig.recipes.classify.meta import read_meta
from torchrig.recipes.text_classify import export as export_mod
from torchrig.recipes.text_classify.__main__ import main
from torchrig.recipes.text_classify.config import from_preset
from torchrig.recipes.text_classify.train import build_task, train
from torchrig.train.checkpoint import CheckpointManager
from torchrig.train.distributed import Dist
from torchrig.train.timeline import read_jsonl


def _quiet(_: str) -> None:
    pass


def _losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_jsonl(run / "metrics.jsonl") if "loss" in r}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tickets")
    return {
        "train_csv": make_tickets(folder / "train.csv", n=800, seed=0),
        "val_csv": make_tickets(folder / "val.csv", n=120, seed=1),
        "train_jsonl": make_tickets(folder / "train.jsonl", n=400, seed=2),
    }


@pytest.fixture(scope="module")
def trained(data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The tiny preset as a person runs it: train.csv, a separate val.csv, defaults."""
    out = tmp_path_factory.mktemp("run") / "tiny"
    lines: list[str] = []
    cfg = from_preset(
        "tiny", data=data["train_csv"], val=data["val_csv"], out=out, tensorboard=False
    )
    result = train(cfg, say=lines.append)
    return {"out": out, "result": result, "lines": lines}


def test_tiny_preset_learns_and_writes_its_outputs(trained: dict[str, Any]) -> None:
    out, result = trained["out"], trained["result"]
    assert result.completed and result.step == 60 and result.stopped is None
    # 4 balanced classes: chance is 0.25. The keywords make the task easy for a model
    # that learnt them; filler words and shared items keep it from being a lookup.
    assert result.evaluation["accuracy"] > 0.8, result.evaluation
    assert result.evaluation["samples"] == 120
    losses = _losses(out)
    assert losses[60] < 0.5 * losses[10], losses
    assert result.records[-1]["mfu"] is None  # CPU: no datasheet peak
    meta = read_meta(out / "final")
    assert meta["recipe"] == "text-classify"
    assert meta["labels"] == ["cancel", "password reset", "refund", "shipping delay"]
    assert meta["preprocess"]["max_length"] == 32 and meta["preprocess"]["lowercase"] is True
    assert meta["model"]["config"]["id2label"]["2"] == "refund"
    assert (out / "final" / "model.safetensors").is_file()
    assert json.loads((out / "eval.json").read_text())["accuracy"] == result.evaluation["accuracy"]
    assert (out / "data" / "train.npz").is_file() and (out / "data" / "val.npz").is_file()
    text = "\n".join(trained["lines"])
    assert "tokenizer: " in text and "WordPiece on the training texts" in text
    assert "800 training sequences" in text


def test_the_saved_tokenizer_and_preprocessing_reproduce_the_evaluation(
    trained: dict[str, Any], data: dict[str, Path]
) -> None:
    """What a server does: classifier.json + final/ only. Rebuild the module, load the
    weights, tokenize val.csv as "preprocess" says: the same accuracy as eval.json."""
    from safetensors.torch import load_model
    from transformers import AutoTokenizer

    final = trained["out"] / "final"
    meta = read_meta(final)
    model = export_mod.build_model(meta, final)
    load_model(model, str(final / "model.safetensors"))
    pre = meta["preprocess"]
    tok = AutoTokenizer.from_pretrained(final / pre["tokenizer"], local_files_only=True)
    with data["val_csv"].open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    enc = tok([r["text"] for r in rows], truncation=True, max_length=pre["max_length"],
              padding="max_length", return_tensors="pt")  # fmt: skip
    with torch.no_grad():
        logits = model(enc["input_ids"], enc["attention_mask"])
    predicted = [meta["labels"][i] for i in logits.argmax(-1).tolist()]
    accuracy = sum(p == r["label"] for p, r in zip(predicted, rows, strict=True)) / len(rows)
    assert accuracy == pytest.approx(meta["evaluation"]["accuracy"], abs=1e-9)


def test_build_model_and_export_inputs_round_trip(trained: dict[str, Any]) -> None:
    """build_model + final/model.safetensors == the last checkpoint's weights: the same
    logits; export_inputs fits the module, with a real padding mask and dynamic axes."""
    from safetensors.torch import load_model

    out = trained["out"]
    meta = read_meta(out / "final")
    from_final = export_mod.build_model(meta, out / "final")
    load_model(from_final, str(out / "final" / "model.safetensors"))
    from_ckpt = export_mod.build_model(read_meta(out), out)
    latest = CheckpointManager(out / "checkpoints").latest()
    assert latest is not None and latest.step == 60
    from_ckpt.load_state_dict(CheckpointManager.load(latest, "model"))
    inputs, names, axes = export_mod.export_inputs(meta, out / "final", batch=3)
    ids, mask = inputs
    assert names == ["input_ids", "attention_mask"]
    assert axes == {n: {0: "batch", 1: "sequence"} for n in names}
    assert ids.shape == mask.shape == (3, 32) and ids.dtype == mask.dtype == torch.int64
    assert mask[0].all() and not mask[2].all()
    with torch.no_grad():
        a, b = from_final(*inputs), from_ckpt(*inputs)
    assert isinstance(a, torch.Tensor) and a.shape == (3, 4)
    assert torch.equal(a, b)
    # Untrained, the logits differ: the comparison above compares weights, not shapes.
    with torch.no_grad():
        assert not torch.equal(export_mod.build_model(meta, out)(*inputs), a)


@pytest.mark.parametrize("fmt", ["onnx", "exported-program", "torchscript"])
def test_export_model_writes_a_checked_file(
    trained: dict[str, Any], tmp_path: Path, fmt: str
) -> None:
    """Through `torchrig export-model`'s machinery: traced at batch 2, checked at batch 3
    against PyTorch (ONNX in onnxruntime; the padding mask goes through every format)."""
    from torchrig.model_export.run import export_model

    done = export_model(trained["out"] / "final", fmt, tmp_path / f"model-{fmt}")
    assert done.recipe == "text-classify" and done.inputs == ["input_ids", "attention_mask"]
    assert done.max_abs_diff <= done.atol + 1e-3 and done.bytes > 0


def test_resume_continues_exactly(
    data: dict[str, Path], trained: dict[str, Any], tmp_path: Path
) -> None:
    """12 steps straight == 6 steps, stop, resume, 6 steps (JSONL, hold-out, a given
    tokenizer): the same loss at every step and bit-identical parameters. Dropout is on
    (BERT's 0.1), so the RNG state must come back too."""
    common: dict[str, Any] = {
        "data": data["train_jsonl"], "tokenizer": trained["out"] / "tokenizer", "steps": 12,
        "log_every": 1, "ckpt_every": 6, "export": False, "tensorboard": False,
    }  # fmt: skip
    straight = tmp_path / "straight"
    train(from_preset("tiny", out=straight, **common), say=_quiet)
    split = tmp_path / "split"
    first = train(from_preset("tiny", out=split, stop_after=6, **common), say=_quiet)
    assert first.step == 6 and not first.completed and first.stopped
    second = train(from_preset("tiny", out=split, resume=True, **common), say=_quiet)
    assert second.start_step == 6 and second.completed

    assert _losses(split) == _losses(straight) and len(_losses(straight)) == 12
    a = CheckpointManager.load(CheckpointManager(straight / "checkpoints").latest(), "model")
    b = CheckpointManager.load(CheckpointManager(split / "checkpoints").latest(), "model")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_the_task_reports_train_counts_of_the_training_split(tmp_path: Path) -> None:
    """Imbalanced rows (what --class-weights balanced is for): the counts the loop weighs
    by are those of the training split, after the hold-out."""
    rows = ticket_rows(300, labels=["refund"] * 5 + ["cancel"] * 3 + ["shipping delay"] * 2)
    path = write_rows(tmp_path / "t.jsonl", rows)
    cfg = from_preset("tiny", data=path, out=tmp_path / "run", vocab_size=200)
    task = build_task(cfg, Dist(0, 0, 1, torch.device("cpu"), "gloo"))
    assert task.labels == ["cancel", "refund", "shipping delay"]
    assert task.train_counts == [90 - 9, 150 - 15, 60 - 6]
    assert task.unit == "sequences" and task.flops_per_sample and task.flops_per_sample > 0
    val = [y for _, labels, _ in task.evaluate() for y in labels.tolist()]
    assert sorted(val) == [0] * 9 + [1] * 15 + [2] * 6
    assert any("30 of 300 rows" in note for note in task.notes)


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    return err[0]


def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, data: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    def run(*args: str) -> int:
        return main(["--preset", "tiny", "--out", str(tmp_path / "run"), "--no-tensorboard", *args])

    assert run("--data", str(tmp_path / "nope.csv")) == 2
    assert "nope.csv does not exist" in _one_error_line(capsys)

    no_label = write_rows(tmp_path / "nolabel.csv", ticket_rows(20), columns=["id", "text"])
    assert run("--data", str(no_label)) == 2
    line = _one_error_line(capsys)
    assert "no column 'label' (its columns: 'id', 'text')" in line and "--label-column" in line

    unseen = write_rows(tmp_path / "unseen.csv", [{"id": "U1", "text": "hi", "label": "upgrade"}])
    assert run("--data", str(data["train_csv"]), "--val", str(unseen)) == 2
    line = _one_error_line(capsys)
    assert "unseen.csv U1: validation label 'upgrade' is not among the training labels" in line

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert run("--data", str(empty)) == 2
    assert "empty.jsonl is empty" in _one_error_line(capsys)

    one_class = write_rows(tmp_path / "one.csv", ticket_rows(30, labels=["refund"]))
    assert run("--data", str(one_class)) == 2
    assert "a classifier needs two classes" in _one_error_line(capsys)

    assert run("--data", str(data["train_csv"]), "--max-length", "4096") == 2
    assert "--max-length 4096 is longer than the 512 positions" in _one_error_line(capsys)


def test_local_pretrained_weights_get_a_new_head_and_their_own_tokenizer(
    trained: dict[str, Any], data: dict[str, Path], tmp_path: Path
) -> None:
    """--model-path: a saved BERT with a 2-class head and a tokenizer beside it. The
    encoder's weights are the saved ones, the head has the task's 4 classes, and the
    folder's tokenizer is used (no tokenizer is trained)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tok = AutoTokenizer.from_pretrained(trained["out"] / "tokenizer", local_files_only=True)
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, num_labels=2)  # fmt: skip
    pretrained = BertForSequenceClassification(config)
    folder = tmp_path / "pretrained"
    pretrained.save_pretrained(folder)
    tok.save_pretrained(folder)
    out = tmp_path / "run"
    cfg = from_preset("tiny", data=data["train_csv"], out=out, model_path=folder)
    task = build_task(cfg, Dist(0, 0, 1, torch.device("cpu"), "gloo"))
    bert = task.model.model
    assert bert.config.num_labels == 4 and bert.classifier.out_features == 4
    assert torch.equal(
        bert.bert.embeddings.word_embeddings.weight,
        pretrained.bert.embeddings.word_embeddings.weight,
    )
    assert not (out / "tokenizer").exists()
    assert task.meta["model"]["source"] == str(folder)
    assert task.meta["model"]["config"]["hidden_size"] == 32

    (folder / "model.safetensors").unlink()
    with pytest.raises(UsageError, match="has no safetensors weights"):
        build_task(cfg, Dist(0, 0, 1, torch.device("cpu"), "gloo"))


def test_two_processes_train_under_torchrun(data: dict[str, Path], tmp_path: Path) -> None:
    """The shared loop under torchrun: 2 gloo processes, DDP, disjoint rows per rank; rank 0
    evaluates and writes the final model, and both ranks exit 0."""
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
        "-m", "torchrig.recipes.text_classify", "--preset", "tiny",
        "--data", str(data["train_csv"]), "--val", str(data["val_csv"]), "--out", str(out),
        "--steps", "40", "--micro-batch", "16", "--no-tensorboard", "--device", "cpu",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 process(es), ddp" in done.stdout and "32 sequences/step" in done.stdout
    report = json.loads((out / "eval.json").read_text())
    assert report["accuracy"] > 0.8, report["accuracy"]
    assert (out / "final" / "model.safetensors").exists()
    losses = _losses(out)
    assert losses[40] < 0.5 * losses[10], losses
