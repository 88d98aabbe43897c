"""The causal-LM speed choices of issue 18 item 2: --loss (full or chunked), --attention
(flash or cudnn first), the one table of tuned settings that the recipe and `torchrig
bench`'s GPT-2 line both read, and benchmarks/train_causal_lm.py --variants on a CPU.
Decisions and harness only: the speed itself is measured on a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.nn.attention import SDPBackend

from torchrig.errors import UsageError
from torchrig.recipes.causal_lm import config
from torchrig.recipes.causal_lm.__main__ import config_from_args
from torchrig.train.attention import training_sdpa_backends

ROOT = Path(__file__).resolve().parents[2]


def test_loss_flag_reaches_the_config_and_auto_follows_the_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = ["--preset", "gpt2-124m", "--data", "x.txt", "--out", "o"]
    assert config_from_args(base).loss == "auto"
    assert config_from_args([*base, "--loss", "chunked"]).loss == "chunked"
    assert config_from_args([*base, "--attention", "flash"]).attention == "flash"
    assert config_from_args(base).loss_chunk == config.LOSS_CHUNK_TOKENS
    assert config_from_args([*base, "--loss-chunk", "16384"]).loss_chunk == 16384
    assert config.loss_for("gpt2-124m", "full") == "full"
    assert config.loss_for("gpt2-124m", "chunked") == "chunked"
    monkeypatch.setitem(config.LOSS_BY_MODEL, "gpt2-124m", "chunked")
    assert config.loss_for("gpt2-124m") == "chunked"
    assert config.loss_for("llama-1b") == "full"  # not in the table
    assert config.loss_for("gpt2-124m", "auto", "fsdp") == "full"


def test_kernel_tuning_is_on_for_the_run_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # --tune-kernels [LEVEL]: inductor's tuning while train() runs (its compiles happen
    # inside), the process's settings back after; the table decides when not given.
    import torch._inductor.config as inductor

    from torchrig.recipes.causal_lm import train as train_mod

    seen: list[tuple[bool, bool]] = []
    monkeypatch.setattr(
        train_mod,
        "_train",
        lambda *a: seen.append((inductor.coordinate_descent_tuning, inductor.max_autotune_gemm)),
    )
    data = tmp_path / "x.txt"
    data.write_text("hello\n")
    base = ["--preset", "tiny", "--data", str(data), "--out", str(tmp_path / "o")]
    assert config_from_args(base).tune_kernels is None
    runs = [[], ["--tune-kernels"], ["--tune-kernels", "gemm"], ["--tune-kernels", "max"]]
    runs += [["--no-tune-kernels"]]
    for extra in runs:
        train_mod.train(config_from_args([*base, *extra]), say=lambda _: None)
    assert seen == [(False, False), (True, False), (False, True), (True, True), (False, False)]
    assert (inductor.coordinate_descent_tuning, inductor.max_autotune_gemm) == (False, False)
    monkeypatch.setitem(config.TUNE_KERNELS_BY_MODEL, "tiny-gpt2", "gemm")
    assert config.tune_kernels_for("tiny-gpt2") == "gemm"
    assert config.tune_kernels_for("tiny-gpt2", "off") == "off"


def test_an_unknown_kernel_tuning_is_one_clear_error(tmp_path: Path) -> None:
    data = tmp_path / "x.txt"
    data.write_text("hello\n")
    cfg = config.from_preset("tiny", data=[data], out=tmp_path / "o", tune_kernels="fast")
    with pytest.raises(UsageError) as err:
        cfg.check()
    assert "--tune-kernels" in str(err.value) and "blocks" in (err.value.fix or "")


def test_chunked_loss_under_fsdp_is_one_clear_error(tmp_path: Path) -> None:
    data = tmp_path / "x.txt"
    data.write_text("hello\n")
    cfg = config.from_preset(
        "tiny", data=[data], out=tmp_path / "o", loss="chunked", strategy="fsdp"
    )
    with pytest.raises(UsageError) as err:
        cfg.check()
    assert "--loss chunked" in str(err.value) and "fsdp" in str(err.value).lower()
    for field, value in [("loss", "fused"), ("attention", "math")]:
        bad = config.from_preset("tiny", data=[data], out=tmp_path / "o", **{field: value})
        with pytest.raises(UsageError, match=f"unknown --{field}"):
            bad.check()
    zero = config.from_preset("tiny", data=[data], out=tmp_path / "o", loss_chunk=0)
    with pytest.raises(UsageError, match="--loss-chunk must be at least 1"):
        zero.check()


def test_benchmark_variant_names_round_trip() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from train_causal_lm import AUTO_MICRO, Variant, parse_variant
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    for text, want in [
        ("chunked-128", Variant("chunked", 128)),
        ("64-full-flash", Variant("full", 64, "flash")),
        ("chunked-64-c16384-cdt", Variant("chunked", 64, chunk=16384, tuning="blocks")),
        ("chunked-128-gemm", Variant("chunked", 128, tuning="gemm")),
        ("max-full-128", Variant("full", 128, tuning="max")),
        ("chunked-auto", Variant("chunked", AUTO_MICRO)),
    ]:
        assert parse_variant(text) == want and parse_variant(want.name) == want


def test_attention_choice_puts_that_kernel_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.cudnn, "is_available", lambda: True)
    cuda = torch.device("cuda")
    for capability in [(9, 0), (8, 0)]:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None, c=capability: c)
        assert training_sdpa_backends(cuda, "flash")[0] == SDPBackend.FLASH_ATTENTION
        assert training_sdpa_backends(cuda, "cudnn")[0] == SDPBackend.CUDNN_ATTENTION
    cpu = training_sdpa_backends(torch.device("cpu"), "cudnn")
    assert cpu[0] == SDPBackend.FLASH_ATTENTION  # a CPU has no cuDNN attention
    with pytest.raises(UsageError, match="unknown attention kernel"):
        training_sdpa_backends(cuda, "xformers")


def test_bench_gpt2_line_takes_the_recipe_table(monkeypatch: pytest.MonkeyPatch) -> None:
    # `torchrig bench`'s compiled GPT-2 runs what the recipe's preset runs on this GPU: the
    # micro-batch by memory and the loss, read from config, not written down twice.
    from torchrig.bench import workloads

    seen: dict[str, Any] = {}

    def fake_train(torch_: Any, name: str, compiled: bool, *rest: Any) -> dict[str, Any]:
        seen[str(compiled)] = rest[-1]
        return {}

    class Props:
        total_memory = 80 * 2**30

    monkeypatch.setattr(workloads, "_train", fake_train)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d=None: Props())
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (9, 0))
    monkeypatch.setitem(config.LOSS_BY_MODEL, "gpt2-124m", "chunked")
    monkeypatch.setitem(config.TUNE_KERNELS_BY_MODEL, "gpt2-124m", "blocks")
    assert workloads._train_gpt2(torch, True, 1, 1, {})["tune_kernels"] == "blocks"
    assert workloads._train_gpt2(torch, False, 1, 1, {})["tune_kernels"] == "off"
    assert seen["True"] == {"batch": 128, "loss": "chunked"}
    assert seen["False"] == {}  # eager: B=16, full logits


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "train_causal_lm.py"), *args],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip


def test_benchmark_variants_bad_spec_is_one_line() -> None:
    done = _bench("--variants", "chunked-64-fast")
    assert done.returncode == 2
    assert "unknown part 'fast'" in done.stderr and "Traceback" not in done.stderr


def test_benchmark_variants_cpu_smoke(tmp_path: Path) -> None:
    # The whole --variants path on a CPU with the tiny model: the plain loop, then the
    # recipe with each loss, each printed as a result line and written to one JSON. A
    # phase that fails (a micro-batch no host has memory for) is recorded and the next runs.
    out = tmp_path / "variants.json"
    done = _bench(
        "--model", "tiny-gpt2", "--cpu-smoke", "--baseline-micro", "4",
        "--variants", "full-4", "full-10000000", "chunked-4", "chunked-auto",
        "--steps", "2", "--warmup-steps", "2", "--log-every", "2", "--n-tokens", "50000",
        "--work", str(tmp_path / "work"), "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("result ")]
    assert [ln.split(":")[0] for ln in lines] == [
        "result plain-4", "result recipe full-4", "result recipe full-10000000",
        "result recipe chunked-4", "result recipe chunked-auto", "result best",
    ]  # fmt: skip
    data = json.loads(out.read_text())
    assert data["worker_exit"] == 0 and data["date"] and data["environment"]["torch"]
    assert data["variants"]["full-10000000"]["error"].startswith("UsageError: --micro-batch")
    full, chunked = data["variants"]["full-4"], data["variants"]["chunked-4"]
    assert (full["loss"], chunked["loss"]) == ("full", "chunked")
    assert full["tokens_per_s"] > 0 and chunked["vs_plain_micro_batch"] == 4
    # "auto": the preset's own step, as the recipe shaped it (tiny: 8 × 1 per process).
    auto = data["variants"]["chunked-auto"]
    assert auto["step_shape"] == {"micro_batch": 8, "grad_accum": 1, "global_batch": None}
    assert auto["micro_batch"] == 8 and auto["tokens_per_s"] > 0
    # Same seed, same data, same arithmetic in fp32: the same training curve.
    assert chunked["loss_last"] == pytest.approx(full["loss_last"], rel=1e-4)
