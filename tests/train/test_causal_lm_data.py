"""Causal-LM data: the token file and its sidecar, pretraining windows, SFT masking, exact
resume and per-rank data."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("numpy")
pytest.importorskip("torch")
pytest.importorskip("transformers")

import numpy as np
import torch

from torchrig.errors import UsageError
from torchrig.recipes.causal_lm import data as datamod
from torchrig.recipes.causal_lm.data import (
    IGNORE_INDEX,
    PretrainBatches,
    SftBatches,
    tokenize_to_bin,
)
from torchrig.recipes.causal_lm.tokenizer import load_or_train_tokenizer

WORDS = ["the", "cat", "sat", "on", "a", "mat", "while", "dogs", "ran", "quickly", "over"]
WORDS += ["lazy", "green", "hills"]


def write_text(path: Path, lines: int, seed: int) -> Path:
    rng = random.Random(seed)
    body = "\n".join(" ".join(rng.choice(WORDS) for _ in range(8)) for _ in range(lines))
    path.write_text(body + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("tok")
    return load_or_train_tokenizer(None, [write_text(root / "c.txt", 300, 0)], root / "t", 320)


def arange_bin(path: Path, n: int) -> Path:
    """A token file whose token at position i is i: a window's values give its position."""
    np.arange(n, dtype=np.uint32).tofile(path)
    meta = {"dtype": "uint32", "tokens": n}
    path.with_name(path.name + ".json").write_text(json.dumps(meta))
    return path


# --- tokenize_to_bin ---------------------------------------------------------------------


def test_token_file_is_each_document_then_eos(tmp_path: Path, tok: Any) -> None:
    a = write_text(tmp_path / "a.txt", 30, 1)
    b = write_text(tmp_path / "b.txt", 20, 2)
    out = tokenize_to_bin([a, b], tok, tmp_path / "bin/train.bin")
    ids = np.fromfile(out, dtype=np.uint16).tolist()
    enc = [tok(p.read_text(), add_special_tokens=False)["input_ids"] for p in (a, b)]
    assert ids == [*enc[0], tok.eos_token_id, *enc[1], tok.eos_token_id]
    meta = json.loads((tmp_path / "bin/train.bin.json").read_text())
    assert meta["dtype"] == "uint16" and meta["tokens"] == len(ids)
    assert [s["size"] for s in meta["sources"]] == [a.stat().st_size, b.stat().st_size]


