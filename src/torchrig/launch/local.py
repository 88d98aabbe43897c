"""What this machine says, for the plan: everything plan() must not find out itself.

The plan is pure (plan/plan.py); the verbs gather its `Local` here: free ports, the public
keys, torchrig's own files as the build copies them, the CA certificates, the checked
mounts, and the base image, obtained (build) or only looked up (plan, export), so `plan`
changes nothing and still prints the tag `build` makes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torchrig
from torchrig import userfiles
from torchrig.engine.base import Engine
from torchrig.errors import HostError, TorchrigError, UsageError
from torchrig.freeport import port_is_free
from torchrig.image import registry
from torchrig.image.base import default_cache_dir
from torchrig.image.shared_cache import bases_dir, readable_dir
from torchrig.launch.mounts import checked_mounts
from torchrig.launch.session import Session
from torchrig.plan.image import BaseRef, ContextFile
from torchrig.plan.plan import Local
from torchrig.plan.run import spec_ports
from torchrig.spec.model import Spec

HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
BASE_RECORD = "base.json"
SKIPPED_PARTS = ("__pycache__",)


def state_path(project: str) -> Path:
    """~/.local/state/torchrig/PROJECT: the keys file, the staged env file, the last base."""
    root = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(root) / "torchrig" / project


def state_dir(project: str) -> Path:
    """state_path, made if missing (for writing)."""
    folder = state_path(project)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# --- the build context's files from disk ---------------------------------------------------


def package_root() -> Path:
    return Path(torchrig.__file__).parent


def package_files(root: Path | None = None) -> list[Path]:
    """torchrig's own files as the build copies them: no __pycache__, no .pyc."""
    root = root or package_root()
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and not any(part in SKIPPED_PARTS for part in p.relative_to(root).parts)
        and p.suffix != ".pyc"
    )


def torchrig_files(root: Path | None = None) -> tuple[ContextFile, ...]:
    root = root or package_root()
    out = []
    for path in package_files(root):
        data = path.read_bytes()
        out.append(
            ContextFile(
                path=f"torchrig/{path.relative_to(root).as_posix()}",
                sha256=hashlib.sha256(data).hexdigest(),
                size=len(data),
            )
        )
    return tuple(out)


def ca_certificates(spec: Spec, project: Path) -> tuple[tuple[str, bytes], ...]:
    """(name, PEM) of the spec's extra CAs and the host's local ones (TLS-inspecting
    proxies, mirrors). The spec's go into the owner's image: read with their rights."""
    found = []
    for name in spec.sources.ca_certificates:
        path = userfiles.expand(name, project)
        fix = "point it at a PEM certificate file the project's owner may read"
        text = userfiles.read_text(path, project, "sources.ca_certificates", fix)
        if "BEGIN CERTIFICATE" not in text:
            raise UsageError(f"sources.ca_certificates: {path} is not a PEM certificate", fix)
        found.append((path.stem, text.encode()))
    if HOST_CA_DIR.is_dir():
        found += [
            (p.stem, p.read_bytes()) for p in sorted(HOST_CA_DIR.rglob("*.crt")) if p.is_file()
        ]
    return tuple(found)


# --- the base image -------------------------------------------------------------------------


def _base_key(session: Session) -> dict[str, str]:
    choice = session.resolution.base
    return {
        "distribution": choice.distribution,
        "image": choice.image,
        "mirror": choice.mirror,
        "arch": session.resolution.arch,
        "registry": session.spec.sources.registry,
    }


def record_base(session: Session, base: BaseRef) -> None:
    """The base the last build used, so `plan` can name the same one without pulling."""
    from torchrig.fsutil import write_atomically

    record = {
        "key": _base_key(session),
        "image": base.image,
        "components": list(base.components),
        "source": base.source,
    }
    write_atomically(
        state_dir(session.spec.project.name) / BASE_RECORD, json.dumps(record, indent=2) + "\n"
    )


def find_base(session: Session, engine: Engine | None) -> BaseRef | None:
    """The base `build` would use now, found without pulling, importing or bootstrapping:
    the one the last build used if the engine still has it, else one the engine already
    has (a pulled registry image, a bootstrapped base from the caches). None: not here."""
    choice = session.resolution.base
    dist = session.distribution()
    components = tuple(dist.components) if dist else ("main",)
    if choice.distribution == "image":
        return BaseRef(choice.image, (), "spec")
    if engine is None:
        return None
    path = state_path(session.spec.project.name) / BASE_RECORD
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        record = {}
    if isinstance(record, dict) and record.get("key") == _base_key(session):
        image = str(record.get("image", ""))
        if image and _engine_has(engine, image):
            return BaseRef(image, tuple(record.get("components") or ()), str(record["source"]))
    setting = session.spec.sources.registry
    if setting != registry.NONE:
        ref = registry.registry_ref(choice.image, setting)
        try:
            found = engine.image_inspect(ref).get("RepoDigests") or []
        except TorchrigError:
            found = []
        pinned = registry.digest_of([str(d) for d in found], ref)
        if pinned is not None:
            return BaseRef(pinned, components, "registry")
    for folder, source in ((bases_dir(), "shared cache"), (default_cache_dir(), "bootstrap")):
        tag = _cached_base_tag(folder, choice.distribution, choice.mirror, components)
        if tag and _engine_has(engine, tag):
            return BaseRef(tag, components, source)
    return None


