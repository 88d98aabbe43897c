"""sshd for one user: the rendered config (golden), version detection, authorized_keys
filtering and host keys made once."""

from __future__ import annotations

import base64
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tests.golden_util import GOLDEN, assert_golden
from torchrig.workbench import sshd

STATE = Path("/home/alice/.torchrig/ssh")
ENVIRONMENT = {
    "PATH": "/opt/venv/bin:/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "CUDA_HOME": "/usr/local/cuda",
    "ODD": 'has space and "quote"',
}


def settings(penalties: bool, version: tuple[int, int] | None = None) -> sshd.SshdSettings:
    return sshd.SshdSettings(
        user="alice",
        state_dir=STATE,
        per_source_penalties=penalties,
        environment=ENVIRONMENT,
        version=version,
    )


@pytest.mark.parametrize(
    ("case", "version"), [("openssh-9.2-bookworm", (9, 2)), ("openssh-10.0-trixie", (10, 0))]
)
def test_config_golden(case: str, version: tuple[int, int]) -> None:
    config = sshd.render_config(settings(sshd.supports_penalties(version), version))
    assert_golden(GOLDEN / "workbench" / case / "sshd_config", config)


@pytest.mark.parametrize(
    ("version", "kex"),
    [
        (
            (10, 0),
            "mlkem768x25519-sha256,sntrup761x25519-sha512,sntrup761x25519-sha512@openssh.com,"
            "curve25519-sha256,curve25519-sha256@libssh.org",
        ),
        (
            (9, 6),
            "sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org",
        ),
        ((8, 4), "curve25519-sha256,curve25519-sha256@libssh.org"),
        (None, "curve25519-sha256,curve25519-sha256@libssh.org"),
    ],
)
def test_only_modern_algorithms_the_installed_sshd_knows(
    version: tuple[int, int] | None, kex: str
) -> None:
    lines = sshd.render_config(settings(False, version)).splitlines()
    assert f"KexAlgorithms {kex}" in lines
    assert "HostKeyAlgorithms ssh-ed25519,ssh-ed25519-cert-v01@openssh.com" in lines
    assert [ln for ln in lines if ln.startswith("HostKey ")] == [
        f"HostKey {STATE}/ssh_host_ed25519_key"
    ]
    text = "\n".join(lines)
    for weak in ("sha1", "nistp", "ecdsa", "cbc", "diffie-hellman", "umac-64", "ssh-rsa"):
        assert weak not in text.lower(), weak
    assert "MaxStartups 3:50:10" in lines


def test_config_says_what_security_asks() -> None:
    lines = sshd.render_config(settings(True)).splitlines()
    for wanted in (
        "Port 2222",
        f"HostKey {STATE}/ssh_host_ed25519_key",
        f"PidFile {STATE}/sshd.pid",
        "AuthorizedKeysFile .ssh/authorized_keys",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "AuthenticationMethods publickey",
        "PermitRootLogin no",
        "AllowUsers alice",
        "UsePAM no",
        "StrictModes yes",
        "MaxAuthTries 3",
        "LoginGraceTime 30",
        "LogLevel VERBOSE",
        "X11Forwarding no",
        "PermitUserEnvironment no",
        "AllowAgentForwarding no",
        "AllowTcpForwarding local",
        "PerSourcePenalties yes",
        "Subsystem sftp internal-sftp",
    ):
        assert wanted in lines, wanted
    assert "PerSourcePenalties yes" not in sshd.render_config(settings(False))


def test_setenv_quotes_values() -> None:
    setenv = next(
        ln for ln in sshd.render_config(settings(False)).splitlines() if ln.startswith("SetEnv")
    )
    assert setenv == (
        "SetEnv CUDA_HOME=/usr/local/cuda LANG=C.UTF-8 "
        '"ODD=has space and \\"quote\\"" PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin'
    )


