"""The recipe's tokenizer: a local Hugging Face tokenizer, or a BERT WordPiece trained on
the training texts.

A trained tokenizer is BERT's scheme, built with the `tokenizers` library: BERT's
normaliser (lower-casing, accents kept, control characters removed, CJK characters split),
BERT's pre-tokenizer (whitespace and punctuation), WordPiece with "##" continuations, and
the five special tokens in BERT's order, so [PAD] is id 0:

    [PAD] [UNK] [CLS] [SEP] [MASK]

Every encoded text is "[CLS] text [SEP]" (the post-processor adds them). Training is
deterministic (the same texts and vocab_size give the same tokenizer.json), and the result
is saved with a sidecar holding a hash of the texts it was trained on, so a second run on
unchanged training texts loads it instead of training again.

Only local folders are read (`local_files_only`): nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from torchrig.errors import UsageError
from torchrig.fsutil import write_atomically
from torchrig.recipes.causal_lm.tokenizer import save_tokenizer

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
SIDECAR = "torchrig-tokenizer.json"
# Bumped when the training recipe changes, so an old saved tokenizer is not reused.
TRAINER_VERSION = 2
MIN_VOCAB = 100  # the special tokens and the characters of ordinary text need room
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model")


def has_tokenizer(folder: Path) -> bool:
    return any((Path(folder) / name).is_file() for name in _TOKENIZER_FILES)


def load_tokenizer(folder: Path) -> Any:
    """A fast tokenizer from a local folder, with a pad token, padding and truncating on
    the right (the data cache stores lengths, so the padding must come last)."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(
            f"tokenizer folder {folder} does not exist",
            "give a folder saved by a Hugging Face tokenizer, or leave --tokenizer out to "
            "train one on the data",
        )
    if not has_tokenizer(folder):
        raise UsageError(
            f"{folder} has no tokenizer files (none of {', '.join(_TOKENIZER_FILES)})",
            "give a folder saved by tokenizer.save_pretrained, or leave --tokenizer out",
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
    if tok.pad_token_id is None:
        if tok.eos_token_id is None:
            raise UsageError(
                f"the tokenizer in {folder} has no padding token (and no EOS to pad with)",
                "set pad_token in its tokenizer_config.json",
            )
        tok.pad_token = tok.eos_token  # padded positions are masked out anyway
    tok.padding_side = "right"
    tok.truncation_side = "right"
    return tok


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of everything that decides token ids (vocabulary, normaliser, pre-tokenizer,
    post-processor, special tokens): equal fingerprints encode text identically.

    Unlike causal_lm's, it leaves out the truncation and padding settings of the Rust
    tokenizer: calling the tokenizer with truncation=True stores them there, and they say
    nothing about the ids (the data cache records max_length itself)."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    spec.pop("truncation", None)
    spec.pop("padding", None)
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode("utf-8"))
    digest.update(repr((tokenizer.pad_token_id, tokenizer.cls_token_id)).encode())
    return digest.hexdigest()[:16]


def lowercases(tokenizer: Any) -> bool:
    """Whether the tokenizer lower-cases text (its normaliser, or a slow-style flag)."""

    def walk(node: Any) -> bool:
        if isinstance(node, dict):
            if node.get("type") == "Lowercase" or node.get("lowercase") is True:
                return True
            return any(walk(v) for v in node.values())
        if isinstance(node, list):
            return any(walk(v) for v in node)
        return False

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    return walk(spec.get("normalizer")) or bool(getattr(tokenizer, "do_lower_case", False))


