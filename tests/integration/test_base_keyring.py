"""The real debootstrap checks the live archives' Release files against the keyring torchrig
picks (issue 10, finding 3). `debootstrap --print-debs` fetches InRelease and one Packages
index, checks the signature and prints the package list: a few seconds, no root needed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from torchrig.image.base import VALID_SIGNATURE_RE, Bootstrapper, find_program, make_request
from torchrig.image.keyring import DATA, choose_keyring, load_records

pytestmark = pytest.mark.network

MIRRORS = {
    "ubuntu:noble": "http://archive.ubuntu.com/ubuntu",
    "debian:bookworm": "http://deb.debian.org/debian",
}


def print_debs(distribution: str, keyring: Path, target: Path) -> subprocess.CompletedProcess[str]:
    debootstrap = find_program("debootstrap")
    if debootstrap is None:
        pytest.fail("debootstrap is a test dependency (apt-get install debootstrap)", pytrace=False)
    request = make_request(distribution, MIRRORS[distribution], "x86_64", components=["main"])
    argv = Bootstrapper(host_arch="x86_64").debootstrap_argv(debootstrap, request, target, keyring)
    argv.insert(1, "--print-debs")
    return subprocess.run(argv, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("distribution", sorted(MIRRORS))
def test_the_live_release_file_verifies_with_the_keyring_torchrig_picks(
    distribution: str, tmp_path: Path
) -> None:
    # An empty host folder: the keyring comes from torchrig, as on a host without one.
    keyring, _ = choose_keyring(distribution.split(":")[0], tmp_path / "no-host-keyrings")
    assert keyring is not None and keyring.origin == "torchrig"
    done = print_debs(distribution, keyring.path, tmp_path / "target")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-2000:]
    # The archives sign with several keys and rotate them: any key of the record will do.
    signer = VALID_SIGNATURE_RE.search(output)
    assert signer, output[-2000:]
    assert signer.group(1) in load_records()[distribution.split(":")[0]].keys
    assert "dpkg" in done.stdout.split()


def test_another_distributions_keyring_is_refused_by_debootstrap(tmp_path: Path) -> None:
    done = print_debs("ubuntu:noble", DATA / "debian-archive-keyring.gpg", tmp_path / "target")
    assert done.returncode != 0
    assert "Release signed by unknown key" in done.stdout + done.stderr
