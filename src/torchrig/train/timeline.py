"""A run's metrics.jsonl as one history, resumes taken into account (stdlib only: the
exporter, `torchrig top` and the report read it without torch).

metrics.jsonl is appended to by every invocation of a run. A resume writes
`{"event": "resume", "step": S, ...}` first: what the run logged after step S before it
stopped (it crashed past its last checkpoint) was trained again, so those records are
superseded. `history()` keeps, for every kind of record, only what the latest invocation
says about each step: plots and reports never draw a step twice.

Record kinds: a training log line (a "step" and a "loss", no "event"), and events:
"eval" (a periodic evaluation: accuracy, macro_f1, or val_loss, perplexity), "checkpoint"
(a save: step, seconds, time) and "resume".
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Record = dict[str, Any]


def read_jsonl(path: Path) -> list[Record]:
    """Records of a metrics.jsonl; a torn last line (the process was killed) is skipped."""
    out: list[Record] = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return out
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def kind(rec: Mapping[str, Any]) -> str:
    event = rec.get("event")
    if isinstance(event, str):
        return event
    return "train" if isinstance(rec.get("loss"), int | float) else "other"


@dataclass
class History:
    train: list[Record] = field(default_factory=list)
    evals: list[Record] = field(default_factory=list)
    checkpoints: list[Record] = field(default_factory=list)
    resumes: list[Record] = field(default_factory=list)

    @property
    def last_train(self) -> Record | None:
        return self.train[-1] if self.train else None

    @property
    def last_eval(self) -> Record | None:
        return self.evals[-1] if self.evals else None

    @property
    def last_checkpoint(self) -> Record | None:
        return self.checkpoints[-1] if self.checkpoints else None


def _step(rec: Mapping[str, Any]) -> int | None:
    step = rec.get("step")
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def history(records: Iterable[Mapping[str, Any]]) -> History:
    """One record per step and kind, in step order; a resume at step S drops what earlier
    invocations logged after S."""
    kinds: dict[str, dict[int, Record]] = {"train": {}, "eval": {}, "checkpoint": {}}
    resumes: list[Record] = []
    for rec in records:
        what = kind(rec)
        step = _step(rec)
        if step is None:
            continue
        if what == "resume":
            resumes.append(dict(rec))
            for by_step in kinds.values():
                for s in [s for s in by_step if s > step]:
                    del by_step[s]
        elif what in kinds:
            kinds[what][step] = dict(rec)  # the last record of a step wins
    return History(
        train=[kinds["train"][s] for s in sorted(kinds["train"])],
        evals=[kinds["eval"][s] for s in sorted(kinds["eval"])],
        checkpoints=[kinds["checkpoint"][s] for s in sorted(kinds["checkpoint"])],
        resumes=resumes,
    )


def read_history(path: Path) -> History:
    return history(read_jsonl(path))
