"""The recipe's tokenizer: a local Hugging Face tokenizer, or one trained on the data.

Trained tokenizers are byte-level BPE (GPT-2's scheme: any text encodes, nothing is
unknown) built with the `tokenizers` library, with two special tokens:

    <|endoftext|>  end of a document (EOS); data.py puts it between documents
    <|pad|>        padding for supervised fine-tuning batches (always masked out)

Training is deterministic (same files, same vocab_size → the same tokenizer.json, byte
for byte), and the result is saved with a sidecar naming its inputs, so a second run with
unchanged inputs loads it instead of training again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from torchrig.errors import UsageError
from torchrig.fsutil import write_atomically

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
SIDECAR = "torchrig-tokenizer.json"
# Bumped when the training recipe changes, so an old saved tokenizer is not reused.
TRAINER_VERSION = 1
# Files that make a folder loadable as a fast Hugging Face tokenizer (sentencepiece's
# tokenizer.model needs a conversion that may want the slow classes; still accepted).
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model")


def load_or_train_tokenizer(
    tokenizer_dir: Path | None, texts: list[Path], out_dir: Path, vocab_size: int
) -> Any:
    """A `PreTrainedTokenizerFast` with an EOS and a pad token.

    With `tokenizer_dir`: load it from that folder only (no downloads). A tokenizer without
    a pad token (GPT-2's) gets its EOS as pad: padded positions are masked anyway.
    Without: train a byte-level BPE of `vocab_size` tokens on `texts` (plain text files;
    `.jsonl` files contribute their "prompt" and "response" strings), save it in `out_dir`
    and reuse it next time when the texts and vocab_size are unchanged.

    Call it on one process (rank 0) and let the others wait, then load `out_dir`: two
    processes training into one folder at once would race.
    """
    if tokenizer_dir is not None:
        return load_tokenizer(Path(tokenizer_dir))
    return _train_or_reuse([Path(t) for t in texts], Path(out_dir), vocab_size)


def load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    if not folder.is_dir():
        raise UsageError(
            f"tokenizer folder {folder} does not exist",
            "give a folder saved by a Hugging Face tokenizer (tokenizer.json), "
            "or leave the tokenizer out to train one on the data",
        )
    if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        raise UsageError(
            f"{folder} has no tokenizer files (none of {', '.join(_TOKENIZER_FILES)})",
            "give a folder saved by tokenizer.save_pretrained, "
            "or leave the tokenizer out to train one on the data",
        )
    try:
        tok = AutoTokenizer.from_pretrained(folder, local_files_only=True, use_fast=True)
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"cannot load the tokenizer in {folder}: {exc}".splitlines()[0],
            "check that the folder was written by save_pretrained",
        ) from None
    if not getattr(tok, "is_fast", False):
        raise UsageError(
            f"the tokenizer in {folder} has no fast (Rust) implementation",
            "save it with tokenizer.json (AutoTokenizer.from_pretrained(...).save_pretrained)",
        )
    if tok.eos_token_id is None:
        raise UsageError(
            f"the tokenizer in {folder} has no end-of-text (EOS) token",
            "set eos_token in its tokenizer_config.json",
        )
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of everything that decides token ids (vocabulary, merges, normaliser, special
    tokens): equal fingerprints encode text identically."""
    digest = hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode("utf-8"))
    digest.update(repr((tokenizer.eos_token_id, tokenizer.pad_token_id)).encode())
    return digest.hexdigest()[:16]


def source_stamp(paths: list[Path]) -> list[dict[str, Any]]:
    """What identifies an input file cheaply: resolved path, size, modification time."""
    stamps = []
    for path in paths:
        try:
            st = path.stat()
        except FileNotFoundError:
            raise UsageError(
                f"data file {path} does not exist", "check the path given for the data"
            ) from None
        if not path.is_file():
            raise UsageError(f"{path} is not a file", "give text files, not folders")
        stamps.append({"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return stamps


def _wanted(texts: list[Path], vocab_size: int) -> dict[str, Any]:
    """What a saved tokenizer's sidecar must record to be reused."""
    return {
        "trainer_version": TRAINER_VERSION,
        "vocab_size": vocab_size,
        "sources": source_stamp(texts),
    }


def _matches(out_dir: Path, wanted: dict[str, Any]) -> bool:
    try:
        record = json.loads((out_dir / SIDECAR).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False  # absent or torn: train
    return isinstance(record, dict) and record.get("inputs") == wanted


def will_reuse(texts: list[Path], out_dir: Path, vocab_size: int) -> bool:
    """Whether load_or_train_tokenizer(None, texts, out_dir, vocab_size) would load the
    tokenizer saved in out_dir rather than train one (for the run's message)."""
    try:
        return _matches(Path(out_dir), _wanted([Path(t) for t in texts], vocab_size))
    except UsageError:
        return False


def _train_or_reuse(texts: list[Path], out_dir: Path, vocab_size: int) -> Any:
    if not texts:
        raise UsageError(
            "no tokenizer folder and no text to train one on",
            "give a tokenizer folder, or the training data",
        )
    if vocab_size < 300:
        # 256 byte symbols + 2 special tokens are the floor of byte-level BPE.
        raise UsageError(
            f"vocab_size {vocab_size} is too small for a byte-level BPE",
            "use at least 300 (tiny tests) or e.g. 32000 (real runs)",
        )
    if vocab_size >= 2**32:
        raise UsageError(f"vocab_size {vocab_size} is too large", "use less than 2**32")
    wanted = _wanted(texts, vocab_size)
    if _matches(out_dir, wanted):
        try:
            return load_tokenizer(out_dir)
        except UsageError:
            pass  # torn: train
    tok = train_bpe(texts, vocab_size)
    save_tokenizer(tok, out_dir)
    record = {"inputs": wanted, "fingerprint": tokenizer_fingerprint(tok)}
    # The sidecar is written last: a crash mid-save leaves no sidecar, so no reuse.
    write_atomically(out_dir / SIDECAR, json.dumps(record, indent=2) + "\n")
    return tok


def _iter_texts(paths: list[Path]) -> Iterator[str]:
    """Training text in pieces of about 1 MB (BPE counts words; pieces bound memory)."""
    for path in paths:
        if path.suffix == ".jsonl":
            with path.open(encoding="utf-8") as handle:
                for line in handle:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue  # the data loader reports bad lines with file:line
                    if isinstance(record, dict):
                        for key in ("prompt", "response"):
                            if isinstance(record.get(key), str):
                                yield record[key]
            continue
        with path.open(encoding="utf-8", errors="replace") as handle:
            while chunk := handle.read(1 << 20):
                yield chunk + handle.readline()  # end on a line boundary


def train_bpe(texts: list[Path], vocab_size: int) -> Any:
    """Train a byte-level BPE on text files; returns a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    total = sum(s["size"] for s in source_stamp(texts))
    if total == 0:
        raise UsageError(
            f"the text to train a tokenizer on is empty ({', '.join(map(str, texts))})",
            "give non-empty text files",
        )
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        # All 256 bytes up front: text never seen in training still encodes.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_iter_texts(texts), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=1 << 30,  # length is the data loader's business, not a warning's
    )


def save_tokenizer(tok: Any, out_dir: Path) -> None:
    """save_pretrained into a temporary folder beside out_dir, then move the files in, so a
    reader never sees a half-written tokenizer.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tokenizer-", dir=out_dir))
    try:
        tok.save_pretrained(tmp)
        (out_dir / SIDECAR).unlink(missing_ok=True)
        for item in tmp.iterdir():
            item.replace(out_dir / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
