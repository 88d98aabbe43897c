"""Checkpoints: atomic, pruned, discoverable, and intact after kill -9 at any moment."""

from __future__ import annotations

import json
import os
import random
import select
import signal
import time
from pathlib import Path

import pytest
import torch

from torchrig.errors import UsageError
from torchrig.train.checkpoint import CheckpointManager, capture_rng, restore_rng


def _parts(step: int) -> dict[str, object]:
    return {"model": {"w": torch.full((4, 4), float(step))}, "trainer": {"step": step}}


def test_save_load_keep_last_and_replace(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path / "ck", keep_last=2)
    for step in (1, 2, 3):
        mgr.save(step, _parts(step), {"note": step})
    assert [c.step for c in mgr.complete()] == [2, 3]  # step 1 pruned
    latest = mgr.latest()
    assert latest is not None and latest.step == 3
    assert latest.path.name == "step-00000003"
    assert torch.equal(mgr.load(latest, "model")["w"], torch.full((4, 4), 3.0))
    assert latest.manifest["meta"] == {"note": 3}
    # The same step again replaces the checkpoint in place.
    mgr.save(3, {"model": {"w": torch.zeros(2)}, "trainer": {"step": 3}})
    again = mgr.latest()
    assert again is not None and mgr.load(again, "model")["w"].shape == (2,)
    assert not [p for p in (tmp_path / "ck").iterdir() if p.name.startswith(".tmp")]


def test_latest_skips_incomplete_and_cleans_dead_temporaries(tmp_path: Path) -> None:
    root = tmp_path / "ck"
    mgr = CheckpointManager(root, keep_last=5)
    mgr.save(5, _parts(5))
    mgr.save(6, _parts(6))
    # A newer folder without a manifest, one with a truncated file, one with a bad manifest.
    (root / "step-00000009").mkdir()
    (root / "step-00000009" / "model.pt").write_bytes(b"partial")
    (root / "step-00000006" / "model.pt").write_bytes(b"truncated")  # size now differs
    bad = root / "step-00000008"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json")
    # A temporary of a dead writer (pid far beyond pid_max) and one of a live process.
    dead = root / ".tmp-step-00000010.pid999999999"
    dead.mkdir()
    live = root / f".tmp-step-00000011.pid{os.getppid()}"
    live.mkdir()
    latest = mgr.latest()
    assert latest is not None and latest.step == 5
    assert not dead.exists() and live.exists()
    assert json.loads((latest.path / "manifest.json").read_text())["files"]["model.pt"] > 0


def test_loads_with_weights_only(tmp_path: Path) -> None:
    """A checkpoint that holds an arbitrary Python object is refused, not executed."""

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pwned",))

    mgr = CheckpointManager(tmp_path, keep_last=1)
    mgr.save(1, {"model": {"x": Evil()}})
    latest = mgr.latest()
    assert latest is not None
    with pytest.raises(Exception, match=r"[Ww]eights only load failed|Unsupported global"):
        mgr.load(latest, "model")


def test_keep_last_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        CheckpointManager(tmp_path, keep_last=0)


def test_rng_states_round_trip_through_a_weights_only_load(tmp_path: Path) -> None:
    import numpy as np

    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    mgr = CheckpointManager(tmp_path, keep_last=1)
    mgr.save(1, {"rng": capture_rng()})
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    latest = mgr.latest()
    assert latest is not None
    restore_rng(mgr.load(latest, "rng"))
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected


def _child_saves(root: Path, first: int, payload: torch.Tensor, ack: int) -> None:
    """Save checkpoints first, first+1, ... forever, acknowledging each completed one."""
    mgr = CheckpointManager(root, keep_last=3)
    step = first
    while True:
        mgr.save(step, {"model": {"w": payload}, "trainer": {"step": step}})
        os.write(ack, step.to_bytes(8, "little"))
        step += 1


def test_kill_9_during_saves_never_loses_the_latest_complete_checkpoint(tmp_path: Path) -> None:
    """60 times: a writer saving back to back is killed with SIGKILL after a random delay
    (mostly mid-save: that is all it does). Every time, the newest complete checkpoint is
    at least the last one acknowledged, loads with weights_only, and holds what was saved;
    the dead writer's temporary folder is cleaned up."""
    root = tmp_path / "ck"
    payload = torch.arange(64 * 1024, dtype=torch.float32)  # 256 KiB: saves take ~ms
    rng = random.Random(1234)
    kills = 0
    mid_save = 0
    for _ in range(60):
        mgr = CheckpointManager(root, keep_last=3)
        before = mgr.latest()
        first = before.step + 1 if before else 1
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: no pytest machinery, no return
            try:
                os.close(read_end)
                _child_saves(root, first, payload, write_end)
            finally:
                os._exit(1)
        os.close(write_end)
        # Wait for the writer's first completed save, so the kill lands while it is saving
        # back to back however slowly a loaded machine starts it.
        ready, _, _ = select.select([read_end], [], [], 30)
        assert ready, "the writer never completed a save"
        acks = os.read(read_end, 8)
        time.sleep(rng.uniform(0.0, 0.02))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        kills += 1
        while chunk := os.read(read_end, 4096):
            acks += chunk
        os.close(read_end)
        acked = [int.from_bytes(acks[i : i + 8], "little") for i in range(0, len(acks), 8)]
        temporaries = [p for p in root.iterdir() if p.name.startswith(".tmp")]
        mid_save += bool(temporaries)

        latest = mgr.latest()
        last_acked = acked[-1] if acked else (before.step if before else None)
        if last_acked is None:
            assert latest is None or latest.step >= 1
            continue
        assert latest is not None and latest.step >= last_acked
        assert mgr.load(latest, "trainer") == {"step": latest.step}
        assert torch.equal(mgr.load(latest, "model")["w"], payload)
        assert not [p for p in root.iterdir() if p.name.startswith(".tmp")]
        assert len(mgr.complete()) <= 3 + 1  # pruning may have been cut short by the kill
    assert kills == 60
    # Most kills must have landed inside a save for the test to mean anything.
    assert mid_save >= 30, mid_save