def _engine_has(engine: Engine, image: str) -> bool:
    try:
        return engine.image_exists(image)
    except TorchrigError:
        return False


def _cached_base_tag(
    folder: Path, distribution: str, mirror: str, components: tuple[str, ...]
) -> str | None:
    """The newest bootstrapped base recorded in `folder` for this distribution and mirror."""
    if not readable_dir(folder) or ":" not in distribution:
        return None
    distro, release = distribution.split(":", 1)
    for meta_path in sorted(folder.glob(f"{distro}-{release}-*.json"), reverse=True):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            continue
        if (
            isinstance(meta, dict)
            and meta.get("mirror") == mirror
            and meta.get("components") == list(components)
            and meta.get("verified") is True
            and isinstance(meta.get("tag"), str)
        ):
            return str(meta["tag"])
    return None


# --- ports and keys -------------------------------------------------------------------------


def choose_ports(spec: Spec, taken: set[int] | None = None) -> dict[str, int]:
    """Host ports on 127.0.0.1: the spec's, or the next free one when it is taken."""
    chosen: dict[str, int] = {}
    used = set(taken or ())
    for service, port in spec_ports(spec).items():
        for candidate in range(port, min(port + 100, 65536)):
            if candidate not in used and port_is_free(candidate):
                chosen[service] = candidate
                used.add(candidate)
                break
        else:
            raise HostError(
                f"no free port on 127.0.0.1 between {port} and {port + 99} for {service}",
                f"free one, or set services.{service}.port to another",
            )
    return chosen


def authorized_keys(spec: Spec, home: Path | None = None, *, project: Path | None = None) -> str:
    """The public keys allowed to log in: the spec's (lines or .pub paths), else ~/.ssh/*.pub.

    The spec's paths are read with the rights of the project's owner (`project`, default
    the current folder): run by root, `authorized_keys = ["/etc/shadow"]` must not copy a
    root-only file into their container. Never a line of the file in an error.
    """
    folder = project or Path.cwd()
    lines: list[str] = []
    for item in spec.user.authorized_keys:
        if item.startswith(("ssh-", "ecdsa-", "sk-")):
            lines.append(item.strip())
            continue
        text = userfiles.read_text(
            userfiles.expand(item, folder),
            folder,
            "user.authorized_keys",
            "give a public key line or the path of a .pub file the project's owner may read",
        )
        lines += [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not spec.user.authorized_keys:
        ssh_dir = (home or Path.home()) / ".ssh"
        for pub in sorted(ssh_dir.glob("*.pub")) if ssh_dir.is_dir() else []:
            lines += [ln.strip() for ln in pub.read_text().splitlines() if ln.strip()]
    return "\n".join(lines) + ("\n" if lines else "")


def keys_file(spec: Spec) -> Path:
    """Where `up` writes the public keys it mounts (the path alone: `plan` writes nothing)."""
    return state_path(spec.project.name) / "authorized_keys"


# --- all of it ------------------------------------------------------------------------------


def check_workspace(workspace: Path) -> Path:
    if not workspace.is_dir():
        raise UsageError(
            f"workspace folder {workspace} does not exist", "create it, or pass --workspace DIR"
        )
    return workspace.resolve()


def local_facts(
    session: Session,
    *,
    base: BaseRef | None = None,
    workspace: Path | None = None,
    ports: dict[str, int] | None = None,
    env_file: Path | None = None,
    with_keys: bool = True,
    image_files: bool = True,
    mounts_here: bool | None = None,
) -> Local:
    """The facts of this machine for session.plan(). Mounts are checked here (exit 2 naming
    the entry); by default not when the plan is for another host (--host FILE), whose files
    this machine cannot see, but always for what runs here (mounts_here). image_files: read
    torchrig's files and the CA certificates (the image's tag needs them); with_keys: mount
    the public keys file (a workbench; not a --fresh job)."""
    spec = session.spec
    project = session.project_dir
    where = check_workspace(workspace or project)
    if env_file is not None and not env_file.is_file():
        raise UsageError(f"env file {env_file} does not exist", "create it or drop --env-file")
    here = not session.host_from_file if mounts_here is None else mounts_here
    mounts = checked_mounts(spec, project=where) if here else None
    return Local(
        project_dir=project,
        workspace=where,
        mounts=mounts,
        ports=ports,
        keys_file=keys_file(spec) if with_keys else None,
        env_file=env_file,
        base=base,
        torchrig_files=torchrig_files() if image_files else (),
        ca_certificates=ca_certificates(spec, project) if image_files else (),
    )
