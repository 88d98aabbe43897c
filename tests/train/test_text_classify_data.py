"""The text-classify recipe's data pieces: reading CSV/JSONL rows, class names, the
stratified hold-out, the WordPiece tokenizer, the token cache and the resumable batches.

`make_tickets` (customer-service intents from templates with keywords and random filler
words) is also the data of the end-to-end tests in test_text_classify.py."""

from __future__ import annotations

import csv
import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
import torch

from torchrig.errors import UsageError
from torchrig.recipes.text_classify import data as data_mod
from torchrig.recipes.text_classify import tokenizer as tok_mod
from torchrig.recipes.text_classify.config import PRESETS, from_preset
from torchrig.recipes.text_classify.rows import (
    class_names,
    encode_labels,
    read_rows,
    stratified_split,
)

INTENTS = {
    "refund": [
        "i want a refund for the {item}",
        "please give me my money back for the {item}",
        "refund the charge for my {item}",
        "the {item} was broken so i need a refund",
    ],
    "password reset": [
        "i forgot my password",
        "reset my password please",
        "i cannot log in and need a new password",
        "the password reset link does not work",
    ],
    "shipping delay": [
        "my {item} has not arrived yet",
        "where is my package with the {item}",
        "the delivery of my {item} is late",
        "shipping is taking too long",
    ],
    "cancel": [
        "cancel my subscription",
        "i want to cancel the order for the {item}",
        "please stop my plan and cancel it",
        "cancel my account now",
    ],
}
FILLER = ["hello", "hi", "thanks", "today", "again", "really", "please", "urgent", "support"]
FILLER += ["team", "so", "very", "my", "a", "of"]
ITEMS = ["shoes", "laptop", "phone", "book", "jacket", "headphones", "chair", "lamp"]


def ticket_rows(
    n: int, seed: int = 0, labels: list[str] | None = None, filler: int = 6
) -> list[dict[str, Any]]:
    """n tickets cycling through `labels` (default all four intents): a template with the
    intent's keywords, an item, and 1..filler filler words inserted at random places."""
    rng = random.Random(seed)
    names = labels or sorted(INTENTS)
    out = []
    for i in range(n):
        label = names[i % len(names)]
        words = rng.choice(INTENTS[label]).format(item=rng.choice(ITEMS)).split()
        for _ in range(rng.randint(1, filler)):
            words.insert(rng.randrange(len(words) + 1), rng.choice(FILLER))
        out.append({"id": f"T{seed}-{i}", "text": " ".join(words), "label": label})
    return out


def write_rows(path: Path, rows: list[dict[str, Any]], columns: list[str] | None = None) -> Path:
    """CSV or JSONL by the extension of `path`."""
    if path.suffix == ".csv":
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, columns or list(rows[0]), extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    else:
        with path.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
    return path


def make_tickets(path: Path, n: int = 800, seed: int = 0, **kw: Any) -> Path:
    return write_rows(path, ticket_rows(n, seed, **kw))


# --- rows -----------------------------------------------------------------------------


def test_csv_and_jsonl_give_the_same_rows(tmp_path: Path) -> None:
    rows = ticket_rows(20)
    a = read_rows(write_rows(tmp_path / "t.csv", rows))
    b = read_rows(write_rows(tmp_path / "t.jsonl", rows))
    assert a.texts == b.texts == [r["text"] for r in rows]
    assert a.labels == b.labels == [r["label"] for r in rows]
    assert a.ids == b.ids == [r["id"] for r in rows]  # the id column names rows


def test_rows_without_an_id_are_named_by_row_and_empty_ones_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(
        'text,label\nhello there,a\n"  ",b\nno label here,\n"two\nlines",b\n', encoding="utf-8"
    )
    rows = read_rows(path)
    # Spreadsheet rows: the header is row 1; a quoted newline does not start a row.
    assert rows.ids == ["row 2", "row 5"]
    assert rows.texts == ["hello there", "two\nlines"]
    assert (rows.skipped_empty, rows.skipped_unlabelled) == (1, 1)
    assert any("1 row(s) with empty text" in n for n in rows.notes())
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"text": "x", "label": 1}\n\n{"text": null, "label": 2}\n')
    rows = read_rows(jsonl)
    assert rows.ids == ["row 1"] and rows.labels == ["1"] and rows.skipped_empty == 1


