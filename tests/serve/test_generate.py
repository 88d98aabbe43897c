"""Generation from a tiny trained causal LM: the saved config's token ids, the KV cache
gives the same text as recomputing, stop strings, the context rule, LoRA from any folder,
and `torchrig generate`'s bad input as one line with exit 2."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.serve.conftest import torchrig
from torchrig.serve import generate, kinds, lm
from torchrig.serve.sampling import Sampling
from torchrig.serve.textstream import TextStream


@pytest.fixture(scope="module")
def model(lm_run: Path) -> lm.LanguageModel:
    return lm.load(kinds.find(lm_run).path, "cpu")


def _ids(model: lm.LanguageModel, text: str) -> list[int]:
    return list(model.tokenizer(text)["input_ids"])


def test_the_saved_config_carries_the_tokenizers_own_ids(lm_run: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(lm_run / "final", local_files_only=True)
    for name in ("config.json", "generation_config.json"):
        config = json.loads((lm_run / "final" / name).read_text())
        assert config["eos_token_id"] == tok.eos_token_id < len(tok), name  # not GPT-2's 50256
        assert config["bos_token_id"] == tok.bos_token_id < len(tok), name
        assert config["use_cache"] is True, name


def test_the_kv_cache_gives_the_text_recomputing_gives(model: lm.LanguageModel) -> None:
    req = generate.Request(_ids(model, "The quick"), 30, Sampling(0.0))
    cached = generate.complete(model, req)
    plain = generate.complete(
        model, generate.Request(req.prompt_ids, 30, Sampling(0.0), use_cache=False)
    )
    assert cached.text == plain.text and cached.completion_tokens == 30
    assert "fox" in cached.text  # it learned the corpus


def test_sampling_is_reproducible_by_seed_and_top_p_near_zero_is_greedy(
    model: lm.LanguageModel,
) -> None:
    ids = _ids(model, "A lazy")
    a = generate.complete(model, generate.Request(ids, 20, Sampling(1.0, 1.0), seed=7))
    b = generate.complete(model, generate.Request(ids, 20, Sampling(1.0, 1.0), seed=7))
    greedy = generate.complete(model, generate.Request(ids, 20, Sampling(0.0)))
    nucleus = generate.complete(model, generate.Request(ids, 20, Sampling(1.0, 1e-6), seed=3))
    assert a.text == b.text
    assert nucleus.text == greedy.text


def test_a_stop_string_ends_the_answer_before_it(model: lm.LanguageModel) -> None:
    req = generate.Request(_ids(model, "The quick"), 40, Sampling(0.0), stop=("dog",))
    pieces = list(generate.stream(model, req))
    result = generate.complete(model, req)
    assert result.finish_reason == "stop" and "dog" not in result.text
    assert "".join(pieces) == result.text and result.text.endswith("lazy ")


def test_text_stream_holds_back_a_possible_stop_and_half_characters() -> None:
    class Bytes:  # ids are bytes; decoding shows U+FFFD for an unfinished UTF-8 character
        def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
            return bytes(ids).decode("utf-8", errors="replace")

    stream = TextStream(Bytes(), stops=["END"])
    out = [stream.push(b) for b in b"ab"]
    out += [stream.push(b) for b in "é".encode()]  # two bytes: nothing until both came
    out += [stream.push(b) for b in b"EN"]  # could be "END": held back
    out += [stream.push(ord("X"))]  # it was not: sent
    assert out == ["a", "b", "", "é", "", "", "ENX"]
    out = [stream.push(b) for b in b"ENDmore"]
    assert stream.stopped and stream.text == "abéENX" and "".join(out) == ""


def test_past_the_context_is_refused_or_slides(model: lm.LanguageModel) -> None:
    ids = _ids(model, "The quick")
    with pytest.raises(generate.ContextError, match="context of 64 tokens"):
        generate.complete(model, generate.Request(ids, 200))
    long_prompt = _ids(model, " ".join(["the quick brown fox"] * 40))
    assert len(long_prompt) > model.context
    with pytest.raises(generate.ContextError, match=f"the prompt is {len(long_prompt)} tokens"):
        generate.complete(model, generate.Request(long_prompt, 1))
    slid = generate.complete(
        model, generate.Request(long_prompt, 150, Sampling(0.0), overflow="slide")
    )
    assert slid.completion_tokens == 150 and slid.slid


def test_a_lora_adapter_loads_from_any_folder(
    lora_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = json.loads((lora_run / "final" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "base"  # relative to the adapter folder
    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(lora_run, moved)  # the run folder moved, and run from another folder
    monkeypatch.chdir(tmp_path)
    model = lm.load(kinds.find(moved).path, "cpu")
    result = generate.complete(model, generate.Request(_ids(model, "The"), 10, Sampling(0.0)))
    assert result.completion_tokens == 10


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    stderr = result.stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return str(lines[0])


def test_generate_cli_streams_text(lm_run: Path) -> None:
    done = torchrig("generate", str(lm_run), "--prompt", "The quick", "--temperature", "0",
                    "--max-new-tokens", "12")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "fox" in done.stdout and "12 tokens" in done.stderr
    static = torchrig("generate", str(lm_run), "--prompt", "The quick", "--temperature", "0",
                      "--max-new-tokens", "12", "--cache", "static")  # fmt: skip
    assert static.returncode == 0, static.stderr
    assert static.stdout == done.stdout


def test_generate_cli_bad_input_is_one_line(lm_run: Path, text_run: Path, tmp_path: Path) -> None:
    wrong = torchrig("generate", str(text_run), "--prompt", "hi")
    assert wrong.returncode == 2 and "is a text-classify run" in _error_line(wrong)
    long = torchrig("generate", str(lm_run), "--prompt", "fox " * 100)
    assert long.returncode == 2 and "context is 64 tokens" in _error_line(long)
    no_weights = tmp_path / "copy"
    shutil.copytree(lm_run / "final", no_weights)
    (no_weights / "model.safetensors").unlink()
    missing = torchrig("generate", str(no_weights), "--prompt", "hi")
    assert missing.returncode == 2 and "no safetensors weights" in _error_line(missing)
    shutil.rmtree(no_weights)
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    shutil.copy(lm_run / "config.json", unfinished / "config.json")
    cut = torchrig("generate", str(unfinished), "--prompt", "hi")
    assert cut.returncode == 2 and "without a final model" in _error_line(cut)
