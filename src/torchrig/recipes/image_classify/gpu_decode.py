"""The decoded cache built on the GPU (`--decode gpu`): JPEGs decoded by nvjpeg through
`torchvision.io.decode_jpeg(device="cuda")` instead of Pillow processes on every CPU.

What the CPU build (cache.py) does per image, on the GPU per batch of files: the files are
read on the host (a few threads, ahead of the GPU), decoded together, each image's centre
square resized to the cache size with Pillow's own filter weights (the CPU build's
geometry to the rounding), and the rows copied back into the cache file. It pays where the
host has few cores for its GPU; benchmarks/train_image_classify.py measures both builds in
one run (docs/performance.md has the numbers). The pixels differ from Pillow's by a level
or two (nvjpeg's IDCT and chroma upsampling are not libjpeg-turbo's), and more for JPEGs
at least twice the cache size, which Pillow decodes at a reduced DCT scale (`draft`) and
nvjpeg at full size. The cache's sidecar records which decoder made it.

Files nvjpeg does not take (PNG, WebP, CMYK JPEGs, anything it refuses) are decoded by
Pillow in this process, exactly as the CPU build would; a file neither can read is skipped
with its reason, as in the CPU build.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from torchrig.errors import UsageError

BATCH = 128  # files per decode call: enough to fill the GPU, 25 MB of 256-px rows back
READERS = 8  # threads reading files ahead of the decoder
PIXELS = 32 * 2**20  # padded input pixels per resize call: 384 MiB of fp32 RGB
JPEG_MAGIC = b"\xff\xd8\xff"

DecodeBatch = Callable[[list[Any]], list[Any]]
"""Encoded files (uint8 CPU tensors) → decoded images ([3, H, W] uint8, on the device)."""


def nvjpeg(device: Any) -> DecodeBatch:
    """torchvision's batched GPU decoder, RGB out (greyscale JPEGs are expanded)."""
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError:
        raise UsageError(
            "--decode gpu needs torchvision (its decode_jpeg runs nvjpeg)",
            "install torchvision, or leave --decode at cpu",
        ) from None

    def decode(data: list[Any]) -> list[Any]:
        out: list[Any] = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
        return out

    return decode


def _weights(lengths: Any, starts: Any, stops: Any, size: int, width: int) -> Any:
    """[N, size, width] resampling weights of Pillow's BILINEAR resize of the span
    [start, stop) of an axis of `length` pixels to `size`, one matrix per image (its
    precompute_coeffs: a triangle filter widened by the scale when shrinking, so it
    antialiases; each row normalised over the pixels inside the image; columns past the
    image's length, padding, weigh nothing). lengths, starts, stops: float64 [N]."""
    import torch

    device = lengths.device
    scale = (stops - starts) / size
    support = scale.clamp(min=1.0)  # the triangle's half-width in input pixels
    out = torch.arange(size, dtype=torch.float64, device=device)
    centre = starts[:, None] + (out[None, :] + 0.5) * scale[:, None]  # [N, size]
    pixel = torch.arange(width, dtype=torch.float64, device=device)
    t = (pixel[None, None, :] - centre[:, :, None] + 0.5) / support[:, None, None]
    w = (1.0 - t.abs()).clamp_(min=0.0) * (pixel[None, None, :] < lengths[:, None, None])
    return (w / w.sum(dim=2, keepdim=True)).to(torch.float32)


def _round_u8(x: Any) -> Any:
    # Pillow's 8-bit passes round half up and clip; each pass stores uint8.
    return (x + 0.5).floor_().clamp_(0, 255)


@contextlib.contextmanager
def _ieee_fp32() -> Iterator[None]:
    """fp32 matmuls at full precision: with TF32 (what training turns on) the products
    carry ~3 significant digits, enough to flip roundings of 0-255 sums."""
    import torch

    matmul = torch.backends.cuda.matmul
    # fp32_precision is the newer switch; allow_tf32 the one older torches know.
    name = "fp32_precision"
    ieee: Any = "ieee"
    try:
        before = getattr(matmul, name)
    except AttributeError:
        name, ieee = "allow_tf32", False
        before = matmul.allow_tf32
    setattr(matmul, name, ieee)
    try:
        yield
    finally:
        setattr(matmul, name, before)


