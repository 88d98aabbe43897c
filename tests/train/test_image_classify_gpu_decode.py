"""The cache built by a batch decoder (`--decode gpu`, issue 18 item 3), checked on a CPU
with Pillow standing in for nvjpeg: the rows match the CPU build's geometry, files the
batch decoder refuses go to Pillow, unreadable ones are skipped as the CPU build skips
them, the sidecar names the decoder, and --decode gpu off CUDA is one clear line. nvjpeg
itself runs on the GPU (benchmarks/train_image_classify.py measures it)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_image_classify_data import make_tree

from torchrig.errors import UsageError
from torchrig.recipes.image_classify import cache, gpu_decode
from torchrig.recipes.image_classify.__main__ import main
from torchrig.recipes.image_classify.config import from_preset
from torchrig.recipes.image_classify.folder import scan


def _quiet(_: str) -> None:
    pass


def pillow_batch(refuse: set[int] | None = None) -> Any:
    """A batch decoder like nvjpeg's: encoded uint8 tensors → [3, H, W] uint8 (Pillow's
    full-size decode). Files whose length is in `refuse` fail, as nvjpeg fails a CMYK JPEG:
    one such file fails the whole call."""
    from PIL import Image

    calls: list[int] = []

    def decode(data: list[Any]) -> list[Any]:
        calls.append(len(data))
        out = []
        for t in data:
            if refuse and t.numel() in refuse:
                raise RuntimeError("nvjpeg refused it")
            with Image.open(io.BytesIO(t.numpy().tobytes())) as im:
                rgb = np.asarray(im.convert("RGB"))
            out.append(torch.from_numpy(rgb.copy()).permute(2, 0, 1))
        return out

    decode.calls = calls  # type: ignore[attr-defined]
    return decode


def test_square_resize_is_the_cpu_builds_resize(tmp_path: Path) -> None:
    # Pillow's filter weights and half-pixel box offsets, as matrices: from the same decoded
    # pixels the row is the CPU build's to the rounding (±1), odd size differences included.
    root = make_tree(tmp_path / "train", per_class=3)
    for path in sorted(root.rglob("*.jpg")):
        cpu = cache.decode(path, 36)
        data = torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)
        gpu = gpu_decode.square_resize(pillow_batch()([data])[0], 36).numpy()
        assert gpu.shape == cpu.shape == (36, 36, 3) and gpu.dtype == np.uint8
        assert np.abs(gpu.astype(int) - cpu.astype(int)).max() <= 1, path
    # Upscaling too (a 20-px image to 36: no antialiasing widening).
    from PIL import Image

    small = tmp_path / "small.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 27, 3), np.uint8)).save(small)
    pixels = torch.from_numpy(np.asarray(Image.open(small)).copy()).permute(2, 0, 1)
    up = gpu_decode.square_resize(pixels, 36).numpy().astype(int)
    assert np.abs(up - cache.decode(small, 36).astype(int)).max() <= 1


def test_a_batch_of_mixed_sizes_resizes_as_each_image_alone() -> None:
    # Zero padding to the batch's largest image must not leak into any image's rows.
    rng = np.random.default_rng(1)
    images = [
        torch.from_numpy(rng.integers(0, 256, (3, h, w), dtype=np.uint8))
        for h, w in [(40, 63), (57, 41), (36, 36), (20, 27), (64, 50)]
    ]
    together = gpu_decode.resize_batch(images, 36)
    alone = torch.stack([gpu_decode.resize_batch([im], 36)[0] for im in images])
    assert together.shape == (5, 36, 36, 3) and torch.equal(together, alone)


def test_refused_files_go_to_pillow_and_unreadable_ones_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Resize groups of a few images (a small pixel budget), as photos of many megapixels get.
    monkeypatch.setattr(gpu_decode, "PIXELS", 3 * 64 * 64)
    root = make_tree(tmp_path / "train", per_class=3)
    good = (root / "red-vertical" / "000.jpg").read_bytes()
    (root / "red-vertical" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / "blue-vertical" / "garbage.jpg").write_bytes(b"this is not a JPEG")
    from PIL import Image

    Image.new("RGB", (50, 40), (10, 200, 30)).save(root / "red-horizontal" / "green.png")
    folder = scan(root)
    refused = folder.paths.index("blue-horizontal/001.jpg")
    size_refused = (root / folder.paths[refused]).stat().st_size
    decoder = pillow_batch(refuse={size_refused})
    built = cache.build_cache(folder, tmp_path / "cache", 36, say=_quiet, gpu=decoder)
    # Skipped exactly as the CPU build skips them.
    assert [p for _, p, _ in built.skipped] == [
        "blue-vertical/garbage.jpg",
        "red-vertical/truncated.jpg",
    ]
    assert all(reason for _, _, reason in built.skipped)
    # What the batch decoder refused, and what is not a JPEG, are Pillow's rows exactly.
    for rel in ("blue-horizontal/001.jpg", "red-horizontal/green.png"):
        row = folder.paths.index(rel)
        np.testing.assert_array_equal(built.images[row], cache.decode(root / rel, 36))
    # Every other row is the CPU build's to ±1 (Pillow stands in for nvjpeg's decode here).
    for row, rel in enumerate(folder.paths):
        if built.readable(row):
            cpu = cache.decode(root / rel, 36).astype(int)
            assert np.abs(built.images[row].astype(int) - cpu).max() <= 1, rel
    # Batches: the files of a call together, not one call per file.
    assert max(decoder.calls) > 1
    meta = json.loads(cache.sidecar(built.path).read_text())
    assert meta["decoder"] == "nvjpeg" and meta["count"] == len(folder)
    # Either build reuses the other's cache.
    assert not cache.build_cache(scan(root), tmp_path / "cache", 36, say=_quiet).built


def test_decode_gpu_off_cuda_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_tree(tmp_path / "train", per_class=4)
    args = ["--data", str(root), "--out", str(tmp_path / "run"), "--steps", "2"]
    assert main([*args, "--device", "cpu", "--decode", "gpu", "--no-tensorboard"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--decode gpu needs a CUDA device" in err[0], err
    # The config refuses what argparse's choices refuse on the command line.
    with pytest.raises(UsageError) as bad:
        from_preset("tiny", data=root, out=tmp_path / "run", decode="tpu").check()
    assert "--decode 'tpu' is not known" in str(bad.value)
