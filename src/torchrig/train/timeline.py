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
import os
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


class _State:
    """The running fold of history(): feed records one at a time, ask for the History."""

    def __init__(self) -> None:
        self.kinds: dict[str, dict[int, Record]] = {"train": {}, "eval": {}, "checkpoint": {}}
        self.resumes: list[Record] = []

    def feed(self, rec: Mapping[str, Any]) -> None:
        what = kind(rec)
        step = _step(rec)
        if step is None:
            return
        if what == "resume":
            self.resumes.append(dict(rec))
            for by_step in self.kinds.values():
                for s in [s for s in by_step if s > step]:
                    del by_step[s]
        elif what in self.kinds:
            self.kinds[what][step] = dict(rec)  # the last record of a step wins

    def history(self) -> History:
        k = self.kinds
        return History(
            train=[k["train"][s] for s in sorted(k["train"])],
            evals=[k["eval"][s] for s in sorted(k["eval"])],
            checkpoints=[k["checkpoint"][s] for s in sorted(k["checkpoint"])],
            resumes=list(self.resumes),
        )

    def latest(self) -> History:
        """Only the last record of each kind (and every resume): what a scrape shows."""
        k = self.kinds

        def last(by_step: dict[int, Record]) -> list[Record]:
            return [by_step[max(by_step)]] if by_step else []

        return History(last(k["train"]), last(k["eval"]), last(k["checkpoint"]), list(self.resumes))


def history(records: Iterable[Mapping[str, Any]]) -> History:
    """One record per step and kind, in step order; a resume at step S drops what earlier
    invocations logged after S."""
    state = _State()
    for rec in records:
        state.feed(rec)
    return state.history()


def read_history(path: Path) -> History:
    return history(read_jsonl(path))


class Follower:
    """The latest records of one metrics.jsonl, read incrementally: each call reads only what was
    appended since the last (the exporter scrapes every second; a long run's file is MBs).
    A file that was replaced or shrank is read again from the start; a line still being
    written is left for the next call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._ident: tuple[int, int] | None = None
        self._offset = 0
        self._state = _State()

    def read(self) -> History:
        try:
            with self.path.open("rb") as handle:
                info = os.fstat(handle.fileno())
                ident = (info.st_dev, info.st_ino)
                if ident != self._ident or info.st_size < self._offset:
                    self._ident, self._offset, self._state = ident, 0, _State()
                handle.seek(self._offset)
                data = handle.read()
        except OSError:
            return self._state.latest()
        end = data.rfind(b"\n") + 1  # whole lines only
        for line in data[:end].splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                self._state.feed(rec)
        self._offset += end
        return self._state.latest()
