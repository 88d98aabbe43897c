"""torchrig.lock: the format, how it is written and read, and what is derived from it.

A lock holds one target per build variant (cu130, cu126, cpu …). Each target lists every
package with the one file that installs on the target platform, its sha256, size and index.
From a target come the hash-pinned requirements the image installs with `pip
--require-hashes`, and the constraints file that keeps the GPU stack in place afterwards.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from torchrig.errors import UsageError
from torchrig.lock.inputs import LOCK_FORMAT, is_guarded
from torchrig.lock.uv import LockedPackage

LOCK_FILE = "torchrig.lock"


class Target(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    variant: str
    torch: str
    cuda: str
    python: str
    platform: str
    torch_index: str
    inputs_digest: str
    requirements: list[str]
    packages: list[LockedPackage]

    @property
    def download_bytes(self) -> int:
        return sum(p.size or 0 for p in self.packages)


class LockFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = LOCK_FORMAT
    torchrig: str
    spec_digest: str
    targets: list[Target]

    def target(self, variant: str) -> Target | None:
        return next((t for t in self.targets if t.variant == variant), None)


def _q(value: str) -> str:
    # JSON string escaping is valid TOML basic-string escaping for our contents.
    return json.dumps(value, ensure_ascii=False)


def render_lock(lock: LockFile, *, command: str = "torchrig lock") -> str:
    """The lock as text: stable order, one package per block, so diffs read well."""
    variants = ", ".join(t.variant for t in lock.targets)
    out = [
        "# torchrig.lock: every Python package of the workbench, pinned with its sha256.",
        f"# Made by torchrig {lock.torchrig} from torchrig.toml ({lock.spec_digest}).",
        f"# Targets: {variants}. Do not edit by hand.",
        f"# Regenerate: {command}",
        "# Check it still matches the spec: torchrig lock --check",
        "",
        f"version = {lock.version}",
        f"torchrig = {_q(lock.torchrig)}",
        f"spec_digest = {_q(lock.spec_digest)}",
    ]
    for t in lock.targets:
        out += [
            "",
            "[[targets]]",
            f"variant = {_q(t.variant)}",
            f"torch = {_q(t.torch)}",
            f"cuda = {_q(t.cuda)}",
            f"python = {_q(t.python)}",
            f"platform = {_q(t.platform)}",
            f"torch_index = {_q(t.torch_index)}",
            f"inputs_digest = {_q(t.inputs_digest)}",
            "requirements = [",
            *[f"  {_q(r)}," for r in t.requirements],
            "]",
        ]
        for p in t.packages:
            out += [
                "",
                "[[targets.packages]]",
                f"name = {_q(p.name)}",
                f"version = {_q(p.version)}",
                f"index = {_q(p.index)}",
                f"file = {_q(p.file)}",
                f"url = {_q(p.url)}",
            ]
            if p.size is not None:
                out.append(f"size = {p.size}")
            out.append(f"sha256 = {_q(p.sha256)}")
            if p.marker:
                out.append(f"marker = {_q(p.marker)}")
            if p.sdist:
                out.append("sdist = true")
    return "\n".join(out) + "\n"


def read_lock(path: Path) -> LockFile:
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist", "run `torchrig lock` to make it") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(
            f"{path} is not a readable lock ({exc})", "run `torchrig lock` to make it again"
        ) from None
    try:
        lock = LockFile.model_validate(data)
    except ValidationError as exc:
        where = ".".join(str(p) for p in exc.errors()[0]["loc"])
        raise UsageError(
            f"{path} is not a torchrig lock ({where}: {exc.errors()[0]['msg']})",
            "run `torchrig lock` to make it again",
        ) from None
    if lock.version != LOCK_FORMAT:
        raise UsageError(
            f"{path} has lock format {lock.version}; this torchrig reads {LOCK_FORMAT}",
            "run `torchrig lock` to make it again",
        )
    return lock


def requirements_txt(target: Target) -> str:
    """Hash-pinned requirements for `pip install --require-hashes --no-deps`."""
    lines = [
        f"# torchrig lock target {target.variant}: torch {target.torch}, Python {target.python}"
    ]
    for p in target.packages:
        marker = f" ; {p.marker}" if p.marker else ""
        lines.append(f"{p.name}=={p.version}{marker} --hash=sha256:{p.sha256}")
    return "\n".join(lines) + "\n"


def constraints_txt(target: Target) -> str:
    """Constraints that stop a later `pip install` from replacing torch or the CUDA libraries."""
    lines = [
        "# torchrig: the GPU stack of this workbench is locked. A package that needs another",
        "# torch, triton or CUDA library cannot be installed over it; change torchrig.toml",
        "# and rebuild instead.",
    ]
    lines += [f"{p.name}=={p.version}" for p in target.packages if is_guarded(p.name)]
    return "\n".join(lines) + "\n"
