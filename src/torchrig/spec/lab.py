"""The `[lab]` section: one GPU server shared by many people through JupyterHub.

Validation here is about the file alone (names, keys, sizes, duplicates); whether the GPUs a
user asks for exist is checked against the host by `torchrig lab` (lab/checks.py).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import struct
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from torchrig.contract import KEY_TYPES
from torchrig.spec.invalid import Invalid as LabInvalid
from torchrig.spec.invalid import StrictTable, must_match, quoted

# A Unix login that is also safe in a container, volume and DNS name: no dots, no upper case
# (JupyterHub lower-cases names; Docker names and volumes take these characters as they are).
LAB_USER_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
# Names a person must not take: system accounts in every Debian image and JupyterHub's own.
RESERVED_USERS = frozenset(
    {
        "root",
        "daemon",
        "bin",
        "sys",
        "sync",
        "nobody",
        "admin",
        "hub",
        "user",
        "services",
        "torchrig",
    }
)
SIZE_RE = re.compile(r"^[1-9][0-9]*[mg]$")
MIN_LAB_UID, MAX_LAB_UID = 1000, 2147483646

Port = Annotated[int, Field(ge=1, le=65535)]


def check_public_key(line: str) -> str:
    """One OpenSSH public key line ("TYPE BASE64 [comment]"), checked to its blob's own type.

    A private key, a fingerprint, a path or a truncated paste each fail with a message that
    says which; nothing of the text is echoed beyond its first characters.
    """
    text = line.strip()
    if "PRIVATE KEY" in text:
        raise LabInvalid(
            "this is a private key, never give it to anyone",
            "give the public key: the one line of the .pub file (ssh-keygen -y -f KEY)",
        )
    parts = text.split()
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise LabInvalid(
            f"{quoted(text[:24])} is not an SSH public key line",
            'give the one line of a .pub file, e.g. "ssh-ed25519 AAAAC3… alice@laptop"',
        )
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise LabInvalid(
            f"the {parts[0]} key's base64 part is damaged", "paste the .pub line again, whole"
        ) from None
    if len(blob) < 4:
        raise LabInvalid(f"the {parts[0]} key is truncated", "paste the .pub line again, whole")
    (length,) = struct.unpack(">I", blob[:4])
    if blob[4 : 4 + length] != parts[0].encode():
        raise LabInvalid(
            f"the key says {parts[0]} but its data is another kind or truncated",
            "paste the .pub line again, whole",
        )
    return " ".join(parts[:3])


def check_size(value: str) -> str:
    must_match(value, SIZE_RE.fullmatch, "is not a memory size", 'write e.g. "16g" or "512m"')
    number, unit = int(value[:-1]), value[-1]
    if number * (1 if unit == "g" else 1 / 1024) < 1:
        raise LabInvalid(
            f"{quoted(value)} is less than 1g", "a PyTorch workbench needs at least 1g"
        )
    return value


class LabUser(StrictTable):
    name: str = Field(description="Login name: lower case letters, digits, '_' and '-'.")
    uid: int = Field(
        description=f"The UID (and GID) the user's processes and files have ({MIN_LAB_UID} to "
        f"{MAX_LAB_UID}); `torchrig lab add-user` picks the next free one."
    )
    ssh_port: Port = Field(description="Host port of this user's SSH (lab.ssh_ip).")
    ssh_keys: list[str] = Field(
        default_factory=list, description="OpenSSH public key lines allowed to log in."
    )
    gpus: int = Field(default=-1, ge=-1, le=64, description="Whole GPUs; -1 takes lab.gpus.")
    memory: str = Field(default="", description='Memory limit like "16g"; "" takes lab.memory.')
    cpus: float = Field(
        default=0.0, ge=0, le=8192, allow_inf_nan=False, description="CPUs; 0 takes lab.cpus."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_user_name(value)

    @field_validator("uid")
    @classmethod
    def _uid(cls, value: int) -> int:
        if not MIN_LAB_UID <= value <= MAX_LAB_UID:
            raise LabInvalid(
                f"{value} is out of range", f"use {MIN_LAB_UID} to {MAX_LAB_UID} (never 0, root)"
            )
        return value

    @field_validator("ssh_keys")
    @classmethod
    def _keys(cls, value: list[str]) -> list[str]:
        checked = []
        for index, line in enumerate(value):
            try:
                checked.append(check_public_key(line))
            except LabInvalid as exc:
                raise LabInvalid(exc.message, exc.fix, at=(index,)) from None
        return checked

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        return value if value == "" else check_size(value)


def check_user_name(value: str) -> str:
    if value in RESERVED_USERS:
        raise LabInvalid(f"{quoted(value)} is a reserved name", "pick a person's login, e.g. alice")
    return must_match(
        value,
        LAB_USER_RE.fullmatch,
        "is not a valid user name",
        "use a lower case letter, then letters, digits, '_' or '-' (at most 32)",
    )


class Lab(StrictTable):
    hub_ip: str = Field(
        default="127.0.0.1",
        description="Address the hub listens on; 0.0.0.0 exposes it (give tls_cert then).",
    )
    hub_port: Port = Field(default=8000, description="The hub's port (the only web entry).")
    hub_api_port: Port = Field(
        default=8081, description="The hub's API port on the lab network's gateway."
    )
    proxy_api_port: Port = Field(default=8001, description="The proxy's API port on 127.0.0.1.")
    tls_cert: str = Field(default="", description="PEM certificate: the hub serves HTTPS.")
    tls_key: str = Field(default="", description="Its private key (root-only file).")
    auth: Literal["native", "pam"] = Field(
        default="native",
        description='"native": NativeAuthenticator (torchrig sets a first password, users '
        'change it); "pam": the host\'s accounts.',
    )
    admins: list[str] = Field(default_factory=list, description="Users who are hub admins.")
    idle_timeout: int = Field(
        default=3600, ge=0, le=30 * 86400, description="Stop servers idle this long (s); 0: never."
    )
    gpu_policy: Literal["exclusive", "shared"] = Field(
        default="exclusive",
        description='"exclusive": whole GPUs from a free pool per running server; '
        '"shared": up to users_per_gpu servers per GPU.',
    )
    users_per_gpu: int = Field(default=2, ge=1, le=64, description="Shared policy only.")
    gpus: int = Field(default=0, ge=0, le=64, description="GPUs each user gets by default.")
    memory: str = Field(default="8g", description="Memory limit each user gets by default.")
    cpus: float = Field(
        default=2.0, gt=0, le=8192, allow_inf_nan=False, description="CPUs per user by default."
    )
    datasets: str = Field(
        default="", description="Host folder mounted read-only at /datasets for everyone."
    )
    ssh_ip: str = Field(
        default="127.0.0.1", description="Address users' SSH ports listen on; 0.0.0.0 exposes."
    )
    users: list[LabUser] = Field(default_factory=list, description="[[lab.users]] tables.")

    @field_validator("hub_ip", "ssh_ip")
    @classmethod
    def _ip(cls, value: str) -> str:
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            raise LabInvalid(
                f"{quoted(value)} is not an IPv4 address", 'e.g. "127.0.0.1"'
            ) from None
        return value

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        return check_size(value)

    @field_validator("datasets", "tls_cert", "tls_key")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if value and not value.startswith("/"):
            raise LabInvalid(f"{quoted(value)} is not an absolute path", "write it from /")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Lab:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise LabInvalid("tls_cert and tls_key go together", "give both, or neither")
        seen: dict[str, int] = {}
        uids: dict[int, str] = {}
        ports: dict[int, str] = {
            self.hub_port: "hub_port",
            self.hub_api_port: "hub_api_port",
            self.proxy_api_port: "proxy_api_port",
        }
        if len(ports) < 3:
            raise LabInvalid("hub_port, hub_api_port and proxy_api_port must differ")
        for index, user in enumerate(self.users):
            if user.name in seen:
                raise LabInvalid(
                    f"user {quoted(user.name)} is listed twice (users[{seen[user.name]}])",
                    "list each user once",
                    at=("users", index, "name"),
                )
            seen[user.name] = index
            if user.uid in uids:
                raise LabInvalid(
                    f"uid {user.uid} is also {uids[user.uid]}'s",
                    "give each user a UID of their own",
                    at=("users", index, "uid"),
                )
            uids[user.uid] = user.name
            if user.ssh_port in ports:
                raise LabInvalid(
                    f"ssh_port {user.ssh_port} is also {ports[user.ssh_port]}",
                    "give each user an SSH port of their own",
                    at=("users", index, "ssh_port"),
                )
            ports[user.ssh_port] = f"{user.name}'s ssh_port"
        for index, admin in enumerate(self.admins):
            if admin not in seen:
                raise LabInvalid(
                    f"admin {quoted(admin)} is not one of the lab's users",
                    "add them as a [[lab.users]] table first",
                    at=("admins", index),
                )
        return self

    def user(self, name: str) -> LabUser | None:
        return next((u for u in self.users if u.name == name), None)

    def gpus_of(self, user: LabUser) -> int:
        return self.gpus if user.gpus < 0 else user.gpus

    def memory_of(self, user: LabUser) -> str:
        return user.memory or self.memory

    def cpus_of(self, user: LabUser) -> float:
        return user.cpus or self.cpus
