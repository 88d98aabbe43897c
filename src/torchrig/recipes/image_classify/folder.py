"""An ImageFolder tree: one subfolder per class, the label of a class its folder's name.

    DIR/cat/001.jpg  DIR/cat/more/002.png  DIR/dog/003.webp ...

Labels are the sorted names of the class folders, so the same tree gives the same label
numbers on every machine. Images are found by extension (jpg, jpeg, png, webp, bmp), in
nested folders too; hidden files and anything else are ignored. Only the listing and one
stat per file happen here: decoding is the cache's job (cache.py).

Every problem a person can fix — a missing folder, an empty class, a validation class the
training set lacks — is one UsageError naming the folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from torchrig.errors import UsageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})


@dataclass(frozen=True)
class ImageFolder:
    root: Path
    classes: list[str]  # sorted class folder names
    paths: list[str]  # POSIX paths relative to root, class folder first, sorted
    labels: list[int]  # index into classes, one per path
    sizes: list[int]
    mtimes_ns: list[int]

    def __len__(self) -> int:
        return len(self.paths)

    def fingerprint(self, *extra: object) -> str:
        """What the decoded cache depends on: every file's path, size and mtime, plus
        `extra` (the cache size, the format version). Any change gives another value."""
        digest = hashlib.sha256()
        digest.update(json.dumps([str(e) for e in extra]).encode())
        for path, size, mtime in zip(self.paths, self.sizes, self.mtimes_ns, strict=True):
            digest.update(f"\0{path}\0{size}\0{mtime}".encode())
        return digest.hexdigest()


def scan(root: Path, what: str = "--data") -> ImageFolder:
    """List the tree under `root`; `what` names the flag in errors (--data, --val)."""
    root = Path(root)
    if not root.is_dir():
        kind = "is not a folder" if root.exists() else "does not exist"
        raise UsageError(
            f"{what} {root} {kind}",
            "give a folder with one subfolder of images per class (an ImageFolder tree)",
        )
    classes = sorted(
        entry.name for entry in os.scandir(root) if entry.is_dir() and not _hidden(entry.name)
    )
    if not classes:
        raise UsageError(
            f"{what} {root} has no class folders",
            "put the images of each class in their own subfolder: DIR/CLASS/IMAGE.jpg",
        )
    paths: list[str] = []
    labels: list[int] = []
    sizes: list[int] = []
    mtimes: list[int] = []
    for label, name in enumerate(classes):
        found = _images(root / name)
        if not found:
            raise UsageError(
                f"{what}: class folder {root / name} has no images "
                f"({', '.join(sorted(IMAGE_EXTENSIONS))})",
                "add images to it or remove the folder",
            )
        for rel, st in found:
            paths.append(f"{name}/{rel}")
            labels.append(label)
            sizes.append(st.st_size)
            mtimes.append(st.st_mtime_ns)
    return ImageFolder(root, classes, paths, labels, sizes, mtimes)


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _images(folder: Path) -> list[tuple[str, os.stat_result]]:
    """(path relative to folder, stat) of every image below it, sorted by path."""
    found: list[tuple[str, os.stat_result]] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
        base = Path(dirpath).relative_to(folder)
        for name in filenames:
            if _hidden(name) or Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            full = Path(dirpath) / name
            try:
                st = full.stat()
            except OSError:
                continue  # a dangling link: not an image we could read
            found.append(((base / name).as_posix(), st))
    found.sort(key=lambda item: item[0])
    return found


def check_val_classes(train: ImageFolder, val: ImageFolder) -> list[int]:
    """Map val's label numbers onto train's; a class the training set lacks is an error
    (the model has no output for it)."""
    index = {name: i for i, name in enumerate(train.classes)}
    unseen = [name for name in val.classes if name not in index]
    if unseen:
        raise UsageError(
            f"--val {val.root}: label {unseen[0]!r} is unseen in training "
            f"(no folder {train.root / unseen[0]})"
            + (f", nor {len(unseen) - 1} more" if len(unseen) > 1 else ""),
            "validate on the training set's classes only, or add that class to --data",
        )
    return [index[name] for name in val.classes]
