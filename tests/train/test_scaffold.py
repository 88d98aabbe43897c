"""The training scaffold both recipes share (train/scaffold.py): OUT/final is written all
or nothing, by causal-LM as by classify (issue 13, item 7: causal-LM left its temporary
folder behind when the export failed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from torchrig.recipes.causal_lm import serving
from torchrig.recipes.causal_lm.config import from_preset
from torchrig.recipes.causal_lm.train import train
from torchrig.train.scaffold import write_final


def _quiet(_: str) -> None:
    pass


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith((".tmp-", ".old-")))


def test_causal_lm_export_failure_leaves_no_temporary_folder(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(*_: object, **__: object) -> None:
        raise OSError(28, "No space left on device")

    # The export's last step before the rename fails, as a full disk would.
    monkeypatch.setattr(serving, "finish_adapter", disk_full)
    run = tmp_path / "run"
    cfg = from_preset("tiny", data=[corpus], out=run, steps=4, log_every=2, ckpt_every=4)
    with pytest.raises(OSError, match="No space left"):
        train(cfg, say=_quiet)
    assert not (run / "final").exists()
    assert _leftovers(run) == []
    assert [p.name for p in (run / "checkpoints").iterdir()]  # the run itself was kept


def test_write_final_replaces_final_or_keeps_the_old_one(tmp_path: Path) -> None:
    def fill(text: str) -> Callable[[Path], None]:
        def write(tmp: Path) -> None:
            (tmp / "weights").write_text(text)

        return write

    write_final(tmp_path, fill("one"))
    assert (tmp_path / "final" / "weights").read_text() == "one"

    def broken(tmp: Path) -> None:
        (tmp / "weights").write_text("half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_final(tmp_path, broken)
    assert (tmp_path / "final" / "weights").read_text() == "one"
    write_final(tmp_path, fill("two"))
    assert (tmp_path / "final" / "weights").read_text() == "two"
    assert _leftovers(tmp_path) == []


def test_write_final_puts_the_old_final_back_when_the_last_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "final").mkdir()
    (tmp_path / "final" / "weights").write_text("one")
    rename = Path.rename

    def failing(self: Path, target: str | Path) -> Path:
        if self.name.startswith(".tmp-final-"):
            raise OSError(5, "Input/output error")
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", failing)

    def fill(tmp: Path) -> None:
        (tmp / "weights").write_text("two")

    with pytest.raises(OSError, match="Input/output"):
        write_final(tmp_path, fill)
    assert (tmp_path / "final" / "weights").read_text() == "one"
    assert _leftovers(tmp_path) == []
