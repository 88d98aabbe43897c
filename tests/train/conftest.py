"""Shared fixtures: small generated data sets with structure a tiny model can learn."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from tests.wordlist import WORDS


def make_corpus(path: Path, lines: int = 2000, seed: int = 0) -> Path:
    """Sentences from a small vocabulary in a fixed order with random skips: predictable
    enough that the loss falls within a few dozen steps."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for _ in range(lines):
            start = rng.randrange(len(WORDS))
            n = rng.randrange(6, 14)
            words = [WORDS[(start + i) % len(WORDS)] for i in range(n)]
            handle.write(" ".join(words).capitalize() + ".\n")
    return path


def make_sft(path: Path, records: int = 64, seed: int = 0) -> Path:
    """Questions about numbers with answers of varying length."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for _ in range(records):
            a, b = rng.randrange(20), rng.randrange(20)
            prompt = f"What is {a} plus {b}?\n"
            response = f"{a} plus {b} is {a + b}." + " Yes." * rng.randrange(3)
            handle.write(json.dumps({"prompt": prompt, "response": response}) + "\n")
    return path


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("data") / "corpus.txt")


@pytest.fixture(scope="session")
def sft_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sft(tmp_path_factory.mktemp("sft") / "pairs.jsonl")
