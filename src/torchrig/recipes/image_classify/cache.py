"""The pre-decoded image cache: JPEG decoding once, not every epoch.

Decoding a 300-px JPEG and resizing it costs ~2-5 ms of one CPU core; ResNet-50 on an H100
trains on ~5,000 images/s, which would take 15-25 cores of decoding every second of every
epoch. So each image is decoded once, resized (short side to `size`, Pillow's antialiased
bilinear) and centre-cropped to size × size, and kept as uint8 RGB in one flat file:

    CACHE/NAME-HASH-256px.u8        [N, size, size, 3] uint8, memory-mapped for training
    CACHE/NAME-HASH-256px.u8.json   format, size, fingerprint, count, skipped images

Training then gathers rows of a memmap (one numpy copy per batch) and does the random crops
and flips on the GPU (augment.py). A 256-px row is 192 KiB: ~4 GiB per 20,000 images, kept
in the page cache by the kernel when memory allows.

Validity. The sidecar records a fingerprint of every file's relative path, size and mtime,
the cache size and the format version; when it matches the tree, the cache is reused,
otherwise rebuilt. The data file is written under a temporary name and renamed; the sidecar
is written last (atomically), so a half-built cache is never taken for a whole one.

Building. A pool of processes (spawned: no inherited CUDA or thread state) decodes chunks of
images straight into the memory-mapped temporary file. Pillow's `draft` lets the JPEG
decoder skip to 1/2, 1/4 or 1/8 scale when the image is much larger than needed, which is
most of the decoding cost for photos. An image that cannot be read is skipped (its row stays
zero and is never used) and reported with its reason; it never stops the build.

With `--decode gpu` the build decodes on the GPU instead (nvjpeg, gpu_decode.py); the
sidecar's "decoder" says which one made a cache, and either reuses the other's.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchrig.errors import UsageError
from torchrig.fsutil import write_atomically
from torchrig.recipes.image_classify.folder import ImageFolder

CACHE_FORMAT = 1
# Images per task of the pool: large enough that scheduling costs nothing, small enough
# that the last tasks end together.
CHUNK = 64
# Fewer images than this decode in the calling process: starting a pool costs more.
POOL_MIN_IMAGES = 256


def default_cache_size(image_size: int) -> int:
    """The classic ImageNet ratio: resize to 256 for 224 crops."""
    return round(image_size * 256 / 224)


@dataclass
class DecodedCache:
    path: Path
    size: int
    images: Any  # numpy memmap [N, size, size, 3] uint8
    skipped: list[tuple[int, str, str]]  # (index, relative path, reason)
    built: bool  # decoded in this call (False: an unchanged cache was reused)
    build_s: float = 0.0
    workers: int = 0
    _skipped_set: set[int] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        self._skipped_set = {i for i, _, _ in self.skipped}

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def readable(self, index: int) -> bool:
        return index not in self._skipped_set

    @property
    def images_per_s(self) -> float:
        return len(self) / self.build_s if self.build_s > 0 else 0.0


def cache_path(cache_dir: Path, folder: ImageFolder, size: int) -> Path:
    """One file per (tree, size): runs sharing --cache share it, two trees never clash."""
    where = hashlib.sha256(str(folder.root.resolve()).encode()).hexdigest()[:10]
    return Path(cache_dir) / f"{folder.root.name or 'images'}-{where}-{size}px.u8"


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def decode(path: str | Path, size: int) -> Any:
    """One image as [size, size, 3] uint8 RGB: short side resized to `size`, centre square.
    Raises what Pillow raises for a file it cannot read."""
    import numpy as np
    from PIL import Image

    with warnings.catch_warnings():
        # Palette images with transparency warn on convert("RGB"); the pixels are fine.
        warnings.simplefilter("ignore")
        with Image.open(path) as im:
            # JPEG only (a no-op otherwise): decode at the smallest 1/2^k scale whose both
            # sides are still ≥ size, so the short side is never upscaled by it.
            im.draft("RGB", (size, size))
            rgb = im.convert("RGB")
    w, h = rgb.size
    side = min(w, h)
    box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
    # Crop and resize in one pass: only the centre square is resampled.
    out = rgb.resize((size, size), Image.Resampling.BILINEAR, box=box)
    return np.asarray(out, dtype=np.uint8)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


# --- the pool's side: each worker maps the temporary file once --------------------------

_worker_images: Any = None
_worker_size = 0


def _init_worker(path: str, count: int, size: int) -> None:
    import numpy as np

    global _worker_images, _worker_size
    _worker_images = np.memmap(path, dtype=np.uint8, mode="r+", shape=(count, size, size, 3))
    _worker_size = size


def _decode_chunk(task: tuple[int, list[str]]) -> list[tuple[int, str]]:
    """Decode files[start:start+len] into their rows; (index, reason) of those that fail."""
    start, files = task
    failed: list[tuple[int, str]] = []
    for offset, file in enumerate(files):
        try:
            _worker_images[start + offset] = decode(file, _worker_size)
        except Exception as exc:  # any unreadable file is skipped, whatever Pillow raised
            failed.append((start + offset, _reason(exc)))
    _worker_images.flush()
    return failed


def _chunks(files: list[str]) -> Iterator[tuple[int, list[str]]]:
    for start in range(0, len(files), CHUNK):
        yield start, files[start : start + CHUNK]


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# --- the caller's side ------------------------------------------------------------------


def open_cache(folder: ImageFolder, cache_dir: Path, size: int) -> DecodedCache | None:
    """The cache of `folder` at `size` when it exists and matches the tree, else None."""
    import numpy as np

    path = cache_path(cache_dir, folder, size)
    try:
        meta = json.loads(sidecar(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    expected_bytes = len(folder) * size * size * 3
    if (
        not isinstance(meta, dict)
        or meta.get("format") != CACHE_FORMAT
        or meta.get("size") != size
        or meta.get("count") != len(folder)
        or meta.get("fingerprint") != folder.fingerprint(size, CACHE_FORMAT)
        or not path.is_file()
        or path.stat().st_size != expected_bytes
    ):
        return None
    images = np.memmap(path, dtype=np.uint8, mode="r", shape=(len(folder), size, size, 3))
    skipped = [(int(i), str(p), str(r)) for i, p, r in meta.get("skipped", [])]
    return DecodedCache(path, size, images, skipped, built=False)


def build_cache(
    folder: ImageFolder,
    cache_dir: Path,
    size: int,
    workers: int | None = None,
    say: Callable[[str], None] = print,
    gpu: Callable[[list[Any]], list[Any]] | None = None,
) -> DecodedCache:
    """Reuse the cache of `folder` when it is current, else decode every image into it:
    with Pillow in a pool of processes, or with `gpu` (gpu_decode.nvjpeg(device)) in this
    one. Under DDP call it on one rank and let the others wait, then `open_cache` there."""
    import numpy as np

    found = open_cache(folder, cache_dir, size)
    if found is not None:
        return found
    cache_dir = Path(cache_dir)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"cannot create the image cache folder {cache_dir} ({exc.strerror})",
            "give a writable --cache DIR",
        ) from None
    path = cache_path(cache_dir, folder, size)
    sidecar(path).unlink(missing_ok=True)  # no stale sidecar beside a new file
    count = len(folder)
    n_bytes = count * size * size * 3
    files = [str(folder.root / rel) for rel in folder.paths]
    n_workers = min(workers or available_cpus(), -(-count // CHUNK))
    if count < POOL_MIN_IMAGES or gpu is not None:
        n_workers = 1
    how = "on the GPU (nvjpeg)" if gpu is not None else f"{n_workers} process(es)"
    say(
        f"image cache: decoding {count} images of {folder.root} to {size}×{size} "
        f"({n_bytes / 2**30:.2f} GiB, {how}) → {path}"
    )
    start = time.perf_counter()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=cache_dir)
    try:
        os.ftruncate(fd, n_bytes)  # sparse until written; the workers fill it
        os.close(fd)
        fd = -1
        failed: list[tuple[int, str]] = []
        if gpu is not None:
            from torchrig.recipes.image_classify.gpu_decode import decode_into

            _init_worker(tmp, count, size)
            failed = decode_into(files, _worker_images, size, gpu)
            _worker_images.flush()
        elif n_workers <= 1:
            _init_worker(tmp, count, size)
            for chunk in _chunks(files):
                failed += _decode_chunk(chunk)
        else:
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(n_workers, initializer=_init_worker, initargs=(tmp, count, size)) as pool:
                for part in pool.imap_unordered(_decode_chunk, _chunks(files)):
                    failed += part
        synced = time.perf_counter()
        with Path(tmp).open("rb+") as handle:
            os.fsync(handle.fileno())
        fsync_s = time.perf_counter() - synced  # part of build_s: the cost of durability
        Path(tmp).chmod(0o644)
        Path(tmp).replace(path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        _release_worker_map()
    build_s = time.perf_counter() - start
    failed.sort()
    skipped = [(i, folder.paths[i], reason) for i, reason in failed]
    record = {
        "format": CACHE_FORMAT,
        "size": size,
        "count": count,
        "fingerprint": folder.fingerprint(size, CACHE_FORMAT),
        "root": str(folder.root),
        "skipped": [list(s) for s in skipped],
        "build_s": round(build_s, 3),
        "fsync_s": round(fsync_s, 3),
        "decoder": "nvjpeg" if gpu is not None else "pillow",
    }
    write_atomically(sidecar(path), json.dumps(record) + "\n")
    images = np.memmap(path, dtype=np.uint8, mode="r", shape=(count, size, size, 3))
    return DecodedCache(path, size, images, skipped, True, build_s, n_workers)


def _release_worker_map() -> None:
    """The in-process path maps the temporary file like a worker would; drop that map."""
    global _worker_images
    _worker_images = None
