"""torchrig.images: which image `torchrig push` put where, by digest, beside the lock.

    [[pushed]]
    image = "torchrig/demo:cu130-0123456789ab"                # the local build (its content tag)
    ref = "registry.example:5000/team/demo@sha256:…"          # what a cluster pulls
    tag = "registry.example:5000/team/demo:cu130-0123456789ab"
    engine = "docker"

Cluster files (`torchrig export kubernetes`, the Slurm scripts) name `ref`, never a tag: a
tag can be moved to other content in the registry, a digest cannot, and the engine checks
the content against it on every pull. One entry per image repository and variant: pushing a
rebuilt cpu image replaces the cpu entry and keeps a cu130 one.

`cluster_image` is the one rule every cluster renderer asks: the pushed digest of the image
the Plan builds, or the one a person names (by digest; a tag only while nothing was pushed).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from torchrig import userfiles
from torchrig.errors import UsageError

IMAGES_FILE = "torchrig.images"
DIGEST_REF = re.compile(r"^[^\s@]+@sha256:[0-9a-f]{64}$")
HEADER = (
    "# torchrig.images: the images `torchrig push` pushed, by digest. Cluster files\n"
    "# (torchrig export kubernetes, Slurm) pull `ref`. Written by torchrig push; rerun it\n"
    "# after a rebuild rather than editing this file.\n"
)
FIX = f"push again with `torchrig push` (it rewrites {IMAGES_FILE}), or delete the file"


class PushedImage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str
    """The local image as the Plan names it: torchrig/<project>:<variant>-<digest>."""
    ref: str
    """registry/name@sha256:… — what clusters pull."""
    tag: str
    """registry/name:<tag> — the tag pushed alongside, for people browsing the registry."""
    engine: str

    def key(self) -> tuple[str, str]:
        """(repository, variant): a newer push of the same pair replaces this one."""
        repository, _, tag = self.image.rpartition(":")
        return repository, tag.rsplit("-", 1)[0]


def images_path(project_dir: Path) -> Path:
    return project_dir / IMAGES_FILE


def read_images(project_dir: Path) -> list[PushedImage]:
    """The recorded pushes; [] when nothing was pushed. A broken file is one line, exit 2."""
    path = images_path(project_dir)
    if not path.exists() and not path.is_symlink():
        return []
    text = userfiles.read_text(path, project_dir, IMAGES_FILE, FIX)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML ({exc})", FIX) from None
    unknown = sorted(set(data) - {"pushed"})
    if unknown:
        raise UsageError(f"{path}: unknown key {unknown[0]!r}", FIX)
    raw = data.get("pushed", [])
    entries = []
    for index, entry in enumerate(raw if isinstance(raw, list) else [raw]):
        try:
            entries.append(PushedImage.model_validate(entry))
        except ValidationError as exc:
            raise UsageError(
                f"{path} is not what torchrig push writes (pushed[{index}].{_first(exc)})", FIX
            ) from None
    for entry in entries:
        if not DIGEST_REF.fullmatch(entry.ref):
            raise UsageError(f"{path}: ref {entry.ref!r} is not name@sha256:<64 hex>", FIX)
    return entries


def _first(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"])
    return f"{where}: {error['msg']}" if where else f"entry: {error['msg']}"


def render_images(entries: list[PushedImage]) -> str:
    lines = [HEADER.rstrip("\n")]
    for e in sorted(entries, key=lambda e: e.image):
        lines += [
            "",
            "[[pushed]]",
            f"image = {_toml_str(e.image)}",
            f"ref = {_toml_str(e.ref)}",
            f"tag = {_toml_str(e.tag)}",
            f"engine = {_toml_str(e.engine)}",
        ]
    return "\n".join(lines) + "\n"


def _toml_str(value: str) -> str:
    # Image references hold no quote, backslash or control character (the engine refuses them).
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def record_push(project_dir: Path, pushed: PushedImage) -> Path:
    """Write `pushed` into torchrig.images, replacing the entry of the same repository and
    variant; other variants' entries stay."""
    kept = [e for e in read_images(project_dir) if e.key() != pushed.key()]
    path = images_path(project_dir)
    # As the project's owner when root pushes for them: the record is theirs, like the lock.
    userfiles.write_text(
        path, project_dir, render_images([*kept, pushed]), IMAGES_FILE,
        "let the project's owner write in the project folder, then push again",
    )  # fmt: skip
    return path


def cluster_image(project_dir: Path, image: str, requested: str | None = None) -> str:
    """The image reference a cluster file names for the Plan's `image`.

    requested (an --image option or a spec field): used as given when it is a digest
    (name@sha256:…); a tag is refused once torchrig.images exists, since a pushed digest is
    then on record and a tag could point anywhere. With nothing requested, the pushed digest
    of exactly this build; a record of an older build is refused rather than used.
    """
    entries = read_images(project_dir)
    if requested:
        if DIGEST_REF.fullmatch(requested):
            return requested
        if entries:
            refs = ", ".join(e.ref for e in entries)
            raise UsageError(
                f"{requested} is a tag, and {IMAGES_FILE} records pushed digests ({refs})",
                "name the image by digest (name@sha256:…), or leave the image out to use "
                "the pushed digest of the current build",
            )
        return requested
    for entry in entries:
        if entry.image == image:
            return entry.ref
    if entries:
        older = ", ".join(e.image for e in entries)
        raise UsageError(
            f"{IMAGES_FILE} records a push of {older}, not of the current build {image}",
            "run `torchrig build` and `torchrig push` so the cluster gets what the spec says",
        )
    raise UsageError(
        f"no pushed image for {image}: a cluster cannot pull a local image",
        "run `torchrig push REGISTRY/NAME` (it records the digest in torchrig.images), or "
        "name an image the cluster can pull with --image NAME@sha256:…",
    )
