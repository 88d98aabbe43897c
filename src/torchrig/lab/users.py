"""`lab init`, `lab add-user`, `lab remove-user`: edits of torchrig.toml's text, checked whole.

Each edit builds the new text, parses and validates the whole spec from it and checks it
against this host (GPUs, ports) before one atomic write: a bad name, a duplicate, a key that
is not a public key or too many GPUs changes nothing. Comments and layout are kept: a user
is one [[lab.users]] table appended, or that table cut out.
"""

from __future__ import annotations

import json
import pwd
import re
from pathlib import Path

from torchrig.errors import SpecError, UsageError
from torchrig.spec.invalid import Invalid
from torchrig.spec.lab import (
    MIN_LAB_UID,
    Lab,
    LabUser,
    check_public_key,
    check_size,
    check_user_name,
)
from torchrig.spec.load import parse_spec
from torchrig.spec.model import Spec

HUB_VERSION = "6.1.1"
"""jupyterhub in the lab image: the same as the hub's (pyproject's lab extra)."""
FIRST_UID = 71001
FIRST_SSH_PORT = 22001
TABLE_RE = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\"-]+)\s*\]\]?\s*(#.*)?$")

LAB_TEMPLATE = """
[lab]
# One GPU server for many people through JupyterHub (docs/lab.md).
hub_ip = "127.0.0.1"          # 0.0.0.0 exposes the hub: give tls_cert and tls_key then
hub_port = 8000
auth = "native"               # or "pam" (the host's accounts)
admins = []
idle_timeout = 3600           # seconds; 0 never stops idle servers
gpu_policy = "exclusive"      # or "shared" (users_per_gpu servers per GPU)
gpus = 0                      # per user unless a user says
memory = "8g"
cpus = 2.0
datasets = ""                 # a host folder, read-only at /datasets
# Users: `torchrig lab add-user NAME --key KEY.pub [--gpus N --memory 16g --cpus 4]`
"""


def _fail(message: str, fix: str) -> UsageError:
    return UsageError(message, fix)


def _parse(text: str, path: Path) -> Spec:
    return parse_spec(text, path=str(path))


def _add_hub_package(text: str) -> str:
    """jupyterhub==HUB_VERSION into [python] packages (the image's single-user server)."""
    pin = f'"jupyterhub=={HUB_VERSION}"'
    lines = text.splitlines()
    table = None
    for index, line in enumerate(lines):
        found = TABLE_RE.match(line)
        if found:
            table = found.group(1)
            if table == "python":
                # packages in [python]: the first line of its array, or a new line.
                for j in range(index + 1, len(lines)):
                    if TABLE_RE.match(lines[j]):
                        break
                    if re.match(r"^\s*packages\s*=\s*\[", lines[j]):
                        lines[j] = re.sub(r"\[", f"[{pin}, ", lines[j], count=1).replace(", ]", "]")
                        return "\n".join(lines) + "\n"
                lines.insert(index + 1, f"packages = [{pin}]")
                return "\n".join(lines) + "\n"
    return text.rstrip("\n") + f"\n\n[python]\npackages = [{pin}]\n"


def init_text(text: str, path: Path) -> tuple[str, list[str]]:
    """The spec with a [lab] section and jupyterhub in the image; what was changed."""
    spec = _parse(text, path)
    changed = []
    if not any(
        p.split("==")[0].split("[")[0].strip() == "jupyterhub" for p in spec.python.packages
    ):
        text = _add_hub_package(text)
        changed.append(f"added jupyterhub=={HUB_VERSION} to [python] packages")
    if spec.lab is None:
        text = text.rstrip("\n") + "\n" + LAB_TEMPLATE
        changed.append("added a [lab] section")
    _parse(text, path)
    return text, changed


def read_keys(items: list[str]) -> list[str]:
    """Public key lines from key lines or .pub files (the admin's own files)."""
    keys: list[str] = []
    for item in items:
        candidates = [item]
        if not item.startswith(("ssh-", "ecdsa-", "sk-")):
            source = Path(item).expanduser()
            if not source.is_file():
                raise _fail(f"--key {item}: no such file", "give a .pub file or a key line")
            if source.stat().st_size > 64 * 1024:
                raise _fail(f"--key {item} is too large to be a public key", "give the .pub file")
            candidates = [
                ln for ln in source.read_text(errors="replace").splitlines() if ln.strip()
            ]
            if not candidates:
                raise _fail(f"--key {item} is empty", "give a .pub file with one key line")
        for line in candidates:
            try:
                keys.append(check_public_key(line))
            except Invalid as exc:
                raise _fail(f"--key {item}: {exc.message}", exc.fix or "") from None
    return keys


