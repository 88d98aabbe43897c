"""What every recipe's training loop does around its steps, in one place.

The recipes (causal_lm/train.py, classify/loop.py) keep their step loop readable top to
bottom; this module holds what they share and must not drift apart:

    ckpts, latest = find_checkpoint(cfg, dist, say)   # a run with checkpoints needs --resume
    with staged_run(cfg, dist, say, ckpts, latest) as run:  # failure: folder discarded
        ...data and model, written into run.work...
        start = run.resume(model=..., optimizer=..., ...)   # --resume: state + data position
        result = run.begin(start, ...)                      # metrics log, the RunResult
        while step < cfg.steps:
            ...the recipe's step...
            if run.log_due(step): run.record(rec, ...)      # finite loss → commit, log, say
            stop_here = run.stop_after_reached(step)
            if run.checkpoint_due(step, stop_here): run.save(step, loss_sum, data_state)
        run.end_loop(step, loss_sum, data_state)            # the stop request's checkpoint
        run.close(title)                                    # metrics closed, loss.png
        write_final(run.work, fill)                         # OUT/final, all or nothing

The run folder's staging and commit rules are rundir.RunFolder's; the checkpoint format is
checkpoint.py's.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from torchrig.errors import UsageError
from torchrig.train import distributed as D
from torchrig.train.checkpoint import (
    Checkpoint,
    CheckpointManager,
    resume_run,
    save_training_state,
)
from torchrig.train.metrics import MetricsLog, StepTimer, log_line, plot_loss
from torchrig.train.report import write_report
from torchrig.train.result import RunResult
from torchrig.train.rundir import RunFolder

Say = Callable[[str], None]
FINAL = "final"


class RunSettings(Protocol):
    """The settings of a recipe's config that the scaffold reads."""

    out: Path
    resume: bool
    force: bool
    keep: int
    steps: int
    log_every: int
    ckpt_every: int
    stop_after: int | None
    tensorboard: bool


@dataclass
class TrainingState:
    """What a checkpoint saves and a resume loads, besides the data position."""

    model: Any
    optimizer: Any
    scheduler: Any
    scaler: Any
    meta: dict[str, Any]


def find_checkpoint(
    cfg: RunSettings, dist: D.Dist, say: Say
) -> tuple[CheckpointManager, Checkpoint | None]:
    """The run's checkpoints and the newest complete one. A folder that has checkpoints is
    only continued with --resume: a second run into it would mix two runs' checkpoints."""
    ckpts = CheckpointManager(cfg.out / "checkpoints", keep_last=cfg.keep)
    latest = ckpts.latest(clean=dist.is_main)
    if latest is not None and not cfg.resume:
        raise UsageError(
            f"{cfg.out} already has checkpoints (newest: step {latest.step})",
            "pass --resume to continue that run, or choose another --out",
        )
    if cfg.resume and latest is None:
        say(f"--resume: no checkpoint in {ckpts.root} yet, starting from step 0")
    return ckpts, latest


@contextmanager
def staged_run(
    cfg: RunSettings,
    dist: D.Dist,
    say: Say,
    ckpts: CheckpointManager,
    latest: Checkpoint | None,
) -> Iterator[Scaffold]:
    """The run folder, staged (rundir.py): a run that fails before its first checkpoint
    leaves nothing behind, whatever the exception."""
    run_dir = RunFolder.open(
        cfg.out, resume=cfg.resume, force=cfg.force, has_checkpoint=latest is not None,
        rank0_pid=D.control_all_reduce(dist, [os.getpid() if dist.is_main else 0])[0],
        is_main=dist.is_main,
    )  # fmt: skip
    D.barrier(dist)
    try:
        yield Scaffold(cfg, dist, say, run_dir, ckpts, latest)
    except BaseException:
        run_dir.discard()
        raise


