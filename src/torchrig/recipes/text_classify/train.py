"""Fine-tune a text classifier: rows → tokenizer → token arrays → BERT → the shared loop.

    python -m torchrig.recipes.text_classify --preset tiny --data tickets.csv --out runs/x
    torchrun --nproc-per-node 2 -m torchrig.recipes.text_classify --preset bert-base ...

`build_task` puts the recipe's pieces together into a ClassifyTask; the shared loop
(torchrig.recipes.classify.loop) does the rest: precision, compile, DDP, the optimizer and
schedule, the (optionally class-weighted) loss, logging, checkpoints, evaluation and
OUT/final. Under torchrun, rank 0 trains the tokenizer and tokenizes while the others
wait, then they read what it wrote.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from torchrig.errors import UsageError
from torchrig.recipes.classify.task import ClassifyTask
from torchrig.recipes.text_classify import data as data_mod
from torchrig.recipes.text_classify import model as model_mod
from torchrig.recipes.text_classify import rows as rows_mod
from torchrig.recipes.text_classify import tokenizer as tok_mod
from torchrig.recipes.text_classify.config import TextClassifyConfig
from torchrig.train import distributed as D
from torchrig.train.result import RunResult
from torchrig.train.signals import StopFlag

RECIPE = "text-classify"
TOKENIZER_DIR = "tokenizer"  # in OUT and in OUT/final; classifier.json names it

Say = Callable[[str], None]


def train(cfg: TextClassifyConfig, stop: StopFlag | None = None, say: Say = print) -> RunResult:
    from torchrig.recipes.classify.loop import run

    return run(cfg, lambda dist, work: build_task(replace(cfg, out=work), dist), stop=stop, say=say)


def _split(cfg: TextClassifyConfig, notes: list[str]) -> dict[str, Any]:
    """Training and evaluation rows: --val, or a stratified hold-out of --data."""
    assert cfg.data is not None  # cfg.check() said so
    read = {"text_column": cfg.text_column, "label_column": cfg.label_column}
    rows = rows_mod.read_rows(cfg.data, id_column=cfg.id_column, **read)
    notes += rows.notes()
    if cfg.val is not None:
        val_rows = rows_mod.read_rows(cfg.val, id_column=cfg.id_column, **read)
        notes += val_rows.notes()
        labels = rows_mod.class_names(rows.labels)
        return {
            "labels": labels,
            "rows": rows,
            "val_rows": val_rows,
            "train_index": None,
            "val_index": None,
            "train_y": rows_mod.encode_labels(rows, labels, "training"),
            "val_y": rows_mod.encode_labels(val_rows, labels),
        }
    labels = rows_mod.class_names(rows.labels)
    y = rows_mod.encode_labels(rows, labels, "training")
    train_index, val_index = rows_mod.stratified_split(y, cfg.val_fraction, cfg.seed)
    singles = [labels[c] for c in range(len(labels)) if y.count(c) == 1]
    note = f"validation: {len(val_index)} of {len(y)} rows of {cfg.data} held out, stratified"
    if singles:
        note += f"; single-example classes kept in training only: {', '.join(singles)}"
    notes.append(note)
    return {
        "labels": labels,
        "rows": rows,
        "val_rows": rows,
        "train_index": train_index,
        "val_index": val_index,
        "train_y": [y[i] for i in train_index],
        "val_y": [y[i] for i in val_index],
    }


def _tokenizer(
    cfg: TextClassifyConfig, train_texts: list[str], dist: D.Dist, notes: list[str]
) -> Any:
    given = cfg.tokenizer
    if given is None and cfg.model_path is not None and tok_mod.has_tokenizer(cfg.model_path):
        given = cfg.model_path  # the model's own tokenizer
    folder = cfg.out / TOKENIZER_DIR
    tokenizer: Any = None
    if dist.is_main:
        began = time.perf_counter()
        tokenizer = tok_mod.load_or_train(given, train_texts, folder, cfg.vocab_size)
        if given is None:
            notes.append(
                f"tokenizer: {len(tokenizer)} tokens, WordPiece on the training texts "
                f"({folder}, {time.perf_counter() - began:.1f} s)"
            )
    D.barrier(dist)
    if not dist.is_main:
        tokenizer = tok_mod.load_tokenizer(given if given is not None else folder)
    return tokenizer


def _encode(
    cfg: TextClassifyConfig,
    rows: rows_mod.Rows,
    name: str,
    tokenizer: Any,
    dist: D.Dist,
    notes: list[str],
) -> data_mod.Encoded:
    cache = cfg.out / "data" / f"{name}.npz"

    def encode() -> tuple[data_mod.Encoded, bool]:
        return data_mod.encode_cached(
            rows.texts, tokenizer, cfg.max_length, cache, rows.path, cfg.text_column
        )

    if dist.is_main:
        began = time.perf_counter()
        encoded, reused = encode()
        seconds = time.perf_counter() - began
        full = float((encoded.lengths == cfg.max_length).mean())
        notes.append(
            f"tokens: {len(encoded)} rows of {rows.path} "
            + ("from the cache" if reused else "tokenized")
            + f" ({cache}, {seconds:.1f} s); {full:.0%} fill all {cfg.max_length} tokens "
            "(longer texts are cut)"
        )
    D.barrier(dist)
    if not dist.is_main:
        encoded, _ = encode()  # rank 0 wrote it: a load
    return encoded


def _model(cfg: TextClassifyConfig, labels: list[str], tokenizer: Any) -> model_mod.TextClassifier:
    import torch

    # The same seed on every rank: the same initial weights (DDP also broadcasts rank 0's).
    torch.manual_seed(cfg.seed)
    if cfg.model_path is not None:
        model = model_mod.load_pretrained(cfg.model_path, labels)
        if model_mod.vocab_rows(model) < len(tokenizer):
            raise UsageError(
                f"the tokenizer has {len(tokenizer)} tokens, more than the model's embedding "
                f"({model_mod.vocab_rows(model)})",
                "use the tokenizer that came with the model (--tokenizer)",
            )
    else:
        model = model_mod.build_model(cfg.model, len(tokenizer), labels, tokenizer.pad_token_id)
    if cfg.max_length > model_mod.max_positions(model):
        raise UsageError(
            f"--max-length {cfg.max_length} is longer than the model's "
            f"{model_mod.max_positions(model)} positions",
            f"use --max-length {model_mod.max_positions(model)} or less",
        )
    return model


def build_task(cfg: TextClassifyConfig, dist: D.Dist) -> ClassifyTask:
    import numpy as np

    notes: list[str] = []
    split = _split(cfg, notes)
    labels: list[str] = split["labels"]
    if len(labels) < 2:
        raise UsageError(
            f"{cfg.data}: every row has the label {labels[0]!r}; a classifier needs two classes "
            "or more",
            f"check --label-column (now {cfg.label_column!r})",
        )
    rows: rows_mod.Rows = split["rows"]
    train_index = split["train_index"]
    train_texts = rows.texts if train_index is None else [rows.texts[i] for i in train_index]
    tokenizer = _tokenizer(cfg, train_texts, dist, notes)

    encoded = _encode(cfg, rows, "train", tokenizer, dist, notes)
    if cfg.val is None:
        train_data = encoded.take(train_index)
        val_data = encoded.take(split["val_index"])
        val_ids = [rows.ids[i] for i in split["val_index"]]
    else:
        val_rows: rows_mod.Rows = split["val_rows"]
        train_data = encoded
        val_data = _encode(cfg, val_rows, "val", tokenizer, dist, notes)
        val_ids = val_rows.ids
    train_y: list[int] = split["train_y"]
    val_y: list[int] = split["val_y"]

    model = _model(cfg, labels, tokenizer)
    batches = data_mod.TrainBatches(
        train_data, train_y, cfg.micro_batch, cfg.seed, dist.rank, dist.world_size
    )

    def evaluate() -> Any:
        return data_mod.eval_batches(val_data, val_y, val_ids, cfg.eval_batch)

    def save_tokenizer(final: Path) -> None:
        tokenizer.save_pretrained(final / TOKENIZER_DIR)

    return ClassifyTask(
        recipe=RECIPE,
        model=model,
        labels=labels,
        train=batches,
        evaluate=evaluate,
        train_counts=np.bincount(np.asarray(train_y), minlength=len(labels)).tolist(),
        meta=_meta(cfg, model, tokenizer),
        flops_per_sample=model_mod.flops_per_sample(model, cfg.max_length),
        unit="sequences",
        save_extra=save_tokenizer,
        notes=notes,
        static_shapes=True,  # always [micro_batch, max_length] (data.TrainBatches)
    )


def _meta(
    cfg: TextClassifyConfig, model: model_mod.TextClassifier, tokenizer: Any
) -> dict[str, Any]:
    """classifier.json's "model" and "preprocess": what export.build_model needs to rebuild
    the module, and what a server must do to a text to get the inputs it was trained on."""
    return {
        "model": {
            "source": str(cfg.model_path) if cfg.model_path is not None else cfg.model,
            "class": type(model.model).__name__,
            "config": model.model.config.to_dict(),
        },
        "preprocess": {
            "tokenizer": TOKENIZER_DIR,  # relative to the folder of classifier.json
            "max_length": cfg.max_length,
            "add_special_tokens": True,  # [CLS] text [SEP]
            "truncation": "right",  # tokens past max_length are dropped
            "padding": "right, to max_length",  # any length up to max_length works too
            "pad_token_id": tokenizer.pad_token_id,
            "lowercase": tok_mod.lowercases(tokenizer),  # done by the tokenizer itself
            "inputs": ["input_ids", "attention_mask"],
            "text_column": cfg.text_column,
        },
    }
