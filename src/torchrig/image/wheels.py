"""Fetch the locked wheels into a content-addressed cache on the host, checking every sha256.

Each file is downloaded once per machine, whatever project asks for it, and stored under its
hash, so a tampered or truncated download can never be used. The shared cache
(/var/cache/torchrig/wheels, image/shared_cache.py) is looked in first, so one user's (or
`sudo torchrig prepare`'s) download serves every user. Builds then install from this
cache (see wheelserver), so no image layer ever holds a wheel and rebuilds download nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlparse

from torchrig.errors import ToolError
from torchrig.image import shared_cache
from torchrig.lock.uv import LockedPackage

CHUNK = 1 << 20
Progress = Callable[[str], None]


def cache_root() -> Path:
    if root := os.environ.get("TORCHRIG_CACHE"):
        return Path(root).expanduser() / "wheels"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "torchrig" / "wheels"


def cached_path(package: LockedPackage, root: Path) -> Path:
    return root / package.sha256[:2] / package.sha256 / package.file


def fetch_all(
    packages: Iterable[LockedPackage],
    *,
    root: Path | None = None,
    workers: int = 6,
    progress: Progress | None = None,
    on_ready: Callable[[Path], None] | None = None,
) -> tuple[dict[str, Path], int]:
    """Every package's file in the cache: name → path, and the bytes downloaded this time.
    `on_ready(path)` is called for each file as soon as it is in the cache and checked (a
    build serves it from then on, while the rest still download: image/build.py).

    Without `root`: files already in the shared cache (`sudo torchrig prepare`) are used
    when they check out (see `_shared_copy`); the rest are downloaded into the shared cache
    when this user may write there (a member of group torchrig), else into the user's own."""
    wanted = list(packages)
    # name → the root its file is (or will be) in.
    roots: dict[str, Path] = {p.name: root for p in wanted} if root else {}
    if root is None:
        mine, shared = cache_root(), shared_cache.wheels_dir()
        readable = shared_cache.readable_dir(shared)
        writable = shared_cache.writable_dir(shared)
        for p in wanted:
            if readable and _shared_copy(p, shared):
                roots[p.name] = shared
            elif writable and not cached_path(p, shared).exists():
                roots[p.name] = shared  # a download there serves every user
            else:
                roots[p.name] = mine  # includes shared copies that did not check out
    missing = [p for p in wanted if not cached_path(p, roots[p.name]).exists()]
    ready = on_ready or (lambda _path: None)
    for p in wanted:
        if p not in missing:
            ready(cached_path(p, roots[p.name]))
    if missing and progress:
        total = sum(p.size or 0 for p in missing)
        where = ", ".join(sorted({str(roots[p.name]) for p in missing}))
        progress(f"downloading {len(missing)} files ({total / 1e6:.0f} MB) into {where}")
    downloaded = 0
    if missing:

        def fetch(package: LockedPackage) -> int:
            size = _fetch(package, roots[package.name])
            ready(cached_path(package, roots[package.name]))
            return size

        # Largest first: torch and the CUDA libraries bound the time, so they start at once.
        missing.sort(key=lambda p: p.size or 0, reverse=True)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for size in pool.map(fetch, missing):
                downloaded += size
    return {p.name: cached_path(p, roots[p.name]) for p in wanted}, downloaded


def _shared_copy(package: LockedPackage, shared: Path) -> bool:
    """The shared cache's copy, if it is the locked file: one root or this user wrote (and no
    one else can change), or whose sha256, computed now, is the lock's. Others' files are
    hashed because any member of group torchrig can add files to the shared cache."""
    path = cached_path(package, shared)
    if not path.is_file():
        return False
    return shared_cache.trusted_file(path) or _sha256(path) == package.sha256


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(package: LockedPackage, root: Path) -> int:
    target = cached_path(package, root)
    shared_cache.make_dirs(target.parent)
    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(prefix=".part-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in _read(package.url):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
        if digest.hexdigest() != package.sha256:
            raise ToolError(
                f"{package.file}: sha256 {digest.hexdigest()[:16]}… is not the locked "
                f"{package.sha256[:16]}… (tampered, or the index changed the file)",
                "investigate the source; never disable hash checking (torchrig lock to re-pin)",
            )
        # mkstemp makes 0600 files; wheels are public, and other users read the shared cache.
        Path(tmp_name).chmod(0o644)
        Path(tmp_name).replace(target)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
    return size


def _read(url: str) -> Iterable[bytes]:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
        try:
            with path.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    yield chunk
        except OSError as exc:
            raise ToolError(
                f"cannot read {path} ({exc.strerror})",
                "the lock names a local wheelhouse file that is gone: restore it or re-lock",
            ) from None
        return
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            while chunk := response.read(CHUNK):
                yield chunk
    except OSError as exc:
        raise ToolError(
            f"download failed: {url} ({exc})",
            "check the network or the mirror; behind a TLS-inspecting proxy add its CA to "
            "sources.ca_certificates",
        ) from None


def link_into(files: Iterable[Path], folder: Path) -> None:
    """Hard-link (or copy across file systems) cached files into a folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for src in files:
        dst = folder / src.name
        if dst.exists():
            continue
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
