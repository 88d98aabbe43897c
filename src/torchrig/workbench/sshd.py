"""sshd for one user: its config, its host keys, its authorized_keys.

sshd runs as the workbench user, not root, on port 2222 with a config and host keys of its
own under ~/.torchrig/ssh/. An unprivileged sshd can only log in the user it runs as, needs
no privilege separation user or /run/sshd (those are only checked when it runs as root),
and cannot read /etc/shadow. What it allows is decided here, in one pure function that a
golden file pins down.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from torchrig import contract
from torchrig.contract import KEY_TYPES

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "/usr/bin/ssh-keygen"
# ed25519 only: ssh-audit fails the NIST curves of ECDSA host keys, and every client that
# speaks curve25519 (OpenSSH >= 6.5, PuTTY >= 0.68, Windows OpenSSH) speaks ed25519 too.
# State volumes made before this still hold an ECDSA key: it stays there, unused.
HOST_KEY_KINDS = ("ed25519",)
PORT = contract.SSH_PORT
# PerSourcePenalties came with OpenSSH 9.8 (bookworm has 9.2, noble 9.6, trixie 10.0).
PENALTIES_SINCE = (9, 8)
# Key exchange, newest first; each only where the installed sshd knows its name (an unknown
# name makes sshd refuse the whole config). Sources: OpenSSH release notes 8.5
# (sntrup761x25519-sha512@openssh.com), 9.9 (mlkem768x25519-sha256 and the standard name
# sntrup761x25519-sha512); curve25519-sha256 since 7.4 (curve25519-sha256@libssh.org 6.5).
KEX_SINCE: tuple[tuple[str, tuple[int, int]], ...] = (
    ("mlkem768x25519-sha256", (9, 9)),
    ("sntrup761x25519-sha512", (9, 9)),
    ("sntrup761x25519-sha512@openssh.com", (8, 5)),
    ("curve25519-sha256", (7, 4)),
    ("curve25519-sha256@libssh.org", (6, 5)),
)
HOST_KEY_ALGORITHMS = ("ssh-ed25519", "ssh-ed25519-cert-v01@openssh.com")
# AEAD ciphers first; CTR with encrypt-then-MAC only for clients without them. No CBC.
CIPHERS = (
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
)
# Encrypt-then-MAC with SHA-2 only: no hmac-sha1, no umac-64, no MAC-then-encrypt.
MACS = (
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com",
    "umac-128-etm@openssh.com",
)
# Unauthenticated connections: refuse 50 % beyond 3 at once, all beyond 10 (the default
# 10:30:100 lets a flood hold 100 slots open for LoginGraceTime each).
MAX_STARTUPS = "3:50:10"

CERT_SUFFIX = "-cert-v01@openssh.com"
# authorized_keys options (sshd(8) "AUTHORIZED_KEYS FILE FORMAT"); matched case-insensitively.
KEY_OPTIONS = frozenset(
    {
        "agent-forwarding",
        "cert-authority",
        "command",
        "environment",
        "expiry-time",
        "from",
        "no-agent-forwarding",
        "no-port-forwarding",
        "no-pty",
        "no-user-rc",
        "no-x11-forwarding",
        "permitlisten",
        "permitopen",
        "port-forwarding",
        "principals",
        "pty",
        "no-touch-required",
        "verify-required",
        "restrict",
        "tunnel",
        "user-rc",
        "x11-forwarding",
    }
)
MAX_KEYS_BYTES = 1 << 20


@dataclass(frozen=True)
class SshdSettings:
    user: str
    state_dir: Path
    """~/.torchrig/ssh: host keys and the pid file."""
    per_source_penalties: bool
    environment: Mapping[str, str]
    """SetEnv for sessions: the image's PATH and friends (never secrets)."""
    port: int = PORT
    version: tuple[int, int] | None = None
    """The installed sshd's; None offers only what every OpenSSH since 7.4 knows."""


def kex_algorithms(version: tuple[int, int] | None) -> tuple[str, ...]:
    floor = version or (7, 4)
    return tuple(name for name, since in KEX_SINCE if floor >= since)