def load_or_train(given: Path | None, texts: list[str], out_dir: Path, vocab_size: int) -> Any:
    """The tokenizer in `given`, or one trained on `texts` and saved in `out_dir` (reused
    there when the texts and vocab_size are unchanged).

    Call it on one process (rank 0) and let the others wait, then load `out_dir`: two
    processes training into one folder at once would race.
    """
    if given is not None:
        return load_tokenizer(given)
    if vocab_size < MIN_VOCAB:
        raise UsageError(
            f"--vocab-size {vocab_size} is too small for a WordPiece tokenizer",
            f"use at least {MIN_VOCAB} (tiny tests) or e.g. 30522 (BERT's)",
        )
    wanted = {
        "trainer_version": TRAINER_VERSION,
        "vocab_size": vocab_size,
        "texts": _texts_digest(texts),
    }
    sidecar = Path(out_dir) / SIDECAR
    try:
        if json.loads(sidecar.read_text(encoding="utf-8")).get("inputs") == wanted:
            return load_tokenizer(out_dir)
    except (OSError, ValueError, UsageError):
        pass  # absent or stale: train
    tok = train_wordpiece(texts, vocab_size)
    save_tokenizer(tok, Path(out_dir))
    record = {"inputs": wanted, "fingerprint": tokenizer_fingerprint(tok)}
    # The sidecar is written last: a crash mid-save leaves no sidecar, so no reuse.
    write_atomically(sidecar, json.dumps(record, indent=2) + "\n")
    return load_tokenizer(out_dir)  # as every later run will see it (padding side, ...)


def _texts_digest(texts: list[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\x00")  # a boundary: ["ab", "c"] and ["a", "bc"] differ
    return digest.hexdigest()


def _batches(texts: list[str], size: int = 1000) -> Iterator[list[str]]:
    for i in range(0, len(texts), size):
        yield texts[i : i + size]


def _continuations(texts: list[str], normalizer: Any, pre_tokenizer: Any) -> list[str]:
    """ "##c" for every character that occurs inside a word (after its first character),
    in code-point order."""
    inner: set[str] = set()
    for text in texts:
        for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)):
            inner.update(word[1:])
    return [f"##{c}" for c in sorted(inner)]


def train_wordpiece(texts: list[str], vocab_size: int) -> Any:
    """Train a BERT-style WordPiece tokenizer; returns a PreTrainedTokenizerFast."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    if not any(t.strip() for t in texts):
        raise UsageError("no text to train a tokenizer on", "give rows with non-empty text")
    pad, unk, cls, sep, mask = SPECIAL_TOKENS
    normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=True
    )
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    # Why the fixed order: the trainer numbers each continuation ("##x") when it first meets
    # it while walking a Rust HashMap of the words, whose order changes from process to
    # process; merges of equal count are then ordered by those numbers, so the vocabulary
    # (and the ids) differed from run to run, threads or not. Giving every continuation a
    # number up front, in code-point order, makes the whole training a function of the
    # texts. They are passed as the trainer's "special tokens" only for their numbering:
    # the tokenizer is rebuilt below from the vocabulary, with BERT's five specials alone.
    continuations = _continuations(texts, normalizer, pre_tokenizer)
    trained = Tokenizer(models.WordPiece(unk_token=unk, continuing_subword_prefix="##"))
    trained.normalizer = normalizer
    trained.pre_tokenizer = pre_tokenizer
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[*SPECIAL_TOKENS, *continuations],
        continuing_subword_prefix="##",
        show_progress=False,
    )
    trained.train_from_iterator(_batches(texts), trainer=trainer, length=len(texts))
    vocab = trained.get_vocab(with_added_tokens=False)
    wp = Tokenizer(models.WordPiece(vocab=vocab, unk_token=unk, continuing_subword_prefix="##"))
    wp.normalizer = normalizer
    wp.pre_tokenizer = pre_tokenizer
    wp.decoder = decoders.WordPiece(prefix="##")
    wp.post_processor = processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0",
        pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls, wp.token_to_id(cls)), (sep, wp.token_to_id(sep))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=wp,
        unk_token=unk,
        pad_token=pad,
        cls_token=cls,
        sep_token=sep,
        mask_token=mask,
        padding_side="right",
        truncation_side="right",
        model_max_length=1 << 30,  # length is the data cache's business, not a warning's
    )
