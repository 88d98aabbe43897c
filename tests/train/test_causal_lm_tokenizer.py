"""The causal-LM tokenizer: trained deterministically, reused when inputs are unchanged,
loaded from local folders only, with clear errors."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

pytest.importorskip("tokenizers")
pytest.importorskip("transformers")

from torchrig.errors import UsageError
from torchrig.recipes.causal_lm import tokenizer as tokmod
from torchrig.recipes.causal_lm.tokenizer import (
    EOS_TOKEN,
    PAD_TOKEN,
    load_or_train_tokenizer,
    tokenizer_fingerprint,
)

WORDS = ["the", "cat", "sat", "on", "a", "mat", "while", "dogs", "ran", "quickly", "over"]
WORDS += ["lazy", "green", "hills", "and", "rivers"]


def corpus(path: Path, lines: int = 400, seed: int = 0) -> Path:
    rng = random.Random(seed)
    text = "\n".join(" ".join(rng.choice(WORDS) for _ in range(10)) for _ in range(lines))
    path.write_text(text + "\n", encoding="utf-8")
    return path


def test_training_is_deterministic_and_has_special_tokens(tmp_path: Path) -> None:
    text = corpus(tmp_path / "a.txt")
    one = load_or_train_tokenizer(None, [text], tmp_path / "t1", vocab_size=320)
    two = load_or_train_tokenizer(None, [text], tmp_path / "t2", vocab_size=320)
    assert (tmp_path / "t1/tokenizer.json").read_bytes() == (
        tmp_path / "t2/tokenizer.json"
    ).read_bytes()
    assert tokenizer_fingerprint(one) == tokenizer_fingerprint(two)
    assert one.eos_token == EOS_TOKEN and one.pad_token == PAD_TOKEN
    assert one.eos_token_id != one.pad_token_id
    # Merges were learnt: a frequent word is one token, not its letters.
    assert len(one("quickly", add_special_tokens=False)["input_ids"]) == 1


def test_round_trip_including_unseen_bytes(tmp_path: Path) -> None:
    tok = load_or_train_tokenizer(None, [corpus(tmp_path / "a.txt")], tmp_path / "t", 320)
    text = "the cat — naïve 日本語 🙂\n\ttabs  and  spaces" + EOS_TOKEN + "dogs"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    assert tok.eos_token_id in ids  # the literal EOS text is the EOS token


def test_reused_when_unchanged_retrained_when_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = corpus(tmp_path / "a.txt")
    out = tmp_path / "tok"
    first = load_or_train_tokenizer(None, [text], out, 320)
    sidecar = json.loads((out / tokmod.SIDECAR).read_text())
    assert sidecar["fingerprint"] == tokenizer_fingerprint(first)

    calls: list[int] = []
    real_train = tokmod.train_bpe

    def counting(texts: list[Path], vocab_size: int) -> object:
        calls.append(vocab_size)
        return real_train(texts, vocab_size)

    monkeypatch.setattr(tokmod, "train_bpe", counting)
    again = load_or_train_tokenizer(None, [text], out, 320)
    assert calls == []
    assert tokenizer_fingerprint(again) == tokenizer_fingerprint(first)

    load_or_train_tokenizer(None, [text], out, 330)  # another vocab size: train
    assert calls == [330]

    corpus(text, seed=1)  # new content (and mtime)
    os.utime(text, ns=(1, 1))
    load_or_train_tokenizer(None, [text], out, 330)
    assert calls == [330, 330]


def test_jsonl_contributes_prompts_and_responses(tmp_path: Path) -> None:
    data = tmp_path / "sft.jsonl"
    rows = [{"prompt": "zyxwv question", "response": "zyxwv answer"}] * 50
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    tok = load_or_train_tokenizer(None, [data], tmp_path / "t", 300)
    # JSON syntax was not the training text; the words were.
    assert "zyxwv" in tok.get_vocab()
    assert '"prompt"' not in tok.get_vocab()


def test_load_local_folder(tmp_path: Path) -> None:
    trained = load_or_train_tokenizer(None, [corpus(tmp_path / "a.txt")], tmp_path / "t", 320)
    saved = tmp_path / "saved"
    trained.save_pretrained(saved)
    loaded = load_or_train_tokenizer(saved, [], tmp_path / "unused", 320)
    assert loaded("the lazy dogs")["input_ids"] == trained("the lazy dogs")["input_ids"]
    assert not (tmp_path / "unused").exists()


def test_folder_without_pad_gets_eos_as_pad(tmp_path: Path) -> None:
    from transformers import PreTrainedTokenizerFast

    trained = load_or_train_tokenizer(None, [corpus(tmp_path / "a.txt")], tmp_path / "t", 320)
    no_pad = PreTrainedTokenizerFast(
        tokenizer_object=trained.backend_tokenizer, eos_token=EOS_TOKEN
    )
    no_pad.save_pretrained(tmp_path / "nopad")
    loaded = load_or_train_tokenizer(tmp_path / "nopad", [], tmp_path / "x", 320)
    assert loaded.pad_token_id == loaded.eos_token_id


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        load_or_train_tokenizer(tmp_path / "nope", [], tmp_path / "t", 320)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(UsageError, match="has no tokenizer files") as info:
        load_or_train_tokenizer(tmp_path / "empty_dir", [], tmp_path / "t", 320)
    assert "tokenizer.json" in info.value.message and info.value.fix
    with pytest.raises(UsageError, match=r"data file .*missing\.txt does not exist"):
        load_or_train_tokenizer(None, [tmp_path / "missing.txt"], tmp_path / "t", 320)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(UsageError, match="empty"):
        load_or_train_tokenizer(None, [tmp_path / "empty.txt"], tmp_path / "t", 320)
    with pytest.raises(UsageError, match="too small"):
        load_or_train_tokenizer(None, [corpus(tmp_path / "a.txt")], tmp_path / "t", 100)
    with pytest.raises(UsageError, match="no text"):
        load_or_train_tokenizer(None, [], tmp_path / "t", 320)
