"""The causal-LM recipe end to end on a CPU: it learns, resumes exactly, stops cleanly on
SIGTERM, and two DDP processes match one process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from torchrig.recipes.causal_lm.__main__ import main
from torchrig.recipes.causal_lm.config import from_preset
from torchrig.recipes.causal_lm.train import train
from torchrig.train.checkpoint import CheckpointManager
from torchrig.train.timeline import read_jsonl


def _losses(run: Path) -> dict[int, float]:
    """Step → loss from metrics.jsonl (the last record of a step wins, as in the plot)."""
    return {r["step"]: r["loss"] for r in read_jsonl(run / "metrics.jsonl") if "loss" in r}


def _model_state(run: Path) -> dict[str, Any]:
    latest = CheckpointManager(run / "checkpoints").latest()
    assert latest is not None
    state: dict[str, Any] = CheckpointManager.load(latest, "model")
    return state


def _quiet(_: str) -> None:
    pass


def test_tiny_preset_learns_and_writes_its_outputs(corpus: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = from_preset("tiny", data=[corpus], out=run, steps=40, log_every=5)
    result = train(cfg, say=_quiet)
    assert result.completed and result.step == 40 and result.stopped is None
    losses = _losses(run)
    first, last = losses[5], losses[40]
    # From ~ln(vocab) to well under it: the text is predictable.
    assert last < 0.6 * first, losses
    rec = result.records[-1]
    assert rec["tokens_per_s"] > 0 and 0.0 <= rec["data_wait"] <= 1.0
    assert rec["mfu"] is None  # CPU: no datasheet peak, so no made-up MFU
    assert rec["peak_mem_gib"] > 0
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((run / "tensorboard").iterdir())
    assert (run / "final" / "config.json").exists()
    assert (run / "final" / "tokenizer.json").exists()
    assert [c.step for c in CheckpointManager(run / "checkpoints").complete()] == [20, 40]


def test_resume_continues_exactly(corpus: Path, tmp_path: Path) -> None:
    """20 steps straight == 10 steps, stop, resume, 10 steps: the same loss at every step
    and bit-identical parameters."""
    common: dict[str, Any] = {
        "data": [corpus], "steps": 20, "log_every": 1, "ckpt_every": 10,
        "export": False, "tensorboard": False,
    }  # fmt: skip
    straight = tmp_path / "straight"
    train(from_preset("tiny", out=straight, **common), say=_quiet)

    split = tmp_path / "split"
    first = train(from_preset("tiny", out=split, stop_after=10, **common), say=_quiet)
    assert first.step == 10 and not first.completed and first.stopped
    second = train(from_preset("tiny", out=split, resume=True, **common), say=_quiet)
    assert second.start_step == 10 and second.completed

    assert _losses(split) == _losses(straight)
    a, b = _model_state(straight), _model_state(split)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_existing_run_without_resume_is_a_usage_error(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    args = ["--preset", "tiny", "--data", str(corpus), "--out", str(run), "--steps", "2"]
    assert main([*args, "--no-export", "--no-tensorboard"]) == 0
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume" in err[0] and "Traceback" not in err[0]
    # Bad input in general: one line, exit 2.
    out = tmp_path / "x"
    assert main(["--preset", "tiny", "--data", str(tmp_path / "nope.txt"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not out.exists()  # nothing half-made


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_sigterm_saves_a_final_checkpoint_and_exits_0(corpus: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "torchrig.recipes.causal_lm", "--preset", "tiny",
        "--data", str(corpus), "--out", str(run), "--steps", "100000", "--log-every", "2",
        "--ckpt-every", "100000", "--no-tensorboard",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not _losses(run).get(4) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            time.sleep(0.2)
        assert _losses(run).get(4), "training did not reach step 4"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out.decode()
    latest = CheckpointManager(run / "checkpoints").latest()
    assert latest is not None and latest.step >= 4
    assert b"stopped (SIGTERM)" in out
    trainer = CheckpointManager.load(latest, "trainer")
    assert trainer["step"] == latest.step and trainer["data"][0]["step"] == latest.step


@pytest.mark.parametrize(
    ("strategy", "shape"),
    [
        ("ddp", ["--micro-batch", "4"]),
        ("fsdp", ["--micro-batch", "4"]),
        ("ddp", ["--global-batch", "8"]),
    ],
)
def test_two_processes_match_one_process(
    strategy: str, shape: list[str], sft_data: Path, tmp_path: Path
) -> None:
    """torchrun, 2 processes on gloo (DDP, or FSDP2 sharding every block), 4 sequences
    each (given, or their share of --global-batch 8) == 1 process, 8 sequences: the
    same records per step (SftBatches deals epoch order round-robin to ranks) and a loss
    normalised by the step's total target tokens, so only the order of float sums
    differs. Tolerance: 1e-4 on each step's loss, 1e-4 on every parameter."""
    steps = 8
    common = [
        "--preset", "tiny", "--sft", str(sft_data), "--steps", str(steps), "--seq-len", "48",
        "--log-every", "1", "--ckpt-every", str(steps), "--no-tensorboard", "--no-export",
        "--device", "cpu", "--lr", "1e-3",
    ]  # fmt: skip
    ddp = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--standalone", "-m", "torchrig.recipes.causal_lm", *common,
        *shape, "--out", str(ddp), "--strategy", strategy,
    ]  # fmt: skip
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"2 process(es), {strategy}" in done.stdout

    single = tmp_path / "single"
    assert main([*common, "--micro-batch", "8", "--out", str(single)]) == 0

    a, b = _losses(ddp), _losses(single)
    assert a.keys() == b.keys() == set(range(1, steps + 1))
    for step in a:
        assert a[step] == pytest.approx(b[step], abs=1e-4), (step, a[step], b[step])
    assert a[steps] < a[1]
    pa, pb = _model_state(ddp), _model_state(single)
    for key in pa:
        assert torch.allclose(pa[key], pb[key], atol=1e-4, rtol=0), key
    config = json.loads((ddp / "config.json").read_text())
    assert (config["micro_batch"], config["grad_accum"]) == (4, 1)
