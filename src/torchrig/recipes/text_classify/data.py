"""Token arrays for the text classifier: encoded once, cached, served as fixed-shape batches.

Encoding (`encode_cached`). Each data file's usable rows are tokenized once ("[CLS] text
[SEP]", truncated on the right to max_length, padded on the right) into two arrays:
input ids int32 [N, max_length] and lengths int32 [N] (real tokens per row; the attention
mask is `position < length`, as the padding is on the right). They are cached in
OUT/data/NAME.npz with a JSON sidecar NAME.json holding the fingerprint of what made them:
the file's path, size and modification time, the text column, the tokenizer's fingerprint
and max_length. A later run (a resume, a second run in the same folder) with the same
fingerprint loads the arrays instead of tokenizing again. Both files are written
atomically, the sidecar last, so a crash leaves no sidecar and no reuse.

Training batches (`TrainBatches`) are ((input_ids, attention_mask), labels): int64 CPU
tensors [B, max_length], [B, max_length] and [B]. Always the full max_length, so
torch.compile sees one shape. Epoch e's order is a permutation seeded by (seed, e); rank r
of W takes every W-th row of it, and each epoch's last N % W rows are left out so that
ranks see equal counts (the rows left out differ from epoch to epoch). A rank's batches run
on across epoch boundaries. The state is the position in this stream, the same on every
rank: after `load_state_dict` the iterator yields exactly what the uninterrupted one would
have.

Evaluation batches (`eval_batches`): the evaluation rows once, in order, with their ids.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchrig.errors import UsageError
from torchrig.fsutil import write_atomically
from torchrig.recipes.causal_lm.tokenizer import source_stamp
from torchrig.recipes.text_classify.tokenizer import tokenizer_fingerprint
from torchrig.train.sampling import EpochOrder

CACHE_FORMAT = 1
# Rows per call of the tokenizer: big enough to keep its Rust threads busy, small enough
# that the Python lists of one chunk stay small next to the arrays.
_CHUNK = 8192


@dataclass
class Encoded:
    """Token arrays of some rows: ids int32 [N, max_length], lengths int32 [N]."""

    ids: Any
    lengths: Any

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def take(self, index: Sequence[int]) -> Encoded:
        import numpy as np

        at = np.asarray(index, dtype=np.int64)
        return Encoded(self.ids[at], self.lengths[at])


def encode(texts: list[str], tokenizer: Any, max_length: int) -> Encoded:
    """Tokenize texts into fixed-width arrays (no cache)."""
    import numpy as np

    if max_length < 2:
        raise UsageError(f"--max-length must be at least 2, not {max_length}", "e.g. 128")
    pad = tokenizer.pad_token_id
    ids: Any = np.full((len(texts), max_length), pad, dtype=np.int32)
    lengths: Any = np.zeros(len(texts), dtype=np.int32)
    for start in range(0, len(texts), _CHUNK):
        chunk = texts[start : start + _CHUNK]
        enc = tokenizer(
            chunk,
            truncation=True,
            max_length=max_length,
            padding=False,
            add_special_tokens=True,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        for j, row in enumerate(enc):
            ids[start + j, : len(row)] = row
            lengths[start + j] = len(row)
    return Encoded(ids, lengths)


def _fingerprint(source: Path, text_column: str, tokenizer: Any, max_length: int) -> dict[str, Any]:
    return {
        "format": CACHE_FORMAT,
        "source": source_stamp([source])[0],
        "text_column": text_column,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "max_length": max_length,
    }


def encode_cached(
    texts: list[str],
    tokenizer: Any,
    max_length: int,
    cache: Path,
    source: Path,
    text_column: str,
) -> tuple[Encoded, bool]:
    """(arrays, whether the cache was reused). `cache` is the .npz path; `texts` must be
    the usable rows of `source` read with `text_column` (the fingerprint stands for them).

    Under DDP call it on rank 0 and let the others wait, then call it again on every rank:
    the others then load what rank 0 wrote.
    """
    import numpy as np

    cache = Path(cache)
    sidecar = cache.with_suffix(".json")
    wanted = _fingerprint(source, text_column, tokenizer, max_length)
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        if isinstance(meta, dict) and meta.get("fingerprint") == wanted:
            with np.load(cache, allow_pickle=False) as arrays:
                found = Encoded(arrays["ids"], arrays["lengths"])
            if found.ids.shape == (len(texts), max_length) and len(found) == len(texts):
                return found, True
    except (OSError, ValueError, KeyError):
        pass  # absent, stale or torn: encode again

    encoded = encode(texts, tokenizer, max_length)
    cache.parent.mkdir(parents=True, exist_ok=True)
    sidecar.unlink(missing_ok=True)  # no stale sidecar beside a new file
    fd, tmp = tempfile.mkstemp(prefix=f".{cache.name}.", suffix=".tmp", dir=cache.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, ids=encoded.ids, lengths=encoded.lengths)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).chmod(0o644)
        Path(tmp).replace(cache)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    record = {"fingerprint": wanted, "rows": len(encoded)}
    write_atomically(sidecar, json.dumps(record, indent=2) + "\n")
    return encoded, False


def _masked(ids: Any, lengths: Any) -> tuple[Any, Any]:
    """int64 tensors (input_ids, attention_mask) from arrays of right-padded rows."""
    import numpy as np
    import torch

    mask = np.arange(ids.shape[1], dtype=np.int32)[None, :] < lengths[:, None]
    return torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(mask.astype(np.int64))


def _check_same(mine: dict[str, Any], saved: dict[str, Any], keys: tuple[str, ...]) -> None:
    changed = [f"{k} {saved.get(k)!r} → {mine[k]!r}" for k in keys if saved.get(k) != mine[k]]
    if changed:
        raise UsageError(
            "cannot resume the data position: " + ", ".join(changed),
            "resume with the settings and data of the checkpoint, or start a new run",
        )


class TrainBatches:
    """Endless, exactly resumable training batches (see the module docstring)."""

    def __init__(
        self,
        data: Encoded,
        labels: Sequence[int],
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        import numpy as np

        if batch_size < 1:
            raise UsageError(f"the batch size must be at least 1, not {batch_size}")
        if len(labels) != len(data):
            raise ValueError(f"{len(labels)} labels for {len(data)} rows")
        self.data = data
        self.labels = np.asarray(labels, dtype=np.int64)
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.n_rows = len(data)
        self.order = EpochOrder(self.n_rows, seed, rank, world_size, "training row(s)")
        self.per_rank = self.order.per_rank
        self.position = 0  # rows of this rank's stream consumed so far

    def __iter__(self) -> Iterator[tuple[tuple[Any, Any], Any]]:
        return self

    def __next__(self) -> tuple[tuple[Any, Any], Any]:
        import torch

        at = self.order.indices(self.position, self.batch_size)
        self.position += self.batch_size
        inputs = _masked(self.data.ids[at], self.data.lengths[at])
        return inputs, torch.from_numpy(self.labels[at])

    def state_dict(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "seed": self.seed,
            "world_size": self.world_size,
            "batch_size": self.batch_size,
            "rows": self.n_rows,
            "max_length": int(self.data.ids.shape[1]),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # The row count and width stand for the data: other data would give other batches.
        keys = ("seed", "world_size", "batch_size", "rows", "max_length")
        _check_same(self.state_dict(), state, keys)
        self.position = int(state["position"])


def eval_batches(
    data: Encoded, labels: Sequence[int], ids: Sequence[str], batch_size: int
) -> Iterator[tuple[tuple[Any, Any], Any, list[str]]]:
    """The rows once, in order: ((input_ids, attention_mask), labels, row ids)."""
    import numpy as np
    import torch

    all_labels = np.asarray(labels, dtype=np.int64)
    for start in range(0, len(data), batch_size):
        stop = min(start + batch_size, len(data))
        inputs = _masked(data.ids[start:stop], data.lengths[start:stop])
        yield inputs, torch.from_numpy(all_labels[start:stop]), list(ids[start:stop])
