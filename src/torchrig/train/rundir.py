"""The run folder (`--out`): refused when it holds someone else's files, and written so that
a run that fails leaves it as it was.

Which folders a run takes:

    no folder, or an empty one         a new run
    a folder with checkpoints          only with --resume (the training loop says so)
    a folder with other files          only with --force (files of the same name are replaced)

Staging. Everything a run writes before it is known to work goes into a staging folder:

    beside OUT, when OUT does not exist:   PARENT/.NAME.torchrig-stage-PID
    inside OUT, when it does:              OUT/.torchrig-stage-PID

(inside, so that an OUT that is a mount point or a volume never needs renaming). A new run
writes nothing outside the staging folder before its first log line, and a run that
fails before its first checkpoint (a NaN loss, a model that does not fit) leaves no file
behind. A resumed run stages what it prepares
(tokenizer, token cache, config.json, classifier.json) until its checkpoint has loaded into
the model: a refused resume (another data set, another model) leaves every byte of the run
as it was. The staging folder of a resume starts as hard links of the run's files (the
caches are reused, not rebuilt); every writer replaces files by rename, never in place, so
the run's own files are never modified through the links.

`commit()` moves the staged entries into OUT (a new OUT: one rename). A new run commits at
its first log line with a finite loss (so metrics.jsonl and TensorBoard can be watched in
OUT from then on) or at its first checkpoint, whichever comes first; `discard()`, after a
failure, removes the staging folder, or what the commit put into OUT while the run has no
checkpoint yet. A staging folder left by a killed process (its PID gone) is removed by
the next run of the same folder.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from torchrig.errors import UsageError
from torchrig.train.checkpoint import pid_alive

STAGE_PREFIX = ".torchrig-stage-"
_STAGE = re.compile(r"^\.(?:.+\.)?torchrig-stage-(\d+)$")
# Entries of a run folder a resume does not stage: the checkpoints are read, never written,
# before the resume is known to work.
_NOT_STAGED = {"checkpoints"}


def _remove_stale(folder: Path, name_filter: str = "") -> None:
    """Staging folders of dead processes in `folder` (those whose name holds name_filter)."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return
    for entry in entries:
        match = _STAGE.match(entry.name)
        if match and name_filter in entry.name and not pid_alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)


def _visible_entries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not _STAGE.match(p.name))


def _link_tree(src: Path, dst: Path) -> None:
    """dst as hard links of src's files (copies where links are refused)."""

    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    if src.is_dir() and not src.is_symlink():
        shutil.copytree(src, dst, copy_function=link, symlinks=True)
    elif src.is_symlink():
        dst.symlink_to(src.readlink())
    else:
        link(str(src), str(dst))


def _replace(src: Path, dst: Path) -> None:
    """Move src to dst, replacing what is there (a folder: renamed away, then removed)."""
    if dst.is_dir() and not dst.is_symlink():
        trash = dst.with_name(f"{STAGE_PREFIX}{os.getpid()}-old-{dst.name}")
        dst.rename(trash)
        src.rename(dst)
        shutil.rmtree(trash, ignore_errors=True)
    elif dst.exists() and not src.is_symlink() and src.samefile(dst):
        src.unlink()  # a link of the run's own file: rename(2) would do nothing, not move it
    else:
        src.replace(dst)


@dataclass
class RunFolder:
    out: Path
    """The folder the user named (--out)."""
    work: Path
    """Where the run writes now: the staging folder until commit(), then out."""
    is_main: bool = True
    committed: bool = False
    created: list[Path] = field(default_factory=list)
    """Folders above OUT this run made (removed again by discard() when empty)."""
    checkpointed: bool = False
    """OUT holds a checkpoint of this run (or the run resumed one): discard() keeps it."""
    made_out: bool = False
    moved: list[str] = field(default_factory=list)
    """What commit() put into OUT: what discard() removes from a run that has no
    checkpoint yet (OUT itself when commit() made it)."""

    @classmethod
    def open(
        cls, out: Path, *, resume: bool, force: bool, has_checkpoint: bool, rank0_pid: int,
        is_main: bool,
    ) -> RunFolder:  # fmt: skip
        """Check that the run may use `out` and make its staging folder (rank 0 makes it;
        every rank gets the same path from rank 0's PID). Call it before anything is read
        or written; `has_checkpoint` with resume=False is the caller's error to raise."""
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {out} is a file, not a folder", "give a folder for the run")
        if out.is_dir():
            if is_main:
                _remove_stale(out)
            if not has_checkpoint and not force:
                entries = _visible_entries(out)
                if entries:
                    shown = ", ".join(p.name for p in entries[:5])
                    more = f" and {len(entries) - 5} more" if len(entries) > 5 else ""
                    raise UsageError(
                        f"--out {out} is not empty and holds no checkpoints of a run "
                        f"({shown}{more})",
                        "choose a new or empty folder, or pass --force to write into it "
                        "(files of the same name are replaced)",
                    )
            work = out / f"{STAGE_PREFIX}{rank0_pid}"
            run = cls(out, work, is_main, checkpointed=has_checkpoint and resume)
            if is_main:
                work.mkdir()
                if has_checkpoint and resume:
                    for entry in _visible_entries(out):
                        if entry.name not in _NOT_STAGED:
                            _link_tree(entry, work / entry.name)
            return run
        # A new folder: stage beside it.
        created: list[Path] = []
        parent = out.parent
        while not parent.exists():
            created.append(parent)
            parent = parent.parent
        work = out.parent / f".{out.name}.torchrig-stage-{rank0_pid}"
        run = cls(out, work, is_main, created=created)
        if is_main:
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
                _remove_stale(out.parent, f".{out.name}.torchrig-stage-")
                work.mkdir()
            except OSError as exc:
                run.discard()
                raise UsageError(
                    f"cannot create {out} ({exc.strerror})", "check that the folder is writable"
                ) from None
        return run

    def commit(self) -> None:
        """Make the staged files the run's (rank 0 moves them; every rank switches)."""
        if self.committed:
            return
        if self.is_main:
            self.moved = sorted(entry.name for entry in self.work.iterdir())
            if not self.out.exists():
                self.work.rename(self.out)
                self.made_out = True
            else:
                for name in self.moved:
                    _replace(self.work / name, self.out / name)
                self.work.rmdir()
        self.work = self.out
        self.committed = True

    def discard(self) -> None:
        """After a failure: remove what this run wrote, unless OUT holds a checkpoint of it
        (then the run can be resumed, and its files stay)."""
        if not self.is_main:
            return
        if not self.committed:  # a refused resume too: the run's own files were not touched
            shutil.rmtree(self.work, ignore_errors=True)
        elif self.checkpointed:
            return
        elif self.made_out:
            shutil.rmtree(self.out, ignore_errors=True)
        else:
            for name in self.moved:
                target = self.out / name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target, ignore_errors=True)
                else:
                    target.unlink(missing_ok=True)
        for folder in self.created:  # innermost first
            try:
                folder.rmdir()
            except OSError:
                break
