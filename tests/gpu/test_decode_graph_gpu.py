"""LM decoding through CUDA graphs (serve/decode_graph.py) on a real GPU: the graph replays
give the tokens the same static cache gives eagerly and the tokens the DynamicCache gives,
through bucket edges and a sliding window; and the graphs are faster than eager decoding.

    PYTHONPATH=src python -m pytest tests/gpu/test_decode_graph_gpu.py -q -s
"""

from __future__ import annotations

import dataclasses
import random
import statistics
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from torchrig.serve import decode_graph, generate, kinds, lm
from torchrig.serve.decode_graph import StaticDecoder
from torchrig.serve.sampling import Sampling

pytestmark = pytest.mark.gpu

GREEDY = Sampling(0.0)
WORDS = "the quick brown fox jumps over a lazy dog and runs far away".split()  # noqa: SIM905


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GPT-2 trained on the CPU (seconds): its greedy choices have clear margins,
    so equal tokens test the decoding, not how near-ties round."""
    from torchrig.recipes.causal_lm.config import from_preset
    from torchrig.recipes.causal_lm.train import train

    folder = tmp_path_factory.mktemp("lm")
    rng = random.Random(0)
    corpus = folder / "corpus.txt"
    lines = (" ".join(WORDS[(s := rng.randrange(len(WORDS))) :] + WORDS[:s]) for _ in range(1500))
    corpus.write_text(".\n".join(lines) + ".\n", encoding="utf-8")
    cfg = from_preset(
        "tiny", data=[corpus], out=folder / "run", steps=40, log_every=10, tensorboard=False,
        device="cpu",
    )  # fmt: skip
    train(cfg, say=lambda _: None)
    return folder / "run"


def _tokens(model: lm.LanguageModel, prompt: list[int], count: int, decoder: Any) -> list[int]:
    import torch

    generator = torch.Generator(device=model.device).manual_seed(0)
    steps = generate.token_ids(model, prompt, count, GREEDY, generator, decoder=decoder)
    return [token for token, _ in steps]


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_graph_decoding_gives_the_eager_tokens(tiny_run: Path, dtype: str) -> None:
    import torch

    assert torch.cuda.is_available()
    model = lm.load(kinds.find(tiny_run).path, "cuda", dtype)
    assert model.context == 64
    graphed = StaticDecoder(model.model, model.device, model.context, graphs=True, min_bucket=16)
    graphed.capture_all()
    assert sorted(graphed._buckets) == [16, 32, 64]
    assert all(bucket.graphed for bucket in graphed._buckets.values())
    eager = StaticDecoder(model.model, model.device, model.context, graphs=False, min_bucket=16)
    words = list(model.tokenizer(" ".join(WORDS * 10))["input_ids"])
    # Prompt + new tokens below, on and past the 16/32 edges, the whole context, a slide.
    for prompt_len, count in [(3, 13), (3, 14), (10, 22), (16, 17), (1, 63), (63, 150)]:
        prompt = words[:prompt_len]
        replayed = _tokens(model, prompt, count, graphed)
        assert replayed == _tokens(model, prompt, count, eager), (prompt_len, count)
        if dtype == "fp32":  # bf16: other kernels may round a near-tie otherwise
            assert replayed == _tokens(model, prompt, count, None), (prompt_len, count)
        assert len(replayed) == count or replayed[-1] == model.eos_id


def test_generate_uses_the_graphs_by_default(tiny_run: Path) -> None:
    model = lm.load(kinds.find(tiny_run).path, "cuda", "fp32")
    said: list[str] = []
    assert decode_graph.graphed(model, said.append) is not None
    assert said == ["decoding: CUDA graphs on (static KV cache; 1 size captured: 64 tokens)"]
    prompt = list(model.tokenizer("the quick")["input_ids"])
    for req in (
        generate.Request(prompt, 40, GREEDY, stop=("dog",)),
        generate.Request(prompt, 30, Sampling(0.9, 0.9), seed=5),
        generate.Request(prompt * 40, 100, GREEDY, overflow="slide"),
    ):
        auto = generate.complete(model, req)
        dynamic = generate.complete(model, dataclasses.replace(req, cache="dynamic"))
        assert (auto.text, auto.finish_reason, auto.slid) == (
            dynamic.text, dynamic.finish_reason, dynamic.slid,
        ), req  # fmt: skip


def test_graph_decoding_is_faster_than_eager(tiny_run: Path) -> None:
    """GPT-2 124M's shape (random weights: speed does not depend on them), bf16, 128 new
    tokens after a 16-token prompt: the graphs must at least double eager tokens/s."""
    import torch
    from transformers import AutoModelForCausalLM

    from torchrig.recipes.causal_lm.model import build_config

    config = build_config("gpt2-124m", 50257)
    model = AutoModelForCausalLM.from_config(config).to("cuda", torch.bfloat16).eval()
    language_model = lm.LanguageModel(
        model=model, tokenizer=SimpleNamespace(eos_token_id=None), context=1024,
        device=torch.device("cuda"), name="gpt2-124m-shaped", vocab=50257,
    )  # fmt: skip
    said: list[str] = []
    graphed = decode_graph.graphed(language_model, said.append)
    assert graphed is not None, said
    prompt = list(range(100, 116))

    def rate(decoder: Any) -> float:
        _tokens(language_model, prompt, 128, decoder)  # warm-up
        rates = []
        for _ in range(3):
            torch.cuda.synchronize()
            start = time.perf_counter()
            _tokens(language_model, prompt, 128, decoder)
            rates.append(128 / (time.perf_counter() - start))
        return statistics.median(rates)

    replayed, eager = rate(graphed), rate(None)
    print(f"\ngpt2-124m bf16: {replayed:.0f} tokens/s through CUDA graphs, {eager:.0f} eager")
    assert replayed > 2 * eager, (replayed, eager)
