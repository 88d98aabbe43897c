"""What the workbench gets beside /workspace: the spec's [[mounts]], the Hugging Face cache
volume, and the environment its mirrors need.

The spec model checks what a file alone can tell (absolute paths, reserved container paths,
targets apart). What only this machine can tell is checked here, when a workbench or a job
container is planned to run (`up`, `run --fresh`, `export`) and by `torchrig plan` for this
machine: the host path exists, is a folder or a file once symlinks are resolved, and is
neither /, a system folder, a folder holding one, nor a container engine's socket (a read-only
mount of the Docker socket still lets the workbench start a root container on the host).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from torchrig import userfiles
from torchrig.engine.base import Mount
from torchrig.errors import UsageError
from torchrig.spec.model import HF_CACHE_TARGET, Spec

PYPI = "https://pypi.org/simple"
# Host folders no workbench gets, nor any folder that holds one: the system's configuration
# and secrets, the kernel's interfaces, runtime sockets (Docker's and rootful Podman's live in
# /run, /var/run links there) and the engines' storage (every container's files and volumes).
SYSTEM_FOLDERS = (
    "/etc",
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/run",
    "/var/run",
    "/var/lib/docker",
    "/var/lib/containers",
    "/var/lib/containerd",
)
# The volume's name per scope: one per workbench UID, or one for the whole host.
HF_VOLUME = "torchrig-hf-cache"


@dataclass(frozen=True)
class CheckedMount:
    """One [[mounts]] entry as it will be mounted."""

    index: int
    source: str
    """As written in the spec."""
    host_path: Path
    """With ~ expanded and symlinks resolved: what the engine gets."""
    target: str
    read_only: bool
    kind: str
    """"folder" or "file"."""


def _engine_sockets(environ: dict[str, str]) -> list[Path]:
    """Sockets of the engines this user could reach, wherever they live."""
    found = [Path("/var/run/docker.sock"), Path("/run/docker.sock"), Path("/run/podman")]
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime:
        found += [Path(runtime) / "docker.sock", Path(runtime) / "podman"]
    for name in ("DOCKER_HOST", "CONTAINER_HOST"):
        value = environ.get(name, "")
        if value.startswith("unix://"):
            found.append(Path(value.removeprefix("unix://")))
    return found


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_mount(
    index: int,
    source: str,
    target: str,
    read_only: bool,
    *,
    environ: dict[str, str] | None = None,
    home: Path | None = None,
    project: Path | None = None,
) -> CheckedMount:
    """One mount checked against this machine; UsageError naming mounts[index] if refused.

    With `project`, root starting another person's workbench mounts only what that person
    may open themselves (userfiles): a 0755 folder under /root is not theirs to mount."""
    env = dict(os.environ if environ is None else environ)
    key = f"mounts[{index}].source"
    if source == "~" or source.startswith("~/"):
        path = (home or Path.home()) / source[2:]
    else:
        path = Path(source)
    try:
        resolved = path.resolve(strict=True)
        mode = resolved.stat().st_mode
    except FileNotFoundError:
        raise UsageError(
            f"{key}: {source} does not exist on this machine",
            "create it, fix the path in torchrig.toml, or remove this [[mounts]] table",
        ) from None
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "a symlink loop"
        raise UsageError(
            f"{key}: {source} cannot be read ({why})",
            "fix the path or its permissions in torchrig.toml",
        ) from None
    shown = source if str(resolved) == source else f"{source} (→ {resolved})"
    if resolved == Path("/"):
        raise UsageError(
            f"{key}: {shown} is the whole host filesystem",
            'mount the folder you need, e.g. source = "/data/imagenet"',
        )
    if stat.S_ISSOCK(mode) or any(
        _inside(resolved, sock.resolve()) or _inside(sock.resolve(), resolved)
        for sock in _engine_sockets(env)
        if sock.exists()
    ):
        raise UsageError(
            f"{key}: {shown} is or holds a container engine's socket, which would give the "
            "workbench root on this host",
            "mount a folder of data instead; never the engine's socket",
        )
    for folder in SYSTEM_FOLDERS:
        system = Path(folder)
        if _inside(resolved, system) or _inside(system, resolved):
            where = "is" if _inside(resolved, system) else "holds"
            raise UsageError(
                f"{key}: {shown} {where} the system folder {folder}",
                "mount a folder of data or models instead (copy what the workbench needs)",
            )
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        raise UsageError(
            f"{key}: {shown} is neither a folder nor a file",
            "mount a folder or a regular file",
        )
    if project is not None:
        userfiles.check_reachable(
            resolved, project, key, "mount a folder the project's owner may read, or run "
            "torchrig as that person",
        )  # fmt: skip
    return CheckedMount(
        index=index,
        source=source,
        host_path=resolved,
        target=target,
        read_only=read_only,
        kind="folder" if stat.S_ISDIR(mode) else "file",
    )


def checked_mounts(
    spec: Spec,
    *,
    environ: dict[str, str] | None = None,
    home: Path | None = None,
    project: Path | None = None,
) -> list[CheckedMount]:
    return [
        check_mount(i, m.source, m.target, m.read_only, environ=environ, home=home, project=project)
        for i, m in enumerate(spec.mounts)
    ]


def bind_mounts(checked: list[CheckedMount]) -> list[Mount]:
    return [Mount(source=str(m.host_path), target=m.target, read_only=m.read_only) for m in checked]


# --- the Hugging Face cache --------------------------------------------------------------------


def hf_cache_volume(spec: Spec, uid: int) -> str | None:
    """The cache volume's name for a workbench of `uid`, or None when the spec opts out."""
    scope = spec.cache.huggingface
    if scope == "none":
        return None
    return HF_VOLUME if scope == "host" else f"{HF_VOLUME}-{uid}"


def hf_cache_mounts(spec: Spec, uid: int) -> list[Mount]:
    volume = hf_cache_volume(spec, uid)
    return [] if volume is None else [Mount(source=volume, target=HF_CACHE_TARGET, kind="volume")]


def hf_cache_env(spec: Spec) -> dict[str, str]:
    """HF_HUB_CACHE and friends, not HF_HOME: HF_HOME also holds the login token
    (`huggingface-cli login`), which stays private in ~/.cache/huggingface."""
    if spec.cache.huggingface == "none":
        return {}
    return {
        "HF_HUB_CACHE": f"{HF_CACHE_TARGET}/hub",
        "HF_XET_CACHE": f"{HF_CACHE_TARGET}/xet",
        "HF_DATASETS_CACHE": f"{HF_CACHE_TARGET}/datasets",
        # The entrypoint prepares the volume's root for this scope (workbench/caches.py).
        "TORCHRIG_HF_CACHE": spec.cache.huggingface,
    }


# --- mirrors inside the workbench ------------------------------------------------------------


def source_env(spec: Spec) -> dict[str, str]:
    """The spec's mirrors for pip and huggingface_hub in the workbench: behind a firewall a
    `pip install` or `from_pretrained` there must use them too."""
    sources = spec.sources
    env: dict[str, str] = {}
    if sources.hf_endpoint:
        env["HF_ENDPOINT"] = sources.hf_endpoint
    if sources.index not in (PYPI, "none"):
        env["PIP_INDEX_URL"] = sources.index
    extra = [i for i in sources.extra_indexes if not i.startswith("file:")]
    if extra:
        env["PIP_EXTRA_INDEX_URL"] = " ".join(extra)
    if sources.trusted_hosts:
        env["PIP_TRUSTED_HOST"] = " ".join(sources.trusted_hosts)
    return env