def _next_uid(lab: Lab) -> int:
    taken = {u.uid for u in lab.users}
    uid = max([FIRST_UID - 1, *taken]) + 1
    while uid in taken or _host_has_uid(uid):
        uid += 1
    return max(uid, MIN_LAB_UID)


def _host_has_uid(uid: int) -> bool:
    """A host account's UID would give the lab user that account's files on shared mounts."""
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def _next_port(lab: Lab) -> int:
    taken = {u.ssh_port for u in lab.users} | {lab.hub_port, lab.hub_api_port, lab.proxy_api_port}
    port = max([FIRST_SSH_PORT - 1, *(u.ssh_port for u in lab.users)]) + 1
    while port in taken:
        port += 1
    return port


def user_table(user: LabUser) -> str:
    lines = [
        "",
        "[[lab.users]]",
        f"name = {json.dumps(user.name)}",
        f"uid = {user.uid}",
        f"ssh_port = {user.ssh_port}",
        "ssh_keys = [" + ", ".join(json.dumps(k) for k in user.ssh_keys) + "]",
    ]
    if user.gpus >= 0:
        lines.append(f"gpus = {user.gpus}")
    if user.memory:
        lines.append(f"memory = {json.dumps(user.memory)}")
    if user.cpus:
        lines.append(f"cpus = {user.cpus}")
    return "\n".join(lines) + "\n"


def add_user_text(
    text: str,
    path: Path,
    name: str,
    *,
    keys: list[str],
    gpus: int | None,
    memory: str | None,
    cpus: float | None,
    gpus_on_host: int,
) -> tuple[str, LabUser]:
    spec = _parse(text, path)
    if spec.lab is None:
        raise _fail("torchrig.toml has no [lab] section", "run `torchrig lab init` first")
    lab = spec.lab
    try:
        check_user_name(name)
    except Invalid as exc:
        raise _fail(exc.message, exc.fix or "") from None
    try:
        if memory is not None:
            check_size(memory)
    except Invalid as exc:
        raise _fail(f"--memory {exc.message}", exc.fix or "") from None
    if lab.user(name) is not None:
        raise _fail(f"{name} is already a user of this lab", "pick another name, or remove-user")
    wanted = lab.gpus if gpus is None else gpus
    if wanted < 0 or wanted > gpus_on_host:
        raise _fail(
            f"{name} would get {wanted} GPUs but this host has {gpus_on_host}",
            f"ask for 0 to {gpus_on_host} (--gpus)",
        )
    if cpus is not None and not 0 < cpus <= 8192:
        raise _fail(f"--cpus {cpus} is out of range", "give a number of CPUs above 0")
    user = LabUser(
        name=name,
        uid=_next_uid(lab),
        ssh_port=_next_port(lab),
        ssh_keys=keys,
        gpus=-1 if gpus is None else gpus,
        memory=memory or "",
        cpus=cpus or 0.0,
    )
    new_text = text.rstrip("\n") + "\n" + user_table(user)
    try:
        _parse(new_text, path)
    except SpecError as exc:
        raise _fail(f"adding {name} would break torchrig.toml: {exc.one_line()}", "") from None
    return new_text, user


def remove_user_text(text: str, path: Path, name: str) -> str:
    spec = _parse(text, path)
    if spec.lab is None or spec.lab.user(name) is None:
        raise _fail(f"{name} is not a user of this lab", "see `torchrig lab status`")
    if name in spec.lab.admins:
        raise _fail(f"{name} is an admin of this lab", "take them out of lab.admins first")
    lines = text.splitlines(keepends=True)
    start = end = None
    for index, line in enumerate(lines):
        found = TABLE_RE.match(line)
        if found and found.group(1) == "lab.users" and line.lstrip().startswith("[["):
            block_end = next(
                (j for j in range(index + 1, len(lines)) if TABLE_RE.match(lines[j])), len(lines)
            )
            block = "".join(lines[index:block_end])
            if re.search(rf"^\s*name\s*=\s*\"{re.escape(name)}\"\s*(#.*)?$", block, re.M):
                start, end = index, block_end
                break
    if start is None or end is None:
        raise _fail(
            f"cannot find {name}'s [[lab.users]] table in torchrig.toml",
            "remove it by hand (it is written inline or with another layout)",
        )
    while start > 0 and not lines[start - 1].strip():
        start -= 1
    new_text = "".join(lines[:start] + lines[end:])
    after = _parse(new_text, path)
    assert after.lab is not None and after.lab.user(name) is None
    return new_text
