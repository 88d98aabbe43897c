"""The speed settings the recipes pick per device (issue 18): CUDA graphs for the
classification step, the causal-LM preset's micro-batch by GPU memory, and the attention
kernel per GPU. Decisions only: the speed itself is measured on a GPU (benchmarks/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch.nn.attention import SDPBackend

from torchrig.errors import UsageError
from torchrig.recipes.causal_lm.config import fit_to_device
from torchrig.recipes.causal_lm.config import from_preset as lm_preset
from torchrig.recipes.classify.config import ClassifyConfig
from torchrig.recipes.classify.loop import _cuda_graphs
from torchrig.recipes.classify.task import ClassifyTask
from torchrig.train.attention import backend_name, training_sdpa_backends
from torchrig.train.distributed import Dist

GIB = 1 << 30


def _dist(device: str, world: int = 1) -> Dist:
    return Dist(0, 0, world, torch.device(device), "nccl" if device == "cuda" else "gloo")


def _task(static: bool) -> ClassifyTask:
    return ClassifyTask(
        recipe="text-classify", model=None, labels=["a", "b"], train=None,  # type: ignore[arg-type]
        evaluate=list, train_counts=[1, 1], meta={}, static_shapes=static,
    )  # fmt: skip


def test_cuda_graphs_where_the_step_allows_them() -> None:
    # On by default wherever they can run (measured on an H100, issue 18); silently off by
    # default where they cannot.
    assert _cuda_graphs(ClassifyConfig(), _task(True), _dist("cuda"), "none", compiled=True)
    for task, dist, strategy, compiled in [
        (_task(False), _dist("cuda"), "none", True),
        (_task(True), _dist("cpu"), "none", True),
        (_task(True), _dist("cuda"), "none", False),
        (_task(True), _dist("cuda", 2), "ddp", True),
    ]:
        assert not _cuda_graphs(ClassifyConfig(), task, dist, strategy, compiled=compiled)
    assert not _cuda_graphs(
        ClassifyConfig(grad_accum=2), _task(True), _dist("cuda"), "none", compiled=True
    )
    cfg = ClassifyConfig(cuda_graphs=True)
    assert _cuda_graphs(cfg, _task(True), _dist("cuda"), "none", compiled=True)
    # Each condition alone makes the ask one clear error naming it.
    for cfg_, task, dist, strategy, compiled, says in [
        (cfg, _task(False), _dist("cuda"), "none", True, "batches of one shape"),
        (cfg, _task(True), _dist("cpu"), "none", True, "a compiled step on CUDA"),
        (cfg, _task(True), _dist("cuda"), "none", False, "a compiled step on CUDA"),
        (cfg, _task(True), _dist("cuda", 2), "ddp", True, "one process"),
        (ClassifyConfig(cuda_graphs=True, grad_accum=2), _task(True), _dist("cuda"), "none",
         True, "--grad-accum 1"),
    ]:  # fmt: skip
        with pytest.raises(UsageError) as err:
            _cuda_graphs(cfg_, task, dist, strategy, compiled=compiled)
        assert says in str(err.value)
    off = ClassifyConfig(cuda_graphs=False)
    assert not _cuda_graphs(off, _task(True), _dist("cuda"), "none", compiled=True)


def test_cuda_graphs_asked_for_where_they_cannot_run_is_one_clear_error() -> None:
    cfg = ClassifyConfig(cuda_graphs=True, grad_accum=4)
    with pytest.raises(UsageError) as err:
        _cuda_graphs(cfg, _task(True), _dist("cuda"), "none", compiled=True)
    assert "--grad-accum 1" in str(err.value)


def test_cuda_graphs_flag_reaches_the_config() -> None:
    from torchrig.recipes.text_classify.__main__ import config_from_args

    base = ["--data", "x.csv", "--out", "o"]
    assert config_from_args([*base, "--no-cuda-graphs"]).cuda_graphs is False
    assert config_from_args([*base, "--cuda-graphs"]).cuda_graphs is True
    assert config_from_args(base).cuda_graphs is None


def test_gpt2_preset_micro_batch_follows_gpu_memory(tmp_path: Path) -> None:
    # The preset's step is 512 sequences over all processes (nanoGPT's 0.5M tokens); each
    # process takes its share, as large a micro-batch as its memory fits at a time.
    data = tmp_path / "a.txt"
    data.write_text("text\n")
    cfg = lm_preset("gpt2-124m", data=[data], out=tmp_path / "run")
    assert cfg.global_batch == 512
    cases = [
        (80 * GIB, 1, 128, 4), (40 * GIB, 1, 32, 16), (24 * GIB, 1, 16, 32), (None, 1, 16, 32),
        (80 * GIB, 8, 64, 1), (80 * GIB, 2, 128, 2), (24 * GIB, 8, 16, 4),
    ]  # fmt: skip
    for memory, world, micro, accum in cases:
        fitted = fit_to_device(cfg, memory, world)
        assert (fitted.micro_batch, fitted.grad_accum) == (micro, accum), (memory, world)
    # A micro-batch given on the command line is kept; the accumulation makes up the step.
    given = lm_preset("gpt2-124m", data=[data], out=tmp_path / "run", micro_batch=8)
    assert (fit_to_device(given, 80 * GIB).micro_batch, fit_to_device(given, None).grad_accum) == (
        8, 64,
    )  # fmt: skip
    # --grad-accum sets the step per process: the preset's global batch is dropped.
    accum = lm_preset("gpt2-124m", data=[data], out=tmp_path / "run", grad_accum=2)
    assert accum.global_batch is None
    fitted = fit_to_device(accum, 80 * GIB, 8)
    assert (fitted.micro_batch, fitted.grad_accum) == (16, 2)
    # Another model under the preset keeps the preset's micro-batch and its global batch.
    other = lm_preset("gpt2-124m", data=[data], out=tmp_path / "run", model="gpt2-350m")
    fitted = fit_to_device(other, 80 * GIB, 2)
    assert (fitted.micro_batch, fitted.grad_accum) == (16, 16)
    # Without a global batch (the tiny preset), micro × accum is per process, as given.
    tiny = lm_preset("tiny", data=[data], out=tmp_path / "run")
    assert fit_to_device(tiny, 80 * GIB, 4) == tiny


def test_a_global_batch_that_does_not_split_is_one_clear_error(tmp_path: Path) -> None:
    data = tmp_path / "a.txt"
    data.write_text("text\n")
    cfg = lm_preset("gpt2-124m", data=[data], out=tmp_path / "run")
    with pytest.raises(UsageError) as err:
        fit_to_device(cfg, 80 * GIB, 3)
    assert "--global-batch 512" in str(err.value) and "3 processes" in str(err.value)
    given = lm_preset("gpt2-124m", data=[data], out=tmp_path / "run", micro_batch=48)
    with pytest.raises(UsageError) as err:
        fit_to_device(given, 80 * GIB, 2)
    assert "--micro-batch 48" in str(err.value) and "256" in str(err.value)
    with pytest.raises(UsageError, match="--grad-accum and --global-batch both"):
        lm_preset("gpt2-124m", data=[data], out=tmp_path / "run", global_batch=64, grad_accum=2)
    zero = lm_preset("gpt2-124m", data=[data], out=tmp_path / "run", global_batch=0)
    with pytest.raises(UsageError, match="--global-batch must be at least 1"):
        zero.check()


def test_attention_kernel_per_gpu(monkeypatch: Any) -> None:
    cpu = training_sdpa_backends(torch.device("cpu"))
    assert cpu[0] == SDPBackend.FLASH_ATTENTION and backend_name(cpu) == "FlashAttention-2"
    monkeypatch.setattr(torch.backends.cudnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    hopper = training_sdpa_backends(torch.device("cuda"))
    assert hopper[0] == SDPBackend.CUDNN_ATTENTION and backend_name(hopper) == "cuDNN attention"
    assert SDPBackend.FLASH_ATTENTION in hopper  # the fallback for shapes cuDNN refuses
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    ampere = training_sdpa_backends(torch.device("cuda"))
    assert ampere[0] == SDPBackend.FLASH_ATTENTION