def _quote(value: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_./:,=+@%-]*", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(settings: SshdSettings) -> str:
    """The sshd_config of the workbench: key-only, one user, no root, no password."""
    state = settings.state_dir
    lines = [
        "# Written by torchrig at each start (~/.torchrig/ssh/sshd_config); edits are lost.",
        "# sshd runs as the workbench user: it can only log in that user.",
        f"Port {settings.port}",
        *(f"HostKey {state / f'ssh_host_{kind}_key'}" for kind in HOST_KEY_KINDS),
        f"PidFile {state / 'sshd.pid'}",
        "",
        "# Who: the workbench user, with a key, nobody else, no other way.",
        f"AllowUsers {settings.user}",
        "PermitRootLogin no",
        "AuthenticationMethods publickey",
        "PubkeyAuthentication yes",
        "AuthorizedKeysFile .ssh/authorized_keys",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "HostbasedAuthentication no",
        "PermitEmptyPasswords no",
        "UsePAM no",
        "StrictModes yes",
        "",
        "# Brute force and floods: few tries, short grace, few unauthenticated connections",
        "# at once, every key fingerprint in the log.",
        "MaxAuthTries 3",
        "LoginGraceTime 30",
        f"MaxStartups {MAX_STARTUPS}",
        "LogLevel VERBOSE",
    ]
    if settings.per_source_penalties:
        lines.append("PerSourcePenalties yes")
    lines += [
        "",
        "# Algorithms: only modern ones (ssh-audit: no fail; its one warn, curve25519 is not",
        "# post-quantum, is the fallback for clients without the hybrids): ed25519 host key,",
        "# AEAD ciphers first, SHA-2 encrypt-then-MAC.",
        f"HostKeyAlgorithms {','.join(HOST_KEY_ALGORITHMS)}",
        f"KexAlgorithms {','.join(kex_algorithms(settings.version))}",
        f"Ciphers {','.join(CIPHERS)}",
        f"MACs {','.join(MACS)}",
        "",
        "# Sessions: local port forwarding for tunnels (ssh -L, IDEs); nothing that reaches",
        "# back into the client (agent, X11, remote forwards) or hands sshd new variables.",
        "AllowTcpForwarding local",
        "AllowStreamLocalForwarding no",
        "GatewayPorts no",
        "PermitTunnel no",
        "AllowAgentForwarding no",
        "X11Forwarding no",
        "PermitUserEnvironment no",
        "PermitUserRC no",
        "PrintMotd no",
        "PrintLastLog no",
        "ClientAliveInterval 30",
        "ClientAliveCountMax 6",
        "Subsystem sftp internal-sftp",
    ]
    if settings.environment:
        # sshd gives sessions a fresh environment: without this, `ssh wb python` would not
        # find the venv. Only the image's own variables go here, never the env file's.
        pairs = " ".join(_quote(f"{k}={v}") for k, v in sorted(settings.environment.items()))
        lines.append(f"SetEnv {pairs}")
    return "\n".join(lines) + "\n"


def parse_version(text: str) -> tuple[int, int] | None:
    """(9, 2) from `sshd -V` output ("OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15 …")."""
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def installed_version(sshd: str = SSHD) -> tuple[int, int] | None:
    # `sshd -V` prints the version on stderr; an sshd without -V prints it in its usage text.
    done = subprocess.run(
        [sshd, "-V"], capture_output=True, text=True, timeout=10, check=False, stdin=None
    )
    return parse_version(done.stderr + done.stdout)


def supports_penalties(version: tuple[int, int] | None) -> bool:
    return version is not None and version >= PENALTIES_SINCE