@pytest.mark.parametrize(
    ("text", "version", "penalties"),
    [
        ("OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15 3 Sep 2024", (9, 2), False),
        ("OpenSSH_9.6p1 Ubuntu-3ubuntu13.5, OpenSSL 3.0.13 30 Jan 2024", (9, 6), False),
        ("OpenSSH_9.8p1, OpenSSL 3.3.1", (9, 8), True),
        ("OpenSSH_10.0p2 Debian-5, OpenSSL 3.5.0 8 Apr 2025", (10, 0), True),
        (
            "sshd: illegal option -- V\nOpenSSH_8.4p1 Debian-5+deb11u3, OpenSSL 1.1.1w",
            (8, 4),
            False,
        ),
        ("something else", None, False),
    ],
)
def test_version_and_penalties(text: str, version: tuple[int, int] | None, penalties: bool) -> None:
    assert sshd.parse_version(text) == version
    assert sshd.supports_penalties(version) is penalties


# --- authorized_keys ------------------------------------------------------------------------


def key_line(key_type: str = "ssh-ed25519", comment: str = "alice@laptop") -> str:
    payload = 32 if "ed25519" in key_type else 64
    blob = struct.pack(">I", len(key_type)) + key_type.encode()
    blob += struct.pack(">I", payload) + bytes(range(payload))
    return f"{key_type} {base64.b64encode(blob).decode()} {comment}".strip()


ED25519 = key_line()
ECDSA = key_line("ecdsa-sha2-nistp256", "")


@pytest.mark.parametrize(
    "line",
    [
        ED25519,
        ECDSA,
        key_line("ssh-rsa", "with  two spaces"),
        key_line("sk-ssh-ed25519@openssh.com"),
        key_line("ssh-ed25519-cert-v01@openssh.com"),
        f"no-agent-forwarding,no-pty {ED25519}",
        f'command="echo hi, there",from="10.0.0.0/8" {ED25519}',
        f'environment="A=\\"quoted\\" b" {ED25519}',
        f"Restrict,PORT-FORWARDING {ED25519}",
        f'cert-authority,principals="alice" {ECDSA}',
    ],
)
def test_usable_lines_pass(line: str) -> None:
    assert sshd.check_key_line(line) is None


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("ssh-ed25519", "not a public key"),
        ("ssh-ed25519 !!!notbase64", "not valid base64"),
        (f"ssh-ed25519 {ED25519.split()[1][:20]}", "cut short"),
        (f"ssh-ed25519 {ED25519.split()[1][:22]}", "not valid base64"),
        (f"ssh-ed25519 {ED25519.split()[1][:-8]}", "cut short"),
        (f"ssh-rsa {ED25519.split()[1]}", "not a ssh-rsa key"),
        (key_line("ssh-dss"), "DSA keys are refused"),
        (key_line("ssh-foo"), "not a public key, or an unknown option"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----", "this is a private key"),
        (f'command="unclosed {ED25519}', "quotes are not closed"),
        (f"bogus-option {ED25519}", "not a public key, or an unknown option"),
        ("hello world", "not a public key, or an unknown option"),
    ],
)
def test_unusable_lines_say_why(line: str, why: str) -> None:
    problem = sshd.check_key_line(line)
    assert problem is not None and why in problem


def test_filter_keeps_comments_and_skips_with_one_warning_per_line() -> None:
    text = (
        "# laptop\n"
        f"{ED25519}\r\n"
        "\n"
        "garbage here\n"
        f"  {ECDSA}  \n"
        "-----BEGIN OPENSSH PRIVATE KEY-----\n"
        "\n"
    )
    kept, warnings = sshd.filter_authorized_keys(text)
    assert kept == f"# laptop\n{ED25519}\n\n{ECDSA}\n"
    assert warnings == [
        "authorized_keys line 4 skipped: not a public key, or an unknown option",
        "authorized_keys line 6 skipped: this is a private key: never put private keys there",
    ]
    assert sshd.count_keys(kept) == 2
    assert sshd.filter_authorized_keys("") == ("", [])
    assert sshd.filter_authorized_keys("\0bad\n")[1] == [
        "authorized_keys line 1 skipped: it has a NUL byte"
    ]