def resize_batch(images: Sequence[Any], size: int) -> Any:
    """[3, H, W] uint8 images (any sizes, one device) → [N, size, size, 3] uint8: each
    one's centre square resized to `size` as cache.decode does it with Pillow
    (`resize(BILINEAR, box=centre square)`: the same filter weights, the box's half-pixel
    offsets, horizontal pass first, rounding to uint8 after each pass). The images are
    zero-padded to the largest and resized together as two batched matrix products: a
    few dozen kernels per batch whatever its size, not per image."""
    import torch

    hs = [int(im.shape[1]) for im in images]
    ws = [int(im.shape[2]) for im in images]
    sides = [min(h, w) for h, w in zip(hs, ws, strict=True)]
    device = images[0].device
    x = torch.zeros((len(images), 3, max(hs), max(ws)), dtype=torch.float32, device=device)
    for i, im in enumerate(images):
        x[i, :, : hs[i], : ws[i]] = im
    # Per-image geometry as one small host → device copy (no sync per image).
    geometry = torch.tensor(
        [[w, (w - s) / 2, h, (h - s) / 2, s] for h, w, s in zip(hs, ws, sides, strict=True)],
        dtype=torch.float64,
    ).to(device)
    w_len, left, h_len, top, side = geometry.unbind(1)
    with _ieee_fp32():
        wx = _weights(w_len, left, left + side, size, x.shape[3])  # [N, size, W]
        x = _round_u8(x @ wx.transpose(1, 2)[:, None])  # [N, 3, H, size]
        wy = _weights(h_len, top, top + side, size, x.shape[2])  # [N, size, H]
        x = _round_u8(wy[:, None] @ x)  # [N, 3, size, size]
    return x.to(torch.uint8).permute(0, 2, 3, 1)


def square_resize(image: Any, size: int) -> Any:
    """One [3, H, W] uint8 image → [size, size, 3] uint8 (resize_batch of one)."""
    return resize_batch([image], size)[0]


def _read(path: str) -> bytes:
    """The file's bytes; b"" when it cannot be read (Pillow then names the reason)."""
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""


def _pillow(path: str, size: int) -> Any:
    from torchrig.recipes.image_classify import cache

    return cache.decode(path, size)


def decode_into(
    files: Sequence[str],
    rows: Any,
    size: int,
    decode_batch: DecodeBatch,
) -> list[tuple[int, str]]:
    """Decode `files` into `rows` (a [N, size, size, 3] uint8 array, the cache file's map);
    (index, reason) of the files that could not be read."""
    import numpy as np
    import torch

    from torchrig.recipes.image_classify.cache import _reason

    failed: list[tuple[int, str]] = []

    def pillow(i: int) -> None:
        try:
            rows[i] = _pillow(files[i], size)
        except Exception as exc:  # unreadable for Pillow too: skipped, as the CPU build does
            failed.append((i, _reason(exc)))

    def gpu(indices: list[int], data: list[bytes]) -> None:
        tensors = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in data]
        try:
            images = decode_batch(tensors)
        except Exception:  # one bad file fails the whole call: find it file by file
            images = []
            for t in tensors:
                try:
                    images.append(decode_batch([t])[0])
                except Exception:  # not for nvjpeg (CMYK, progressive oddities): Pillow
                    images.append(None)
        done = []
        for i, im in zip(indices, images, strict=True):
            if im is None:
                pillow(i)
            else:
                done.append((i, im))
        # Resized in groups of at most PIXELS padded input pixels (photos of many
        # megapixels would otherwise pad a batch to gigabytes).
        start = 0
        while start < len(done):
            stop, height, width = start, 0, 0
            while stop < len(done):
                _, h, w = done[stop][1].shape
                height, width = max(height, int(h)), max(width, int(w))
                if stop > start and (stop - start + 1) * height * width > PIXELS:
                    break
                stop += 1
            group = done[start:stop]
            pixels = resize_batch([im for _, im in group], size).cpu().numpy()
            rows[np.asarray([i for i, _ in group])] = pixels
            start = stop

    chunks = [list(range(i, min(i + BATCH, len(files)))) for i in range(0, len(files), BATCH)]
    with ThreadPoolExecutor(READERS) as pool:

        def read(chunk: list[int]) -> list[Any]:
            return [pool.submit(_read, files[i]) for i in chunk]

        ahead = read(chunks[0]) if chunks else []
        for n, chunk in enumerate(chunks):
            data = [f.result() for f in ahead]
            # The next chunk's files are read while this one decodes.
            ahead = read(chunks[n + 1]) if n + 1 < len(chunks) else []
            jpeg = [(i, d) for i, d in zip(chunk, data, strict=True) if d.startswith(JPEG_MAGIC)]
            for i, d in zip(chunk, data, strict=True):
                if not d.startswith(JPEG_MAGIC):
                    pillow(i)
            if jpeg:
                gpu([i for i, _ in jpeg], [d for _, d in jpeg])
    failed.sort()
    return failed
