"""Data for the causal-LM recipe: cheap enough to feed 500k tokens/s to one GPU.

Pretraining. Text is tokenized once (`tokenize_to_bin`) into a flat file of token ids,
documents separated by EOS, with a JSON sidecar; training memory-maps it and cuts random
windows of seq_len + 1 tokens (`PretrainBatches`): one numpy gather per batch, no Python
per token, no worker processes. What a document is: each input file is one, and a literal
`<|endoftext|>` (the EOS text) inside a file also ends one, as in corpora shipped that way.

Fine-tuning. JSONL records {"prompt": ..., "response": ...} become prompt + response + EOS,
padded to a fixed length, with the prompt and the padding masked out of the loss
(`SftBatches`).

Both iterators yield (x, y): int64 CPU tensors [B, T], y[b, t] the token that follows
x[b, t] (-100 where no loss is taken), so one loss works for both:
`cross_entropy(logits.view(-1, V), y.view(-1), ignore_index=-100)`.

Both are deterministic functions of (seed, rank, world_size, position): `state_dict()`
holds the position, and after `load_state_dict` the iterator yields exactly the batches
the uninterrupted one would have. The position advances alike on every rank, so the
state of rank 0 is the state of all: a checkpoint need keep only one. Ranks read
different data: pretraining ranks draw from disjoint slices of the token file; fine-tuning
ranks take disjoint records of each epoch.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from torchrig.errors import UsageError
from torchrig.fsutil import write_atomically
from torchrig.recipes.causal_lm.tokenizer import source_stamp, tokenizer_fingerprint
from torchrig.train.sampling import EpochOrder, generator

IGNORE_INDEX = -100  # what torch's cross_entropy skips by default
BIN_FORMAT = 1
# Text is encoded in pieces of about this many characters, in parallel (Rust threads).
_PIECE_CHARS = 1 << 20
# Cut only at a newline with a non-space character on both sides: byte-level BPE's
# pre-tokenizer then splits the text at that newline anyway, so the pieces encode to
# exactly the tokens of the whole text.
_SAFE_CUT = re.compile(r"(?<=\S)\n(?=\S)")


def sidecar_path(bin_path: Path) -> Path:
    return bin_path.with_name(bin_path.name + ".json")


def _read_sidecar(bin_path: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads(sidecar_path(bin_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _pieces(text: str) -> list[str]:
    pieces = []
    start = 0
    while len(text) - start > _PIECE_CHARS:
        cut = _SAFE_CUT.search(text, start + _PIECE_CHARS)
        if cut is None:
            break
        pieces.append(text[start : cut.end()])
        start = cut.end()
    pieces.append(text[start:])
    return pieces


def tokenize_to_bin(paths: list[Path], tokenizer: Any, out: Path) -> Path:
    """Tokenize text files once into `out` (flat uint16 or uint32 ids), EOS after each file.

    The sidecar `out.json` records dtype, token count, the tokenizer's fingerprint and each
    source's path, size and modification time; when they all match, the file is reused.
    Both files are written atomically (temp file, fsync, rename), the sidecar last.
    Under DDP call it on rank 0 and let the others wait (a barrier): they would all
    tokenize otherwise, each into its own temp file, the last rename winning.
    """
    import numpy as np

    paths = [Path(p) for p in paths]
    out = Path(out)
    if not paths:
        raise UsageError("no text files to train on", "give at least one text file")
    stamps = source_stamp(paths)
    eos = tokenizer.eos_token_id
    if eos is None:
        raise UsageError("the tokenizer has no end-of-text (EOS) token", "use one that has")
    vocab = len(tokenizer)
    dtype = "uint16" if vocab <= 1 << 16 else "uint32"
    wanted = {
        "format": BIN_FORMAT,
        "dtype": dtype,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "eos_token_id": eos,
        "sources": stamps,
    }
    meta = _read_sidecar(out)
    if (
        meta is not None
        and {k: meta.get(k) for k in wanted} == wanted
        and out.is_file()
        and out.stat().st_size == meta.get("tokens", -1) * np.dtype(dtype).itemsize
    ):
        return out
    if sum(s["size"] for s in stamps) == 0:
        raise UsageError(
            f"the training text is empty ({', '.join(map(str, paths))})",
            "give non-empty text files",
        )

    out.parent.mkdir(parents=True, exist_ok=True)
    sidecar_path(out).unlink(missing_ok=True)  # no stale sidecar beside a new file
    backend = tokenizer.backend_tokenizer
    eos_array = np.array([eos], dtype=dtype)
    tokens = 0
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            for path in paths:
                text = path.read_text(encoding="utf-8", errors="replace")
                pieces = _pieces(text)
                del text
                # Several pieces at once keep the Rust threads busy; bounded for memory.
                for i in range(0, len(pieces), 16):
                    for enc in backend.encode_batch_fast(
                        pieces[i : i + 16], add_special_tokens=False
                    ):
                        ids = np.asarray(enc.ids, dtype=dtype)
                        handle.write(ids.tobytes())
                        tokens += ids.size
                handle.write(eos_array.tobytes())
                tokens += 1
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).chmod(0o644)
        Path(tmp).replace(out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    record = {**wanted, "tokens": tokens, "vocab_size": vocab}
    write_atomically(sidecar_path(out), json.dumps(record, indent=2) + "\n")
    return out


def _check_rank(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise UsageError(f"rank {rank} is not in a world of {world_size} processes")


class PretrainBatches:
    """Endless random windows of a token file, for pretraining.

    Rank r of W draws windows from the r-th of W equal slices of the token range, so ranks
    never read the same tokens. Batch k of a rank comes from a generator seeded with
    (seed, rank, k): resuming needs only k.

    `val_fraction` > 0 holds out the last share of the tokens; `split="val"` reads that
    part (each rank its own slice of it), `split="train"` the rest.
    """

    def __init__(
        self,
        bin_path: Path,
        batch_size: int,
        seq_len: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        *,
        split: str = "train",
        val_fraction: float = 0.0,
    ) -> None:
        import numpy as np

        _check_rank(rank, world_size)
        if batch_size < 1 or seq_len < 1:
            raise UsageError(f"batch_size and seq_len must be positive ({batch_size}, {seq_len})")
        if split not in ("train", "val") or not 0.0 <= val_fraction < 1.0:
            raise UsageError(f"bad split {split!r} / val_fraction {val_fraction}")
        bin_path = Path(bin_path)
        meta = _read_sidecar(bin_path)
        if not bin_path.is_file() or meta is None or meta.get("dtype") not in ("uint16", "uint32"):
            raise UsageError(
                f"{bin_path} is not a token file made by tokenize_to_bin (file or sidecar missing)",
                "tokenize the text first (tokenize_to_bin)",
            )
        self.bin_path = bin_path
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.split = split
        self.tokens = np.memmap(bin_path, dtype=meta["dtype"], mode="r")
        n = len(self.tokens)
        n_val = int(n * val_fraction)
        lo, hi = (0, n - n_val) if split == "train" else (n - n_val, n)
        share = (hi - lo) // world_size
        self.lo = lo + rank * share
        # Windows of seq_len + 1 tokens that start at lo ..< n_starts lie inside the slice.
        self.n_starts = share - seq_len
        if self.n_starts < 1:
            raise UsageError(
                f"{bin_path} ({split}) has {hi - lo} tokens: too few for windows of "
                f"{seq_len + 1} in each of {world_size} rank slice(s)",
                "give more text, or a shorter seq_len, or fewer processes",
            )
        self.step = 0
        self._offsets: Any = np.arange(seq_len + 1, dtype=np.int64)

    def batch(self, k: int) -> tuple[Any, Any]:
        """Batch number k of this rank (the iterator yields k = 0, 1, 2, ...)."""
        import numpy as np
        import torch

        starts = generator(self.seed, self.rank, k).integers(
            0, self.n_starts, size=self.batch_size, dtype=np.int64
        )
        # One fancy-indexing gather from the memmap: [B, T + 1] ids.
        window = self.tokens[(self.lo + starts)[:, None] + self._offsets]
        x = torch.from_numpy(window[:, :-1].astype(np.int64))
        y = torch.from_numpy(window[:, 1:].astype(np.int64))
        return x, y

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        return self

    def __next__(self) -> tuple[Any, Any]:
        batch = self.batch(self.step)
        self.step += 1
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
            "tokens": len(self.tokens),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # The token count stands for the data: another file would give other batches.
        keys = ("seed", "world_size", "batch_size", "seq_len", "tokens")
        _check_same(self.state_dict(), state, keys)
        self.step = int(state["step"])


def _check_same(mine: dict[str, Any], saved: dict[str, Any], keys: tuple[str, ...]) -> None:
    """A resumed run continues exactly only with the same settings: say which differ."""
    changed = [f"{k} {saved.get(k)!r} → {mine[k]!r}" for k in keys if saved.get(k) != mine[k]]
    if changed:
        raise UsageError(
            "cannot resume the data position: " + ", ".join(changed),
            "resume with the settings of the checkpoint, or start a new run",
        )


class SftBatches:
    """Endless padded batches of prompt/response records, the prompt masked out of the loss.

    Each record becomes prompt ids + response ids + EOS (the two texts are tokenized
    separately, so the boundary is exact; put any separator, e.g. a newline, in the text).
    A tokenizer whose BOS differs from its EOS (Llama 3's <|begin_of_text|>) also gets
    its BOS first, as its models were trained; it counts as prompt.
    x is that sequence padded with the pad token to `max_len`; y[t] is the token after
    x[t], or -100 where that token is part of the prompt or padding (and at the last
    position). Shapes are fixed, [batch_size, max_len], for torch.compile.

    Too long: a record whose prompt + response + EOS exceeds max_len keeps its prompt and
    the first tokens of its response that fit (the EOS is dropped: the response did not
    end). A prompt that leaves no room for one response token is an error naming the line.

    Epochs: epoch e's order is a permutation seeded by (seed, e); rank r takes every
    world_size-th record of it, and each epoch's last len % world_size records are left
    out so that ranks see equal counts. A rank's batches run on across epoch boundaries.
    """

    def __init__(
        self,
        jsonl_path: Path,
        tokenizer: Any,
        batch_size: int,
        max_len: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        import numpy as np

        _check_rank(rank, world_size)
        if batch_size < 1 or max_len < 2:
            raise UsageError(f"batch_size must be ≥ 1 and max_len ≥ 2 ({batch_size}, {max_len})")
        self.path = Path(jsonl_path)
        self.batch_size = batch_size
        self.max_len = max_len
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.eos = tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos
        if self.eos is None:
            raise UsageError("the tokenizer has no end-of-text (EOS) token", "use one that has")
        bos = tokenizer.bos_token_id
        self.bos: list[int] = [bos] if bos is not None and bos != self.eos else []

        lines, prompts, responses = _read_jsonl(self.path)
        enc_p = tokenizer(prompts, add_special_tokens=False)["input_ids"]
        enc_r = tokenizer(responses, add_special_tokens=False)["input_ids"]
        # Kept flat (ids of all records back to back), padded only per batch: a padded
        # array of every record would be records × max_len × 8 bytes.
        flat: list[int] = []
        starts: list[int] = []
        lengths: list[int] = []
        prompt_lens: list[int] = []
        self.truncated = 0
        for line, p_text, r in zip(lines, enc_p, enc_r, strict=True):
            p = [*self.bos, *p_text]
            if len(p) >= max_len:
                raise UsageError(
                    f"{self.path}:{line}: the prompt is {len(p)} tokens, which leaves no room "
                    f"for the response in max_len {max_len}",
                    "raise max_len, or shorten or drop that record",
                )
            seq = [*p, *r, self.eos]
            if len(seq) > max_len:
                seq = seq[:max_len]
                self.truncated += 1
            starts.append(len(flat))
            lengths.append(len(seq))
            prompt_lens.append(len(p))
            flat.extend(seq)
        self.ids = np.asarray(flat, dtype=np.int64)
        self.starts = np.asarray(starts, dtype=np.int64)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.prompt_lens = np.asarray(prompt_lens, dtype=np.int64)
        self.n_records = len(lines)
        self.order = EpochOrder(self.n_records, seed, rank, world_size, f"record(s) in {self.path}")
        self.per_rank = self.order.per_rank
        self.position = 0  # records of this rank's stream consumed so far

    @property
    def epoch(self) -> int:
        return self.order.epoch_of(self.position)

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        return self

    def __next__(self) -> tuple[Any, Any]:
        import numpy as np
        import torch

        x: Any = np.full((self.batch_size, self.max_len), self.pad, dtype=np.int64)
        y: Any = np.full((self.batch_size, self.max_len), IGNORE_INDEX, dtype=np.int64)
        for j, i in enumerate(self.order.indices(self.position, self.batch_size)):
            seq = self.ids[self.starts[i] : self.starts[i] + self.lengths[i]]
            x[j, : len(seq)] = seq
            # Position t predicts seq[t + 1]: a loss only where that is a response token or
            # the EOS, i.e. t + 1 ≥ prompt length (the first token has nothing before it).
            first = max(int(self.prompt_lens[i]), 1)
            y[j, first - 1 : len(seq) - 1] = seq[first:]
        self.position += self.batch_size
        return torch.from_numpy(x), torch.from_numpy(y)

    def state_dict(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
            "batch_size": self.batch_size,
            "max_len": self.max_len,
            "records": self.n_records,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_same(
            self.state_dict(), state, ("seed", "world_size", "batch_size", "max_len", "records")
        )
        self.position = int(state["position"])


def _read_jsonl(path: Path) -> tuple[list[int], list[str], list[str]]:
    """(line numbers, prompts, responses); any bad line is one error naming file:line."""
    if not path.is_file():
        raise UsageError(f"data file {path} does not exist", "check the path given for the data")
    lines: list[int] = []
    prompts: list[str] = []
    responses: list[str] = []
    with path.open(encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue  # blank lines (a trailing newline) are not records
            where = f"{path}:{number}"
            try:
                record = json.loads(raw)
            except ValueError as exc:
                raise UsageError(
                    f"{where}: not valid JSON ({exc})",
                    'each line must be one object: {"prompt": "...", "response": "..."}',
                ) from None
            if not isinstance(record, dict):
                raise UsageError(
                    f"{where}: expected an object, got {type(record).__name__}",
                    'each line must be one object: {"prompt": "...", "response": "..."}',
                )
            for key in ("prompt", "response"):
                if key not in record:
                    raise UsageError(
                        f'{where}: missing field "{key}"',
                        'each line must have "prompt" and "response" strings',
                    )
                if not isinstance(record[key], str):
                    raise UsageError(
                        f'{where}: field "{key}" is {type(record[key]).__name__}, not a string',
                        'each line must have "prompt" and "response" strings',
                    )
            if not record["response"]:
                raise UsageError(
                    f'{where}: empty "response"', "every record needs a response to learn"
                )
            lines.append(number)
            prompts.append(record["prompt"])
            responses.append(record["response"])
    if not lines:
        raise UsageError(
            f"{path} has no records (empty file)",
            'give one JSON object per line: {"prompt": "...", "response": "..."}',
        )
    return lines, prompts, responses