def test_the_label_and_text_columns_can_be_renamed(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "t.csv", [{"body": "hi", "intent": "x"}])
    rows = read_rows(path, text_column="body", label_column="intent")
    assert rows.texts == ["hi"] and rows.labels == ["x"]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("t.csv", "text,intent\nhi,x\n", "no column 'label' (its columns: 'text', 'intent')"),
        ("t.jsonl", '{"body": "hi", "label": "x"}\n', "no column 'text' (its columns: 'body'"),
        ("t.csv", "", "is empty"),
        ("t.jsonl", "\n\n", "has no rows"),
        ("t.csv", "text,label\n", "has no usable rows"),
        ("t.csv", "text,label\n ,a\n", "has no usable rows (skipped: 1 with empty text"),
        ("t.jsonl", '{"text": "hi", "label": 1.5}\n', "label 1.5 is float"),
        ("t.jsonl", '{"text": "hi", "label": "a"}\n{"text": \n', "t.jsonl:2: not valid JSON"),
        ("t.jsonl", '["hi", "a"]\n', "expected an object, got list"),
        ("t.txt", "hi\n", "unknown data format '.txt'"),
    ],
)
def test_bad_files_are_one_clear_error(
    tmp_path: Path, name: str, content: str, expected: str
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UsageError) as err:
        read_rows(path)
    assert expected in err.value.one_line()
    assert "\n" not in err.value.one_line()


def test_a_missing_file_and_a_folder_are_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        read_rows(tmp_path / "nope.csv")
    with pytest.raises(UsageError, match="is not a file"):
        read_rows(tmp_path)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\ncaf\xe9,a\n".encode("latin-1"))
    with pytest.raises(UsageError, match="not UTF-8"):
        read_rows(latin)


def test_class_names_sort_integers_numerically() -> None:
    assert class_names(["10", "2", "1", "2"]) == ["1", "2", "10"]
    assert class_names(["refund", "cancel", "10"]) == ["10", "cancel", "refund"]


def test_an_unknown_label_names_its_row(tmp_path: Path) -> None:
    rows = read_rows(write_rows(tmp_path / "v.csv", [{"id": "x7", "text": "hi", "label": "c"}]))
    with pytest.raises(UsageError) as err:
        encode_labels(rows, ["a", "b"])
    assert "v.csv x7: validation label 'c' is not among the training labels (a, b)" in str(
        err.value
    )


def test_the_hold_out_is_stratified_deterministic_and_keeps_single_examples() -> None:
    labels = [0] * 50 + [1] * 30 + [2] * 19 + [3]
    train, val = stratified_split(labels, 0.1, seed=5)
    assert sorted(train + val) == list(range(100)) and not set(train) & set(val)
    assert len(val) == 10
    per_class = [sum(1 for i in val if labels[i] == c) for c in range(4)]
    assert per_class == [5, 3, 2, 0]  # 19 · 0.1 = 1.9 rounds up by the largest remainder
    assert stratified_split(labels, 0.1, seed=5) == (train, val)
    assert stratified_split(labels, 0.1, seed=6)[1] != val  # the seed picks the rows
    with pytest.raises(UsageError, match="too few to hold out"):
        stratified_split([0, 1, 2], 0.1, seed=0)


# --- tokenizer ------------------------------------------------------------------------


def _texts(n: int = 400) -> list[str]:
    return [r["text"] for r in ticket_rows(n)]