# --- host keys, with the real ssh-keygen ----------------------------------------------------

needs_keygen = pytest.mark.skipif(
    shutil.which("ssh-keygen") is None,
    reason="ssh-keygen not installed (apt-get install openssh-client)",
)


@needs_keygen
def test_host_keys_are_made_once(tmp_path: Path) -> None:
    keygen = shutil.which("ssh-keygen") or ""
    assert sshd.ensure_host_keys(tmp_path, keygen) == ["ed25519"]
    key = tmp_path / "ssh_host_ed25519_key"
    assert key.stat().st_mode & 0o777 == 0o600
    before = sshd.fingerprint(key.with_name(key.name + ".pub"), keygen)
    assert before.startswith("SHA256:")
    assert sshd.ensure_host_keys(tmp_path, keygen) == []
    assert sshd.fingerprint(key.with_name(key.name + ".pub"), keygen) == before
    # A lost .pub is derived again from the private key, not a new key.
    key.with_name(key.name + ".pub").unlink()
    assert sshd.ensure_host_keys(tmp_path, keygen) == []
    assert sshd.fingerprint(key.with_name(key.name + ".pub"), keygen) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ssh_host_ed25519_key",
        "ssh_host_ed25519_key.pub",
    ]


@needs_keygen
def test_a_state_volume_with_an_ecdsa_key_keeps_its_ed25519_key(tmp_path: Path) -> None:
    # Volumes made before ECDSA was dropped: nothing is made, the ed25519 key is the one.
    keygen = shutil.which("ssh-keygen") or ""
    for kind in ("ed25519", "ecdsa"):
        key = tmp_path / f"ssh_host_{kind}_key"
        subprocess.run([keygen, "-q", "-t", kind, "-N", "", "-f", str(key)], check=True)
    before = sshd.fingerprint(tmp_path / "ssh_host_ed25519_key.pub", keygen)
    assert sshd.ensure_host_keys(tmp_path, keygen) == []
    assert sshd.fingerprint(tmp_path / "ssh_host_ed25519_key.pub", keygen) == before
    config = sshd.render_config(
        sshd.SshdSettings("alice", tmp_path, per_source_penalties=False, environment={})
    )
    assert "ecdsa" not in config


@needs_keygen
def test_real_public_keys_pass_the_filter(tmp_path: Path) -> None:
    keygen = shutil.which("ssh-keygen") or ""
    for kind in ("ed25519", "ecdsa", "rsa"):
        subprocess.run([keygen, "-q", "-t", kind, "-N", "", "-f", str(tmp_path / kind)], check=True)
        line = (tmp_path / f"{kind}.pub").read_text().strip()
        assert sshd.check_key_line(line) is None, kind


@pytest.mark.skipif(shutil.which("sshd", path="/usr/sbin:/usr/bin") is None, reason="no sshd here")
def test_real_sshd_accepts_the_config(tmp_path: Path) -> None:
    sshd_path = shutil.which("sshd", path="/usr/sbin:/usr/bin") or ""
    keygen = shutil.which("ssh-keygen") or ""
    if os.geteuid() == 0:  # as root, sshd -t wants the privilege separation folder that
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # systemd makes on a booted host
    sshd.ensure_host_keys(tmp_path, keygen)
    version = sshd.installed_version(sshd_path)
    config = tmp_path / "sshd_config"
    config.write_text(
        sshd.render_config(
            sshd.SshdSettings(
                user="nobody",
                state_dir=tmp_path,
                per_source_penalties=sshd.supports_penalties(version),
                environment=ENVIRONMENT,
                version=version,
            )
        )
    )
    assert sshd.check_config(config, sshd_path) is None
    config.write_text(config.read_text() + "NoSuchOption yes\n")
    assert "NoSuchOption" in (sshd.check_config(config, sshd_path) or "")