def check_config(config: Path, sshd: str = SSHD) -> str | None:
    """None when `sshd -t -f config` accepts it, else its complaint (one line)."""
    done = subprocess.run(
        [sshd, "-t", "-f", str(config)], capture_output=True, text=True, timeout=30, check=False
    )
    if done.returncode == 0:
        return None
    said = [ln.strip() for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
    return " / ".join(said[-3:]) or f"sshd -t exited {done.returncode}"


# --- authorized_keys ------------------------------------------------------------------------


def _split_options(line: str) -> tuple[str, str]:
    """("opt1,opt2=\"x y\"", rest) for a line that starts with options."""
    quoted = False
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and quoted and i + 1 < len(line):
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif ch in " \t" and not quoted:
            return line[:i], line[i:].lstrip(" \t")
        i += 1
    if quoted:
        raise ValueError("an option's quotes are not closed")
    return line, ""


def _option_names(options: str) -> list[str]:
    names, current, quoted = [], "", False
    for ch in options + ",":
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            names.append(current.split("=", 1)[0].strip().lower())
            current = ""
            continue
        current += ch
    return names


def _check_key(key_type: str, blob: str) -> None:
    base = key_type.removesuffix(CERT_SUFFIX)
    if base not in KEY_TYPES:
        if base == "ssh-dss":
            raise ValueError("DSA keys are refused by current OpenSSH: use an ed25519 key")
        raise ValueError("an unknown key type")  # named only when known: no line content
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the key is not valid base64 (cut or wrapped?)") from None
    # The blob is a row of SSH strings, the first its own type: this catches keys cut short
    # (a valid base64 prefix), pasted halves and mixed-up types.
    fields: list[bytes] = []
    at = 0
    while at < len(raw):
        if at + 4 > len(raw):
            raise ValueError("the key data is cut short")
        (length,) = struct.unpack(">I", raw[at : at + 4])
        if at + 4 + length > len(raw):
            raise ValueError("the key data is cut short")
        fields.append(raw[at + 4 : at + 4 + length])
        at += 4 + length
    if not fields or fields[0] != key_type.encode():
        raise ValueError(f"the key data is not a {key_type} key")
    if len(fields) < 2 or (key_type == "ssh-ed25519" and len(fields[1]) != 32):
        raise ValueError("the key data is cut short")


def check_key_line(line: str) -> str | None:
    """None when sshd can use this authorized_keys line, else why not."""
    if "PRIVATE KEY" in line:
        return "this is a private key: never put private keys there"
    first = line.split(None, 1)[0]
    if first in KEY_TYPES or first.endswith(CERT_SUFFIX) or first == "ssh-dss":
        rest = line
    else:
        try:
            options, rest = _split_options(line)
        except ValueError as exc:
            return str(exc)
        unknown = [n for n in _option_names(options) if n not in KEY_OPTIONS]
        if unknown:
            # Never a piece of the line: a file that is no key file (a shadow file named by
            # mistake or on purpose) must not reach the log. Line number and reason only.
            return "not a public key, or an unknown option"
    parts = rest.split(None, 2)
    if len(parts) < 2:
        return "not a public key (expected: [options] type base64-key [comment])"
    try:
        _check_key(parts[0], parts[1])
    except ValueError as exc:
        return str(exc)
    return None


def filter_authorized_keys(text: str) -> tuple[str, list[str]]:
    """(the usable file, one warning per skipped line). Comments and blank lines stay."""
    kept: list[str] = []
    warnings: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            kept.append(line)
            continue
        problem = "it has a NUL byte" if "\0" in line else check_key_line(line)
        if problem is None:
            kept.append(line)
        else:
            warnings.append(f"authorized_keys line {number} skipped: {problem}")
    while kept and not kept[-1]:
        kept.pop()
    return ("\n".join(kept) + "\n" if kept else ""), warnings


def count_keys(text: str) -> int:
    return sum(1 for ln in text.splitlines() if ln.strip() and not ln.startswith("#"))


# --- host keys ------------------------------------------------------------------------------


def ensure_host_keys(state_dir: Path, keygen: str = SSH_KEYGEN) -> list[str]:
    """Make the host keys that are missing (once per state volume); return the kinds made.

    Each key is made under a temporary name and renamed, so a start that dies halfway
    leaves no half key that sshd would refuse next time.
    """
    made = []
    for kind in HOST_KEY_KINDS:
        key = state_dir / f"ssh_host_{kind}_key"
        pub = key.with_name(key.name + ".pub")
        if key.is_file() and pub.is_file():
            continue
        if key.is_file():
            done = subprocess.run(
                [keygen, "-y", "-f", str(key)], capture_output=True, text=True, check=False
            )
            if done.returncode == 0:
                pub.write_text(done.stdout)
                continue
        tmp = key.with_name(f".{key.name}.new")
        for leftover in (tmp, tmp.with_name(tmp.name + ".pub")):
            leftover.unlink(missing_ok=True)
        done = subprocess.run(
            [keygen, "-q", "-t", kind, "-N", "", "-C", "torchrig-workbench", "-f", str(tmp)],
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise RuntimeError(f"ssh-keygen -t {kind} failed: {done.stderr.strip()}")
        tmp.with_name(tmp.name + ".pub").replace(pub)
        tmp.replace(key)
        made.append(kind)
    return made


def fingerprint(pub: Path, keygen: str = SSH_KEYGEN) -> str:
    done = subprocess.run(
        [keygen, "-l", "-f", str(pub)], capture_output=True, text=True, check=False
    )
    return done.stdout.split()[1] if done.returncode == 0 and done.stdout.split() else "?"