class Scaffold:
    """One run's folder, metrics log, step timer, checkpoints and result."""

    def __init__(
        self,
        cfg: RunSettings,
        dist: D.Dist,
        say: Say,
        run_dir: RunFolder,
        ckpts: CheckpointManager,
        latest: Checkpoint | None,
    ) -> None:
        self.cfg = cfg
        self.dist = dist
        self.say = say
        self.run_dir = run_dir
        self.ckpts = ckpts
        self.latest = latest
        self.timer = StepTimer()
        self.state: TrainingState | None = None
        self._log: MetricsLog | None = None
        self._result: RunResult | None = None
        self.saved_at = -1  # the step of this invocation's newest checkpoint

    @property
    def work(self) -> Path:
        """Where the run writes: its staging folder until it is committed, then OUT."""
        return self.run_dir.work

    @property
    def log(self) -> MetricsLog:
        assert self._log is not None, "begin() opens the metrics log"
        return self._log

    @property
    def result(self) -> RunResult:
        assert self._result is not None, "begin() makes the result"
        return self._result

    def resume(
        self,
        *,
        model: Any,
        optimizer: Any,
        scheduler: Any,
        scaler: Any,
        batches: Any,
        meta: dict[str, Any],
    ) -> int:
        """Remember what checkpoints hold; with --resume and a checkpoint, load it (and the
        data position) and return its step; else 0."""
        self.state = TrainingState(model, optimizer, scheduler, scaler, meta)
        if not self.cfg.resume or self.latest is None:
            return 0
        step = resume_run(
            self.latest, model=model, optimizer=optimizer, scheduler=scheduler,
            scaler=scaler, batches=batches, dist=self.dist, say=self.say,
        )  # fmt: skip
        # The checkpoint fits: what this invocation prepared becomes the run's.
        self.run_dir.commit()
        self.saved_at = step
        return step

    def begin(self, start_step: int, *, strategy: str, precision: str, compiled: bool) -> RunResult:
        """Open the metrics log (its notes are said) and the run's result."""
        resumed = self.cfg.resume and self.latest is not None and start_step > 0
        self._log = MetricsLog(
            self.work, enabled=self.dist.is_main, tensorboard=self.cfg.tensorboard,
            resumed_from=start_step if resumed else None,  # marks it; no step drawn twice
        )  # fmt: skip
        for note in self._log.notes:
            self.say(note)
        self._result = RunResult(
            start_step, start_step, False, None, strategy=strategy, precision=precision,
            compiled=compiled, out=self.run_dir.out,
        )  # fmt: skip
        return self._result

    def nothing_to_do(self) -> bool:
        """A resume of a run that already reached --steps: said, and the log closed."""
        if self.result.start_step < self.cfg.steps:
            return False
        self.say(f"already at step {self.result.start_step} of {self.cfg.steps}: nothing to do")
        self.result.completed = True
        self.log.close()
        return True

    def commit(self) -> None:
        """The run works (a finite loss, or a checkpoint): its staging folder becomes OUT,
        and the metrics log follows it."""
        if self.run_dir.committed:
            return
        self.log.close()
        self.run_dir.commit()
        self._log = MetricsLog(
            self.work, enabled=self.dist.is_main, tensorboard=self.cfg.tensorboard
        )

    def log_due(self, step: int) -> bool:
        return step % self.cfg.log_every == 0 or step == self.cfg.steps

    def record(self, rec: dict[str, Any], rate: str, unit: str) -> None:
        """One log line's metrics: a loss that is not finite ends the run (exit 2), else
        the run is committed, the record written, kept in the result and said."""
        loss = rec["loss"]
        if not math.isfinite(loss):
            raise UsageError(
                f"the loss is {loss} at step {rec['step']}",
                "lower --lr, or use --precision bf16 or fp32",
            )
        self.commit()
        self.log.write(rec)
        self.result.records.append(rec)
        self.say(log_line(rec, self.cfg.steps, rate, unit))

    def stop_after_reached(self, step: int) -> bool:
        """--stop-after N: this invocation has trained N steps (the result says so)."""
        stop = self.cfg.stop_after
        if stop is None or step - self.result.start_step < stop:
            return False
        self.result.stopped = f"--stop-after {stop}"
        return True

    def checkpoint_due(self, step: int, stop_here: bool) -> bool:
        return step % self.cfg.ckpt_every == 0 or step == self.cfg.steps or stop_here

    def save(self, step: int, loss_sum: Any, data_state: Any) -> None:
        """An atomic checkpoint at `step` (never of diverged weights); its time is left out
        of the step timer's throughput."""
        assert self.state is not None, "resume() says what a checkpoint holds"
        if not math.isfinite(float(loss_sum)):
            raise UsageError(
                f"the loss is not finite at step {step}", "lower --lr, or use --precision fp32"
            )
        self.commit()
        s = self.state
        seconds = save_training_state(
            self.ckpts, step=step, model=s.model, optimizer=s.optimizer,
            scheduler=s.scheduler, scaler=s.scaler, data_state=data_state, dist=self.dist,
            meta=s.meta,
        )  # fmt: skip
        self.result.checkpoint_s.append(seconds)
        self.timer.exclude(seconds)
        self.log.write({"event": "checkpoint", "step": step, "seconds": round(seconds, 3)})
        self.run_dir.checkpointed = True
        self.saved_at = step
        self.say(f"checkpoint step {step} ({seconds:.1f} s)")

    def end_loop(self, step: int, loss_sum: Any, data_state: Any) -> None:
        """After the loop: a stopped run's checkpoint at the boundary it stopped at (unless
        that step was just saved), and whether the run is complete."""
        result = self.result
        result.step = step
        if result.stopped and self.saved_at != step:
            self.save(step, loss_sum, data_state)
        result.completed = step >= self.cfg.steps
        if result.stopped:
            self.say(f"stopped ({result.stopped}) at step {step}: continue with --resume")

    def close(self, title: str) -> None:
        """Rank 0: the metrics log closed, loss.png drawn from it."""
        if self.dist.is_main:
            self.log.close()
            plot_loss(self.work / "metrics.jsonl", self.work / "loss.png", title=title)
            try:
                write_report(self.work, title=title)
            except Exception as exc:  # the run is done: say so, do not fail it
                self.say(f"report.html not written ({type(exc).__name__}: {exc})")


def write_final(out: Path, fill: Callable[[Path], None]) -> Path:
    """OUT/final, all or nothing: `fill` writes into a temporary folder in OUT, which then
    replaces final/ by rename. If anything fails the temporary folder is removed and an
    earlier final/ stays as it was."""
    final = out / FINAL
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-final-", dir=out))
    old: Path | None = None  # the earlier final/, moved aside until the new one is in place
    try:
        fill(tmp)
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=".old-final-", dir=out))
            final.rename(old / FINAL)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and (old / FINAL).exists() and not final.exists():
            (old / FINAL).rename(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final
