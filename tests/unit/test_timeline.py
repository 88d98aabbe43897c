"""metrics.jsonl as one history: a resume supersedes what was logged past its checkpoint,
and the exporter's incremental reader agrees with a full read at every point of a file
that grows line by line, is torn mid-line, or is replaced."""

from __future__ import annotations

import json
from pathlib import Path

from torchrig.train.timeline import Follower, history

LINES = [
    {"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.0},
    {"event": "checkpoint", "step": 2, "seconds": 1.0},
    {"step": 3, "loss": 9.0}, {"event": "eval", "step": 3, "accuracy": 0.1},
    {"event": "resume", "step": 2}, {"step": 3, "loss": 1.5},
    {"event": "eval", "step": 3, "accuracy": 0.7}, {"step": 4, "loss": 1.0},
]  # fmt: skip


def test_a_resume_supersedes_later_steps() -> None:
    hist = history(LINES)
    assert [(r["step"], r["loss"]) for r in hist.train] == [(1, 3.0), (2, 2.0), (3, 1.5), (4, 1.0)]
    assert [r["accuracy"] for r in hist.evals] == [0.7]
    assert [r["step"] for r in hist.resumes] == [2]


def test_a_resume_before_the_steps_it_replaces_drops_them_even_unlogged() -> None:
    hist = history([{"step": 5, "loss": 1.0}, {"event": "resume", "step": 4}])
    assert hist.train == []  # step 5 was retrained after the resume, and not logged yet


def test_the_follower_agrees_with_a_full_read_as_the_file_grows(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    follower = Follower(path)
    assert follower.read().train == []  # no file yet
    text = "".join(json.dumps(r) + "\n" for r in LINES)
    path.write_text("")
    for cut in [*range(7, len(text), 7), len(text)]:  # 7 bytes at a time: lines torn mid-way
        with path.open("a") as handle:
            handle.write(text[len(path.read_text()) : cut])
        got = follower.read()
        whole = text[: text.rfind("\n", 0, cut) + 1]  # a line counts once it is whole
        full = history(json.loads(line) for line in whole.splitlines())
        assert got.last_train == full.last_train and got.last_eval == full.last_eval
        assert got.resumes == full.resumes
    assert follower.read().last_train == {"step": 4, "loss": 1.0}


def test_the_follower_rereads_a_replaced_file(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"step": 7, "loss": 1.0}) + "\n")
    follower = Follower(path)
    assert follower.read().last_train == {"step": 7, "loss": 1.0}
    other = tmp_path / "new.jsonl"
    other.write_text(json.dumps({"step": 1, "loss": 5.0}) + "\n")
    other.replace(path)  # a new run in the same folder (--force)
    assert follower.read().last_train == {"step": 1, "loss": 5.0}
