"""The small pieces of torchrig.train, each on its own."""

from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from torchrig.errors import UsageError
from torchrig.train import distributed as D
from torchrig.train.metrics import MetricsLog, StepTimer, mfu, peak_tflops, plot_loss
from torchrig.train.optim import build_optimizer, build_scheduler, cosine_with_warmup
from torchrig.train.precision import resolve_precision, should_compile
from torchrig.train.prefetch import Prefetcher
from torchrig.train.signals import StopFlag
from torchrig.train.timeline import read_jsonl

CPU = torch.device("cpu")


def test_cosine_schedule_warms_up_then_decays_to_the_floor() -> None:
    f = cosine_with_warmup(warmup=4, total=20, min_ratio=0.1)
    assert [f(i) for i in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == pytest.approx(1.0)
    assert f(12) == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the cosine
    assert f(20) == pytest.approx(0.1) and f(100) == pytest.approx(0.1)
    values = [f(i) for i in range(4, 21)]
    assert values == sorted(values, reverse=True)


def test_adamw_decays_only_matrices_and_skips_frozen_parameters() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    model[2].weight.requires_grad_(False)
    opt = build_optimizer(model, lr=1e-3, weight_decay=0.1)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model[0].weight)}
    assert len(no_decay["params"]) == 4  # two biases, norm weight and bias
    sched = build_scheduler(opt, warmup=2, total=10)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5e-3)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3)


def test_precision_and_compile_defaults_on_cpu() -> None:
    p = resolve_precision("auto", CPU)
    assert p.name == "fp32" and p.scaler is None and p.dtype is None
    assert resolve_precision("bf16", CPU).dtype is torch.bfloat16
    with pytest.raises(UsageError, match="fp16"):
        resolve_precision("fp16", CPU)
    with pytest.raises(UsageError):
        resolve_precision("fp8", CPU)
    assert should_compile(None, CPU) is False
    assert should_compile(True, CPU) is True
    assert should_compile(False, torch.device("cuda")) is False


def test_dist_from_torchrun_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    single = D.Dist.from_env("cpu")
    assert (single.rank, single.world_size, single.backend, single.is_main) == (0, 1, "gloo", True)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    multi = D.Dist.from_env("cpu")
    assert (multi.rank, multi.local_rank, multi.world_size) == (3, 1, 4)
    assert multi.distributed and not multi.is_main
    monkeypatch.setenv("WORLD_SIZE", "four")
    with pytest.raises(UsageError, match="WORLD_SIZE"):
        D.Dist.from_env("cpu")


def test_strategy_choice() -> None:
    one = D.Dist(0, 0, 1, CPU, "gloo")
    two = D.Dist(0, 0, 2, CPU, "gloo")
    assert D.choose_strategy("auto", 10**9, one) == "none"
    assert D.choose_strategy("fsdp", 10**9, one) == "none"  # nothing to shard over
    assert D.choose_strategy("auto", 10**6, two) == "ddp"  # CPU: memory unknown
    assert D.choose_strategy("fsdp", 10**6, two) == "fsdp"
    with pytest.raises(UsageError):
        D.choose_strategy("none", 10**6, two)
    with pytest.raises(UsageError):
        D.choose_strategy("zero3", 10**6, two)


def test_auto_strategy_shards_what_does_not_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = D.Dist(0, 0, 2, torch.device("cuda", 0), "nccl")
    monkeypatch.setattr(D, "device_memory_bytes", lambda dist: 80 * 2**30)
    # 16 bytes per parameter against half of 80 GiB: 1B fits (16 GB), 3B does not (48 GB).
    assert D.choose_strategy("auto", 10**9, gpu) == "ddp"
    assert D.choose_strategy("auto", 3 * 10**9, gpu) == "fsdp"


def test_stop_flag_catches_sigterm() -> None:
    with StopFlag() as flag:
        assert not flag.requested
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 5
        while not flag.requested and time.monotonic() < deadline:
            time.sleep(0.01)
        assert flag.requested and flag.reason == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


class _Counter:
    """A data source with a position, like the recipe's batch iterators."""

    def __init__(self, stop: int | None = None) -> None:
        self.n = 0
        self.stop = stop

    def __iter__(self) -> _Counter:
        return self

    def __next__(self) -> tuple[Any, ...]:
        if self.stop is not None and self.n >= self.stop:
            raise StopIteration
        self.n += 1
        return (torch.tensor([self.n]),)

    def state_dict(self) -> dict[str, int]:
        return {"n": self.n}


def test_prefetcher_reports_the_position_of_what_was_consumed() -> None:
    source = _Counter()
    feed = Prefetcher(source, depth=4)
    try:
        time.sleep(0.05)  # let it run ahead
        assert feed.state == {"n": 0}
        for expected in (1, 2, 3):
            (x,), waited = feed.next()
            assert int(x) == expected and waited >= 0
            assert feed.state == {"n": expected}  # not the prefetched position
        assert source.n > 3
    finally:
        feed.close()
    finite = Prefetcher(_Counter(stop=2))
    assert [int(finite.next()[0][0]) for _ in range(2)] == [1, 2]
    with pytest.raises(StopIteration):
        finite.next()
    finite.close()


def test_step_timer_and_mfu() -> None:
    timer = StepTimer()
    timer.waited(0.01)
    timer.step(1000)
    time.sleep(0.02)
    out = timer.interval()
    assert out["items"] == 1000 and out["steps"] == 1
    assert 0 < out["data_wait_share"] < 1 and out["items_per_s"] < 1000 / 0.02
    assert timer.steps == 0 and timer.data_wait == 0
    assert mfu(6e9, 100_000, 989.0) == pytest.approx(6e14 / 989e12)
    assert mfu(6e9, 100_000, None) is None
    peak, why = peak_tflops(CPU, "bf16")
    assert peak is None and "CPU" in why


def test_metrics_log_jsonl_plot_and_torn_lines(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path, enabled=True, tensorboard=False)
    for step in range(1, 6):
        log.write({"step": step, "loss": 5.0 / step, "lr": 1e-3, "mfu": None})
    log.write({"event": "checkpoint", "step": 5, "seconds": 0.1})
    log.write({"step": 6, "loss": float("nan")})
    log.close()
    with (tmp_path / "metrics.jsonl").open("a") as handle:
        handle.write('{"step": 7, "lo')  # a kill mid-write
    records = read_jsonl(tmp_path / "metrics.jsonl")
    assert len(records) == 7 and records[-1]["loss"] is None
    png = plot_loss(tmp_path / "metrics.jsonl", tmp_path / "loss.png")
    assert png is not None and png.read_bytes()[:4] == b"\x89PNG"
    assert plot_loss(tmp_path / "none.jsonl", tmp_path / "x.png") is None
    quiet = MetricsLog(tmp_path / "rank1", enabled=False)
    quiet.write({"step": 1, "loss": 1.0})
    assert not (tmp_path / "rank1").exists()
    assert math.isclose(records[0]["loss"], 5.0)
