"""The static KV cache (serve/decode_graph.py) must give the tokens transformers'
DynamicCache gives: checked here on the CPU, eagerly, with trained tiny GPT-2 and Llama
runs, at prompt lengths on and off the cache buckets' edges and through a sliding window.
On a GPU the same step is replayed from a CUDA graph; tests/gpu/test_decode_graph_gpu.py
checks that. Here: the step reads nothing from the device on the host (what a capture
forbids), and a capture that fails falls back to the DynamicCache, said once."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest

from tests.serve.conftest import _corpus, quiet
from torchrig.serve import decode_graph, generate, kinds, lm
from torchrig.serve.decode_graph import Bucket, StaticDecoder
from torchrig.serve.sampling import Sampling

GREEDY = Sampling(0.0)


@pytest.fixture(scope="module")
def llama_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from torchrig.recipes.causal_lm.config import from_preset
    from torchrig.recipes.causal_lm.train import train

    folder = tmp_path_factory.mktemp("llama")
    cfg = from_preset(
        "tiny", model="tiny-llama", data=[_corpus(folder / "corpus.txt")], out=folder / "run",
        steps=40, log_every=10, tensorboard=False,
    )  # fmt: skip
    train(cfg, say=quiet)
    return folder / "run"


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def model(request: pytest.FixtureRequest) -> lm.LanguageModel:
    run = request.getfixturevalue("lm_run" if request.param == "gpt2" else "llama_run")
    return lm.load(kinds.find(run).path, "cpu")


def _ids(model: lm.LanguageModel, text: str) -> list[int]:
    return list(model.tokenizer(text)["input_ids"])


def _tokens(
    model: lm.LanguageModel,
    prompt: list[int],
    count: int,
    decoder: StaticDecoder | None,
    sampling: Sampling = GREEDY,
) -> list[tuple[int, bool]]:
    import torch

    generator = torch.Generator().manual_seed(5)
    return list(generate.token_ids(model, prompt, count, sampling, generator, decoder=decoder))


def test_the_context_the_tests_assume(model: lm.LanguageModel) -> None:
    assert model.context == 64
    assert model.model.config.model_type in ("gpt2", "llama")


@pytest.mark.parametrize(
    ("prompt_len", "count"),
    [(3, 13), (3, 14), (10, 22), (16, 17), (1, 63), (40, 24)],
    ids=["below-16", "16-edge", "32-edge", "past-32", "whole-context", "64-edge"],
)
def test_static_cache_gives_the_dynamic_caches_greedy_tokens(
    model: lm.LanguageModel, prompt_len: int, count: int
) -> None:
    words = _ids(model, " ".join(["the quick brown fox jumps over the lazy dog"] * 10))
    prompt = words[:prompt_len]
    decoder = StaticDecoder(model.model, model.device, model.context, graphs=False, min_bucket=16)
    assert decoder.sizes == [16, 32, 64]
    static = _tokens(model, prompt, count, decoder)
    dynamic = _tokens(model, prompt, count, None)
    assert static == dynamic
    assert len(static) == count or static[-1][0] == model.eos_id
    # The bucket used is the smallest that holds prompt + new tokens.
    used = [size for size, bucket in decoder._buckets.items() if bucket.length]
    assert used == [min(s for s in decoder.sizes if s >= prompt_len + count)]


def test_a_sliding_window_rebuilds_the_static_cache(model: lm.LanguageModel) -> None:
    long_prompt = _ids(model, " ".join(["the quick brown fox"] * 40))
    ids, count, cut = generate.plan_lengths(
        model, generate.Request(long_prompt, 150, GREEDY, overflow="slide")
    )
    assert cut and len(ids) == model.context - 1
    decoder = StaticDecoder(model.model, model.device, model.context, graphs=False, min_bucket=16)
    static = _tokens(model, ids, count, decoder)
    dynamic = _tokens(model, ids, count, None)
    assert static == dynamic
    assert sum(slid for _, slid in static) >= 2  # slid more than once over 150 tokens


def test_requests_give_the_same_text_with_either_cache(model: lm.LanguageModel) -> None:
    """Through generate.complete/stream: stop strings, EOS, sampling by seed, sliding."""
    quick = _ids(model, "The quick")
    requests = [
        generate.Request(quick, 40, GREEDY),
        generate.Request(quick, 40, GREEDY, stop=("dog",)),
        generate.Request(quick, 30, Sampling(0.9, 0.9), seed=11),
        generate.Request(quick, 30, Sampling(1.0, 1.0), seed=3),
        generate.Request(
            _ids(model, " ".join(["the lazy dog"] * 30)), 90, GREEDY, overflow="slide"
        ),
    ]
    for req in requests:
        static = generate.complete(model, _with(req, cache="static"))
        dynamic = generate.complete(model, _with(req, cache="dynamic"))
        pieces = "".join(generate.stream(model, _with(req, cache="static")))
        assert (static.text, static.finish_reason, static.completion_tokens, static.slid) == (
            dynamic.text, dynamic.finish_reason, dynamic.completion_tokens, dynamic.slid,
        ), req  # fmt: skip
        assert pieces == static.text
    assert "eager" in model.decoders and model.decoders.get("graph") is None


def _with(req: generate.Request, **changes: Any) -> generate.Request:
    import dataclasses

    return dataclasses.replace(req, **changes)


def test_a_cancelled_generation_frees_the_static_cache(model: lm.LanguageModel) -> None:
    req = generate.Request(_ids(model, "The quick"), 40, GREEDY, cache="static")
    seen: list[str] = []
    gen = generate.stream(model, req, cancelled=lambda: len(seen) >= 3)
    for piece in gen:
        seen.append(piece)
    decoder = model.decoders["eager"]
    assert len(seen) == 3
    assert decoder._busy.acquire(blocking=False)  # released when the generation ended
    decoder._busy.release()


def test_a_second_generation_at_once_uses_the_dynamic_cache(model: lm.LanguageModel) -> None:
    prompt = _ids(model, "A lazy")
    decoder = StaticDecoder(model.model, model.device, model.context, graphs=False, min_bucket=16)
    with decoder.session(30) as held:
        assert held is not None
        held.prefill(prompt)
        held.step(prompt[0])
        before = (held.length, held.cache.layers[0].keys.clone())
        with decoder.session(30) as second:
            assert second is None
        tokens = _tokens(model, prompt, 20, decoder)  # falls back: the cache is held
        assert held.length == before[0] and bool((held.cache.layers[0].keys == before[1]).all())
    assert tokens == _tokens(model, prompt, 20, None)


def test_a_full_bucket_refuses_another_step(model: lm.LanguageModel) -> None:
    bucket = Bucket(model.model, model.device, 16)
    bucket.prefill(list(range(1, 16)))
    bucket.step(1)  # the 16th position
    with pytest.raises(ValueError, match="16-position cache is full"):
        bucket.step(2)
    with pytest.raises(ValueError, match="17 prompt tokens"):
        bucket.prefill(list(range(1, 18)))


def test_a_cpu_decodes_with_the_dynamic_cache_unless_asked(model: lm.LanguageModel) -> None:
    said: list[str] = []
    fresh = lm.LanguageModel(**{**vars(model), "decoders": {}})
    assert decode_graph.pick(fresh, "auto", said.append) is None
    assert decode_graph.pick(fresh, "dynamic", said.append) is None
    static = decode_graph.pick(fresh, "static", said.append)
    assert static is not None and not static.graphs and static.sizes == [64]
    assert decode_graph.pick(fresh, "static", said.append) is static
    assert said == []  # a CPU is not a fallback: nothing to say


def test_a_failed_capture_falls_back_and_says_so_once(model: lm.LanguageModel) -> None:
    import torch

    # A model that claims a GPU on this CPU-only torch: the capture fails for real.
    gpu = SimpleNamespace(
        model=model.model, device=torch.device("cuda"), context=model.context, decoders={}
    )
    said: list[str] = []
    assert decode_graph.pick(gpu, "auto", said.append) is None
    assert decode_graph.pick(gpu, "auto", said.append) is None
    assert len(said) == 1, said
    assert said[0].startswith("decoding: CUDA graphs off (capture failed: ")
    assert said[0].endswith("); DynamicCache")


@pytest.mark.parametrize("size", [16, 64])
def test_the_step_reads_nothing_from_the_device_on_the_host(
    model: lm.LanguageModel, size: int
) -> None:
    """The step run on the meta device, where every host read of a value (.item(), a
    tensor in an `if`, .tolist()) raises: a CUDA graph capture forbids those reads, so this
    is the CPU's check that the step can be captured. transformers skips its own checks
    that read values while a CUDA stream captures (utils.import_utils.is_tracing): that
    is simulated, and without it the step does read (GPT-2's padding warning)."""
    import copy

    import torch
    import transformers.utils.import_utils as import_utils

    bucket = Bucket(copy.deepcopy(model.model), model.device, size)
    bucket.prefill(_ids(model, "The quick"))
    bucket.model.to("meta")
    for layer in bucket.cache.layers:
        layer.keys, layer.values = layer.keys.to("meta"), layer.values.to("meta")
        layer.cumulative_length = layer.cumulative_length.to("meta")
        layer.device = torch.device("meta")
    bucket.device, bucket._token = torch.device("meta"), bucket._token.to("meta")
    with mock.patch.object(import_utils, "is_cuda_stream_capturing", lambda: True):
        logits = bucket.step(5, eager=True)
    assert logits.device.type == "meta" and tuple(logits.shape[:2]) == (1, 1)


def _capture_stand_in(frozen: bool) -> Any:
    """graphs.capture on a CPU: "replay" reruns the step into the captured output, as a
    graph does; `frozen` replays nothing, as a graph whose position was frozen would."""

    def stand_in(run: Any, context: Any = None, pool: Any = None, warmups: int = 2) -> Any:
        import torch

        with torch.inference_mode():  # as graphs.capture
            for _ in range(warmups):
                run()
            out = run()
        replay = (lambda: None) if frozen else (lambda: out.copy_(run()))
        return SimpleNamespace(replay=replay), out

    return stand_in


def test_replayed_steps_are_checked_against_eager_ones(model: lm.LanguageModel) -> None:
    prompt = _ids(model, "The quick")
    with mock.patch.object(decode_graph, "capture", _capture_stand_in(frozen=False)):
        decoder = StaticDecoder(
            model.model, model.device, model.context, graphs=True, min_bucket=16
        )
        decoder.capture_all()
    assert all(bucket.graphed for bucket in decoder._buckets.values())
    assert sorted(decoder._buckets) == [16, 32, 64]
    assert _tokens(model, prompt, 40, decoder) == _tokens(model, prompt, 40, None)
    with (
        mock.patch.object(decode_graph, "capture", _capture_stand_in(frozen=True)),
        pytest.raises(decode_graph.GraphError, match="replayed step differs from the eager"),
    ):
        Bucket(model.model, model.device, 16).capture()