def test_trained_tokenizer_is_bert_style_and_reloads(tmp_path: Path) -> None:
    folder = tmp_path / "tok"
    tok = tok_mod.load_or_train(None, _texts(), folder, vocab_size=300)
    assert tok.convert_ids_to_tokens(list(range(5))) == list(tok_mod.SPECIAL_TOKENS)
    assert tok.pad_token_id == 0 and tok_mod.lowercases(tok)
    ids = tok("Please REFUND my Laptop")["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["[CLS]", "please", "refund", "my", "laptop", "[SEP]"]
    # Saved as a transformers tokenizer: loadable by AutoTokenizer, encoding alike.
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    assert again("Please REFUND my Laptop")["input_ids"] == ids
    assert tok_mod.tokenizer_fingerprint(again) == tok_mod.tokenizer_fingerprint(tok)
    assert len(tok) <= 300


def test_trained_tokenizer_is_reused_only_while_the_texts_are_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "tok"
    texts = _texts()
    tok_mod.load_or_train(None, texts, folder, vocab_size=300)
    saved = (folder / "tokenizer.json").read_bytes()

    def no_training(*_: Any) -> Any:
        raise AssertionError("trained again")

    monkeypatch.setattr(tok_mod, "train_wordpiece", no_training)
    tok_mod.load_or_train(None, texts, folder, vocab_size=300)
    assert (folder / "tokenizer.json").read_bytes() == saved
    with pytest.raises(AssertionError, match="trained again"):
        tok_mod.load_or_train(None, [*texts, "one more ticket"], folder, vocab_size=300)
    with pytest.raises(AssertionError, match="trained again"):
        tok_mod.load_or_train(None, texts, folder, vocab_size=400)


def test_a_given_tokenizer_folder_must_hold_one(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        tok_mod.load_tokenizer(tmp_path / "nope")
    with pytest.raises(UsageError, match="has no tokenizer files"):
        tok_mod.load_tokenizer(tmp_path)
    with pytest.raises(UsageError, match="too small"):
        tok_mod.load_or_train(None, _texts(), tmp_path / "t", vocab_size=20)


# --- token cache and batches ----------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return tok_mod.load_or_train(None, _texts(), tmp_path_factory.mktemp("tok"), 300)


def test_encoding_truncates_and_pads_on_the_right(tokenizer: Any) -> None:
    enc = data_mod.encode(["refund", "a b c d e f g h i j k l"], tokenizer, max_length=6)
    assert enc.ids.shape == (2, 6) and enc.ids.dtype.name == "int32"
    assert enc.lengths.tolist() == [3, 6]
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert enc.ids[0].tolist() == [cls, tokenizer.convert_tokens_to_ids("refund"), sep, 0, 0, 0]
    assert enc.ids[1, 0] == cls and enc.ids[1, -1] == sep  # cut, still ends with [SEP]


def test_the_token_cache_is_reused_while_its_fingerprint_holds(
    tmp_path: Path, tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = make_tickets(tmp_path / "t.csv", n=50)
    texts = read_rows(source).texts
    cache = tmp_path / "data" / "train.npz"
    first, reused = data_mod.encode_cached(texts, tokenizer, 16, cache, source, "text")
    assert not reused and cache.is_file() and cache.with_suffix(".json").is_file()

    real_encode = data_mod.encode
    calls: list[int] = []

    def counting(*args: Any) -> Any:
        calls.append(1)
        return real_encode(*args)

    monkeypatch.setattr(data_mod, "encode", counting)
    again, reused = data_mod.encode_cached(texts, tokenizer, 16, cache, source, "text")
    assert reused and not calls
    assert (again.ids == first.ids).all() and (again.lengths == first.lengths).all()
    # Another length, another text column or a changed file: tokenized again.
    assert not data_mod.encode_cached(texts, tokenizer, 24, cache, source, "text")[1]
    assert not data_mod.encode_cached(texts, tokenizer, 24, cache, source, "body")[1]
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert not data_mod.encode_cached(texts, tokenizer, 24, cache, source, "body")[1]
    assert len(calls) == 3
    # A torn cache file (its sidecar survived): not trusted, made again.
    cache.write_bytes(b"torn")
    assert not data_mod.encode_cached(texts, tokenizer, 24, cache, source, "body")[1]
    assert not [p for p in cache.parent.iterdir() if p.name.startswith(".")]  # no temporaries


def _encoded(n: int, length: int = 8) -> data_mod.Encoded:
    import numpy as np

    ids = np.arange(n * length, dtype=np.int32).reshape(n, length)
    lengths = (np.arange(n, dtype=np.int32) % (length - 1)) + 2
    return data_mod.Encoded(ids, lengths)


def test_batches_have_fixed_shapes_and_masks_that_match_the_lengths() -> None:
    enc = _encoded(10)
    (ids, mask), y = next(data_mod.TrainBatches(enc, list(range(10)), 4, seed=0))
    assert ids.shape == mask.shape == (4, 8) and y.shape == (4,)
    assert ids.dtype == mask.dtype == y.dtype == torch.int64
    for row, label in enumerate(y.tolist()):
        # Row `label` of the data (labels are row numbers here): its ids and its length.
        assert ids[row].tolist() == enc.ids[label].tolist()
        assert mask[row].tolist() == [1] * enc.lengths[label] + [0] * (8 - enc.lengths[label])


def test_every_epoch_visits_every_row_once_in_a_seeded_order() -> None:
    labels = list(range(10))
    batches = data_mod.TrainBatches(_encoded(10), labels, 5, seed=3)
    seen = [next(batches)[1].tolist() for _ in range(4)]  # two epochs
    epoch0, epoch1 = seen[0] + seen[1], seen[2] + seen[3]
    assert sorted(epoch0) == sorted(epoch1) == labels and epoch0 != epoch1
    other = data_mod.TrainBatches(_encoded(10), labels, 5, seed=4)
    assert next(other)[1].tolist() + next(other)[1].tolist() != epoch0


def test_resuming_yields_what_the_uninterrupted_iterator_would() -> None:
    labels = list(range(13))
    straight = data_mod.TrainBatches(_encoded(13), labels, 4, seed=1)
    expected = [next(straight)[1].tolist() for _ in range(9)]  # batches cross epochs
    first = data_mod.TrainBatches(_encoded(13), labels, 4, seed=1)
    got = [next(first)[1].tolist() for _ in range(4)]
    state = first.state_dict()
    resumed = data_mod.TrainBatches(_encoded(13), labels, 4, seed=1)
    resumed.load_state_dict(state)
    got += [next(resumed)[1].tolist() for _ in range(5)]
    assert got == expected
    with pytest.raises(UsageError, match="batch_size 4 → 5"):
        data_mod.TrainBatches(_encoded(13), labels, 5, seed=1).load_state_dict(state)
    with pytest.raises(UsageError, match="rows 13 → 12"):
        data_mod.TrainBatches(_encoded(12), labels[:12], 4, seed=1).load_state_dict(state)


def test_ranks_draw_disjoint_rows_of_equal_count() -> None:
    labels = list(range(11))
    ranks = [data_mod.TrainBatches(_encoded(11), labels, 5, seed=2, rank=r, world_size=2)
             for r in range(2)]  # fmt: skip
    a, b = (next(r)[1].tolist() for r in ranks)
    assert len(a) == len(b) == 5 and not set(a) & set(b)
    with pytest.raises(UsageError, match=r"3 training row\(s\) for 4 processes"):
        data_mod.TrainBatches(_encoded(3), [0, 1, 2], 2, seed=0, rank=0, world_size=4)


def test_evaluation_batches_cover_the_rows_once_in_order() -> None:
    enc = _encoded(7)
    ids = [f"row {i}" for i in range(7)]
    batches = list(data_mod.eval_batches(enc, list(range(7)), ids, batch_size=3))
    assert [len(b[2]) for b in batches] == [3, 3, 1]
    assert [y for b in batches for y in b[1].tolist()] == list(range(7))
    assert [i for b in batches for i in b[2]] == ids
    assert batches[2][0][0].tolist() == [enc.ids[6].tolist()]


# --- config ---------------------------------------------------------------------------


def test_flags_override_the_preset_and_warmup_follows_the_steps() -> None:
    cfg = from_preset("tiny", data=Path("x.csv"), out=Path("o"), lr=1e-2, steps=None)
    assert cfg.lr == 1e-2 and cfg.steps == PRESETS["tiny"]["steps"] and cfg.model == "tiny-bert"
    base = from_preset("bert-base", out=Path("o"))
    assert (base.max_length, base.micro_batch, base.lr) == (128, 32, 5e-5)
    assert base.warmup == round(0.06 * base.steps)
    assert from_preset("bert-base", out=Path("o"), steps=1000).warmup == 60
    assert from_preset("bert-base", out=Path("o"), steps=1000, warmup=7).warmup == 7
    with pytest.raises(UsageError, match="unknown preset 'huge'"):
        from_preset("huge", out=Path("o"))
    with pytest.raises(UsageError, match="no training data"):
        from_preset("tiny", out=Path("o")).check()
    with pytest.raises(UsageError, match="--val-fraction"):
        from_preset("tiny", data=Path("x.csv"), out=Path("o"), val_fraction=1.0).check()


def test_a_long_csv_field_is_read(tmp_path: Path) -> None:
    long_text = "refund " * 50_000  # 350 kB: over csv's default field limit of 128 KiB
    rows = read_rows(write_rows(tmp_path / "t.csv", [{"text": long_text, "label": "a"}]))
    assert rows.texts == [long_text]
