"""Tiny trained models for the serve tests, trained once per session on the CPU (no
downloads): a causal LM, a LoRA adapter on a preset base, a text and an image classifier.
And `Server`: the real `torchrig serve` in a subprocess on a free 127.0.0.1 port."""

from __future__ import annotations

import csv
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.wordlist import WORDS

TOKEN = "t-serve-" + "x" * 32
TOPICS = {
    "billing": ["invoice", "refund", "charge", "payment"],
    "login": ["password", "account", "locked", "signin"],
    "shipping": ["parcel", "delivery", "late", "courier"],
}


def quiet(_: str) -> None:
    pass


def _corpus(path: Path) -> Path:
    rng = random.Random(0)
    with path.open("w", encoding="utf-8") as handle:
        for _ in range(1500):
            start, n = rng.randrange(len(WORDS)), rng.randrange(6, 14)
            handle.write(" ".join(WORDS[(start + i) % len(WORDS)] for i in range(n)).capitalize())
            handle.write(".\n")
    return path


@pytest.fixture(scope="session")
def lm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from torchrig.recipes.causal_lm.config import from_preset
    from torchrig.recipes.causal_lm.train import train

    folder = tmp_path_factory.mktemp("lm")
    cfg = from_preset(
        "tiny", data=[_corpus(folder / "corpus.txt")], out=folder / "run", steps=40,
        log_every=10, tensorboard=False,
    )  # fmt: skip
    train(cfg, say=quiet)
    return folder / "run"


@pytest.fixture(scope="session")
def lora_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from torchrig.recipes.causal_lm.config import from_preset
    from torchrig.recipes.causal_lm.train import train

    folder = tmp_path_factory.mktemp("lora")
    cfg = from_preset(
        "tiny", data=[_corpus(folder / "corpus.txt")], out=folder / "run", steps=10,
        log_every=10, tensorboard=False, lora=True, lr=1e-2,
    )  # fmt: skip
    train(cfg, say=quiet)
    return folder / "run"


@pytest.fixture(scope="session")
def text_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from torchrig.recipes.text_classify.config import from_preset
    from torchrig.recipes.text_classify.train import train

    folder = tmp_path_factory.mktemp("text")
    rng = random.Random(0)
    with (folder / "t.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for _ in range(300):
            label = rng.choice(list(TOPICS))
            words = rng.sample(TOPICS[label], 2) + rng.sample(["please", "help", "my", "is"], 2)
            rng.shuffle(words)
            writer.writerow([" ".join(words), label])
    cfg = from_preset(
        "tiny", data=folder / "t.csv", out=folder / "run", steps=30, tensorboard=False
    )
    train(cfg, say=quiet)
    return folder / "run"


def make_images(root: Path, per_class: int = 12) -> Path:
    import numpy as np
    from PIL import Image

    for name, colour in {"red": (220, 30, 30), "blue": (30, 30, 220)}.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            noise = np.random.default_rng(i).normal(0, 20, (40, 48, 3))
            pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:02d}.png")
    return root


@pytest.fixture(scope="session")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from torchrig.recipes.image_classify.config import from_preset
    from torchrig.recipes.image_classify.train import train

    folder = tmp_path_factory.mktemp("image")
    images = make_images(folder / "images")
    cfg = from_preset("tiny", data=images, out=folder / "run", steps=20, tensorboard=False)
    train(cfg, say=quiet)
    return folder / "run"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def torchrig(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "torchrig.cli.main", *args],
        capture_output=True, text=True, timeout=300, check=False, **kw,  # type: ignore[call-overload]
    )  # fmt: skip


class Server:
    """`torchrig serve RUN ...` on a free port; waits for /readyz."""

    def __init__(self, run: Path, *extra: str, token: str | None = TOKEN, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = token
        args = [str(run), "--port", str(self.port), *extra]
        if token is None:
            args.append("--no-auth")
        else:
            token_file = tmp / f"token-{self.port}"
            token_file.write_text(token + "\n", encoding="utf-8")
            args += ["--token-file", str(token_file)]
        self.log = tmp / f"serve-{self.port}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "torchrig.cli.main", "serve", *args],
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("w"),
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}: {self.log.read_text()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"serve was not ready in 120 s: {self.log.read_text()}")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


@pytest.fixture(scope="session")
def lm_server(lm_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(lm_run, "--max-tokens", "48", tmp=tmp_path_factory.mktemp("lm-server"))
    yield server
    server.stop()