def test_pieces_encode_exactly_like_the_whole(
    tmp_path: Path, tok: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tricky whitespace near the cuts: runs of spaces, blank lines, indented lines.
    rng = random.Random(3)
    seps = ["\n", "\n\n", "  \n", "\n  ", " \n\n ", "\n\t"]
    text = "".join(rng.choice(WORDS) + rng.choice(seps + [" "] * 6) for _ in range(4000))
    src = tmp_path / "t.txt"
    src.write_text(text, encoding="utf-8")
    monkeypatch.setattr(datamod, "_PIECE_CHARS", 200)
    assert len(datamod._pieces(text)) > 20
    out = tokenize_to_bin([src], tok, tmp_path / "t.bin")
    whole = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert np.fromfile(out, dtype=np.uint16).tolist() == whole


def test_sidecar_reuse_and_invalidation(
    tmp_path: Path, tok: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = write_text(tmp_path / "a.txt", 30, 1)
    out = tokenize_to_bin([src], tok, tmp_path / "a.bin")
    before = out.stat().st_mtime_ns

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("re-tokenized an unchanged input")

    monkeypatch.setattr(datamod, "_pieces", fail)
    assert tokenize_to_bin([src], tok, out) == out
    assert out.stat().st_mtime_ns == before
    monkeypatch.undo()

    write_text(src, 40, 9)  # the text changed: tokenized again
    tokenize_to_bin([src], tok, out)
    assert (
        len(np.fromfile(out, dtype=np.uint16))
        == json.loads((tmp_path / "a.bin.json").read_text())["tokens"]
    )
    assert out.stat().st_mtime_ns != before or out.stat().st_size != 0

    # A truncated token file (crash, copy) is not trusted even with a matching sidecar.
    with out.open("r+b") as handle:
        handle.truncate(10)
    tokenize_to_bin([src], tok, out)
    assert out.stat().st_size > 10


def test_another_tokenizer_invalidates(tmp_path: Path, tok: Any) -> None:
    src = write_text(tmp_path / "a.txt", 30, 1)
    out = tokenize_to_bin([src], tok, tmp_path / "a.bin")
    other = load_or_train_tokenizer(None, [src], tmp_path / "t2", 300)
    tokenize_to_bin([src], other, out)
    assert (
        np.fromfile(out, dtype=np.uint16).tolist()[:-1]
        == other(src.read_text(), add_special_tokens=False)["input_ids"]
    )


def test_large_vocabulary_uses_uint32(tmp_path: Path, tok: Any) -> None:
    class Big:
        """The trained tokenizer, pretending to have a vocabulary over 65536."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __len__(self) -> int:
            return 70_000

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    src = write_text(tmp_path / "a.txt", 5, 1)
    out = tokenize_to_bin([src], Big(tok), tmp_path / "a.bin")
    meta = json.loads((tmp_path / "a.bin.json").read_text())
    assert meta["dtype"] == "uint32"
    assert out.stat().st_size == 4 * meta["tokens"]


def test_token_file_errors(tmp_path: Path, tok: Any) -> None:
    with pytest.raises(UsageError, match=r"data file .*nope\.txt does not exist"):
        tokenize_to_bin([tmp_path / "nope.txt"], tok, tmp_path / "x.bin")
    (tmp_path / "e.txt").write_text("")
    with pytest.raises(UsageError, match="empty"):
        tokenize_to_bin([tmp_path / "e.txt"], tok, tmp_path / "x.bin")
    with pytest.raises(UsageError, match="not a token file"):
        PretrainBatches(tmp_path / "x.bin", 2, 8, seed=0)


# --- PretrainBatches ---------------------------------------------------------------------


def take(it: Any, n: int) -> list[tuple[Any, Any]]:
    return [next(it) for _ in range(n)]


def test_windows_are_contiguous_and_shifted(tmp_path: Path) -> None:
    path = arange_bin(tmp_path / "r.bin", 1000)
    x, y = next(PretrainBatches(path, batch_size=4, seq_len=16, seed=0))
    assert x.shape == y.shape == (4, 16)
    assert x.dtype == y.dtype == torch.int64
    assert torch.equal(y, x + 1)  # y is x shifted by one token
    assert torch.equal(x, x[:, :1] + torch.arange(16))  # one contiguous window per row
    assert int(x.max()) + 1 < 1000


def test_deterministic_and_seed_dependent(tmp_path: Path) -> None:
    path = arange_bin(tmp_path / "r.bin", 5000)
    a = take(PretrainBatches(path, 4, 8, seed=1), 3)
    b = take(PretrainBatches(path, 4, 8, seed=1), 3)
    c = take(PretrainBatches(path, 4, 8, seed=2), 3)
    assert all(torch.equal(p[0], q[0]) for p, q in zip(a, b, strict=True))
    assert not all(torch.equal(p[0], q[0]) for p, q in zip(a, c, strict=True))


def test_resume_yields_exactly_the_uninterrupted_batches(tmp_path: Path) -> None:
    path = arange_bin(tmp_path / "r.bin", 5000)
    straight = take(PretrainBatches(path, 4, 8, seed=7), 10)
    first = PretrainBatches(path, 4, 8, seed=7)
    take(first, 6)
    state = json.loads(json.dumps(first.state_dict()))  # survives a JSON checkpoint
    resumed = PretrainBatches(path, 4, 8, seed=7)
    resumed.load_state_dict(state)
    for (x, y), (x2, y2) in zip(take(resumed, 4), straight[6:], strict=True):
        assert torch.equal(x, x2) and torch.equal(y, y2)


def test_resume_with_other_settings_is_refused(tmp_path: Path) -> None:
    path = arange_bin(tmp_path / "r.bin", 5000)
    state = PretrainBatches(path, 4, 8, seed=7).state_dict()
    with pytest.raises(UsageError, match="batch_size 4 → 8"):
        PretrainBatches(path, 8, 8, seed=7).load_state_dict(state)


def test_ranks_read_disjoint_slices(tmp_path: Path) -> None:
    n = 4000
    path = arange_bin(tmp_path / "r.bin", n)
    r0 = torch.cat([torch.cat(b) for b in take(PretrainBatches(path, 8, 16, 0, 0, 2), 20)])
    r1 = torch.cat([torch.cat(b) for b in take(PretrainBatches(path, 8, 16, 0, 1, 2), 20)])
    assert int(r0.max()) < n // 2 <= int(r1.min())
    assert int(r1.max()) < n


def test_validation_split_is_held_out(tmp_path: Path) -> None:
    path = arange_bin(tmp_path / "r.bin", 1000)
    train = torch.cat([b[1] for b in take(PretrainBatches(path, 8, 8, 0, val_fraction=0.2), 20)])
    val_it = PretrainBatches(path, 8, 8, 0, split="val", val_fraction=0.2)
    val = torch.cat([b[0] for b in take(val_it, 20)])
    assert int(train.max()) < 800 <= int(val.min())


def test_too_little_data_is_a_clear_error(tmp_path: Path) -> None:
    path = arange_bin(tmp_path / "r.bin", 40)
    PretrainBatches(path, 2, 16, seed=0)  # 40 tokens: enough for one rank
    with pytest.raises(UsageError, match="too few for windows of 17 in each of 4"):
        PretrainBatches(path, 2, 16, seed=0, rank=0, world_size=4)
    with pytest.raises(UsageError, match="rank 2"):
        PretrainBatches(path, 2, 16, seed=0, rank=2, world_size=2)


# --- SftBatches ----------------------------------------------------------------------------


def jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def ids(tok: Any, text: str) -> list[int]:
    return list(tok(text, add_special_tokens=False)["input_ids"])


def test_prompt_and_padding_are_masked(tmp_path: Path, tok: Any) -> None:
    path = jsonl(tmp_path / "s.jsonl", [{"prompt": "the cat", "response": " sat on"}])
    p, r = ids(tok, "the cat"), ids(tok, " sat on")
    assert (len(p), len(r)) == (2, 2)  # the hand-made example below depends on it
    eos, pad, m = tok.eos_token_id, tok.pad_token_id, IGNORE_INDEX
    x, y = next(SftBatches(path, tok, batch_size=1, max_len=8, seed=0))
    # sequence: p0 p1 r0 r1 EOS, padded to 8
    assert x.tolist() == [[p[0], p[1], r[0], r[1], eos, pad, pad, pad]]
    # position t predicts token t+1: nothing for prompt tokens, the response and EOS count
    assert y.tolist() == [[m, r[0], r[1], eos, m, m, m, m]]
    assert x.dtype == y.dtype == torch.int64


def test_masked_loss_counts_only_the_response(tmp_path: Path, tok: Any) -> None:
    path = jsonl(tmp_path / "s.jsonl", [{"prompt": "the cat", "response": " sat on"}])
    _, y = next(SftBatches(path, tok, 1, 8, seed=0))
    logits = torch.randn(1, 8, len(tok))
    loss = torch.nn.functional.cross_entropy(logits.view(-1, len(tok)), y.view(-1))
    keep = y[0] != IGNORE_INDEX
    by_hand = torch.nn.functional.cross_entropy(logits[0][keep], y[0][keep])
    assert keep.sum() == 3 and torch.allclose(loss, by_hand)


def test_empty_prompt_and_truncation(tmp_path: Path, tok: Any) -> None:
    long_response = " ".join(["dogs"] * 20)
    path = jsonl(
        tmp_path / "s.jsonl",
        [{"prompt": "", "response": "the cat"}, {"prompt": "the cat", "response": long_response}],
    )
    it = SftBatches(path, tok, 2, 6, seed=0)
    assert it.truncated == 1
    rows = {tuple(x): tuple(y) for x, y in zip(*(t.tolist() for t in next(it)), strict=True)}
    c = ids(tok, "the cat")
    m = IGNORE_INDEX
    # Empty prompt: the first token has no context, everything after it is learnt.
    assert rows[(c[0], c[1], tok.eos_token_id, *[tok.pad_token_id] * 3)] == (
        c[1], tok.eos_token_id, m, m, m, m,
    )  # fmt: skip
    # Too long: prompt kept, response cut to fit, no EOS (the response did not end).
    d = ids(tok, long_response)
    assert rows[(c[0], c[1], *d[:4])] == (m, *d[:4], m)


def test_epochs_reshuffle_and_ranks_split_records(tmp_path: Path, tok: Any) -> None:
    words = ["cat", "dogs", "mat", "hills", "rivers", "green", "lazy", "quickly", "over"]
    path = jsonl(tmp_path / "s.jsonl", [{"prompt": "the", "response": " " + w} for w in words])
    first = {ids(tok, " " + w)[0]: w for w in words}  # record ← its first response token

    def records(rank: int, batches: int) -> list[str]:
        it = SftBatches(path, tok, batch_size=2, max_len=6, seed=5, rank=rank, world_size=2)
        return [first[int(x[1])] for b in take(it, batches) for x in b[0]]

    r0, r1 = records(0, 8), records(1, 8)  # 16 records each: 4 per rank per epoch, 4 epochs
    epochs0 = [r0[i : i + 4] for i in range(0, 16, 4)]
    epochs1 = [r1[i : i + 4] for i in range(0, 16, 4)]
    for e0, e1 in zip(epochs0, epochs1, strict=True):
        assert len(set(e0)) == 4 and not set(e0) & set(e1)  # disjoint within an epoch
    assert len({tuple(e) for e in epochs0}) > 1  # a new order each epoch


def test_sft_resume_is_exact_across_epochs(tmp_path: Path, tok: Any) -> None:
    rows = [{"prompt": "the", "response": f" {w}"} for w in WORDS[:7]]
    path = jsonl(tmp_path / "s.jsonl", rows)
    straight = take(SftBatches(path, tok, 3, 6, seed=1), 9)
    it = SftBatches(path, tok, 3, 6, seed=1)
    take(it, 4)
    resumed = SftBatches(path, tok, 3, 6, seed=1)
    resumed.load_state_dict(json.loads(json.dumps(it.state_dict())))
    for (x, y), (x2, y2) in zip(take(resumed, 5), straight[4:], strict=True):
        assert torch.equal(x, x2) and torch.equal(y, y2)
    with pytest.raises(UsageError, match="seed 1 → 2"):
        SftBatches(path, tok, 3, 6, seed=2).load_state_dict(it.state_dict())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", r"s\.jsonl has no records \(empty file\)"),
        ('{"prompt": "a", "response": "b"}\n\n{"prompt": "a"\n', r"s\.jsonl:3: not valid JSON"),
        ('["a", "b"]\n', r"s\.jsonl:1: expected an object, got list"),
        ('{"prompt": "a"}\n', r's\.jsonl:1: missing field "response"'),
        ('{"prompt": 3, "response": "b"}\n', r's\.jsonl:1: field "prompt" is int, not a string'),
        ('{"prompt": "a", "response": ""}\n', r's\.jsonl:1: empty "response"'),
    ],
)
def test_sft_bad_input_names_file_and_line(
    tmp_path: Path, tok: Any, content: str, message: str
) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text(content)
    with pytest.raises(UsageError, match=message) as info:
        SftBatches(path, tok, 1, 8, seed=0)
    assert info.value.fix


def test_sft_prompt_longer_than_max_len(tmp_path: Path, tok: Any) -> None:
    rows = [{"prompt": "the", "response": " cat"}, {"prompt": "the cat sat on", "response": "x"}]
    path = jsonl(tmp_path / "s.jsonl", rows)
    with pytest.raises(UsageError, match=r"s\.jsonl:2: the prompt is 4 tokens.*max_len 4"):
        SftBatches(path, tok, 1, 4, seed=0)
    with pytest.raises(UsageError, match="does not exist"):
        SftBatches(tmp_path / "none.jsonl", tok, 1, 4, seed=0)


def test_sft_fewer_records_than_ranks(tmp_path: Path, tok: Any) -> None:
    path = jsonl(tmp_path / "s.jsonl", [{"prompt": "a", "response": "b"}])
    with pytest.raises(UsageError, match=r"record\(s\) in .* for 2 processes"):
        SftBatches(path, tok, 1, 8, seed=0, rank=1, world_size=2)


def test_files_are_written_atomically(tmp_path: Path, tok: Any) -> None:
    src = write_text(tmp_path / "a.txt", 5, 1)
    tokenize_to_bin([src], tok, tmp_path / "a.bin")
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_rank0_state_resumes_every_rank(tmp_path: Path) -> None:
    path = arange_bin(tmp_path / "r.bin", 5000)
    straight = take(PretrainBatches(path, 4, 8, seed=3, rank=1, world_size=2), 5)
    rank0 = PretrainBatches(path, 4, 8, seed=3, rank=0, world_size=2)
    take(rank0, 2)
    rank1 = PretrainBatches(path, 4, 8, seed=3, rank=1, world_size=2)
    rank1.load_state_dict(rank0.state_dict())
    assert all(torch.equal(a[0], b[0]) for a, b in zip(take(rank1, 3), straight[2:], strict=True))


def test_resume_on_other_data_is_refused(tmp_path: Path) -> None:
    state = PretrainBatches(arange_bin(tmp_path / "a.bin", 5000), 4, 8, seed=7).state_dict()
    with pytest.raises(UsageError, match="tokens 5000 → 6000"):
        PretrainBatches(arange_bin(tmp_path / "b.bin", 6000), 4, 8, seed=7).load_state_dict(state)


def test_distinct_bos_is_prepended_as_prompt(tmp_path: Path, tok: Any) -> None:
    from transformers import PreTrainedTokenizerFast

    # A Llama-3-like tokenizer: BOS ≠ EOS (here the pad token's id plays BOS).
    llama_like = PreTrainedTokenizerFast(
        tokenizer_object=tok.backend_tokenizer,
        bos_token="<|pad|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    bos, eos = llama_like.bos_token_id, llama_like.eos_token_id
    path = jsonl(tmp_path / "s.jsonl", [{"prompt": "the cat", "response": " sat on"}])
    p, r = ids(tok, "the cat"), ids(tok, " sat on")
    x, y = next(SftBatches(path, llama_like, 1, 7, seed=0))
    m = IGNORE_INDEX
    assert x.tolist() == [[bos, *p, *r, eos, eos]]
    assert y.tolist() == [[m, m, r[0], r[1], eos, m, m]]
