"""Which keyring checks a bootstrapped base (issue 10, finding 3): the shipped keyrings are the
pinned files with the recorded keys, and the choice between the host's and torchrig's copy."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from torchrig.image.keyring import DATA, choose_keyring, load_records, primary_fingerprints

UBUNTU_2018 = "F6ECB3762474EDA9D21B7022871920D1991BC93C"
DEBIAN_BOOKWORM = "B8B80B5B623EAB6AD8775C45B7C5D7D6350947F8"


@pytest.mark.parametrize("distro", ["debian", "ubuntu"])
def test_each_shipped_keyring_is_the_pinned_file_with_the_recorded_keys(distro: str) -> None:
    record = load_records()[distro]
    data = (DATA / record.file).read_bytes()
    assert hashlib.sha256(data).hexdigest() == record.sha256
    assert primary_fingerprints(data) == list(record.keys)
    assert record.source.startswith("Debian package ")


def test_the_archive_keys_are_the_published_ones() -> None:
    """Fingerprints as Ubuntu's and Debian's key pages print them (sources in keyrings.toml)."""
    records = load_records()
    assert records["ubuntu"].keys[UBUNTU_2018] == (
        "Ubuntu Archive Automatic Signing Key (2018) <ftpmaster@ubuntu.com>"
    )
    assert records["debian"].keys[DEBIAN_BOOKWORM] == (
        "Debian Archive Automatic Signing Key (12/bookworm) <ftpmaster@debian.org>"
    )


@pytest.mark.parametrize("distro", ["debian", "ubuntu"])
def test_fingerprints_agree_with_gnupg(distro: str, tmp_path: Path) -> None:
    gpg = shutil.which("gpg")
    record = load_records()[distro]
    if gpg is None:
        pytest.fail("gpg is a test dependency (apt-get install gpg)", pytrace=False)
    done = subprocess.run(
        [gpg, "--homedir", str(tmp_path), "--with-colons", "--show-keys", str(DATA / record.file)],
        capture_output=True,
        text=True,
        check=True,
    )
    # Each "pub" record's fingerprint is the first "fpr" after it ("rvk" lines may come between).
    primaries: list[str] = []
    expect_primary = False
    for line in done.stdout.splitlines():
        kind, *fields = line.split(":")
        if kind == "pub":
            expect_primary = True
        elif kind == "fpr" and expect_primary:
            primaries.append(fields[8])
            expect_primary = False
    assert primaries == list(record.keys)


def host_dir(tmp_path: Path, files: dict[str, bytes]) -> Path:
    folder = tmp_path / "host-keyrings"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def shipped(name: str) -> bytes:
    return (DATA / name).read_bytes()


def test_the_host_keyring_comes_first_when_it_holds_a_known_key(tmp_path: Path) -> None:
    host = host_dir(tmp_path, {"ubuntu-archive-keyring.gpg": shipped("ubuntu-archive-keyring.gpg")})
    keyring, passed_over = choose_keyring("ubuntu", host)
    assert keyring is not None and keyring.origin == "host"
    assert keyring.path == host / "ubuntu-archive-keyring.gpg"
    assert UBUNTU_2018 in keyring.known_keys and passed_over == []


def test_no_host_keyring_means_torchrigs_copy(tmp_path: Path) -> None:
    keyring, passed_over = choose_keyring("ubuntu", host_dir(tmp_path, {}))
    assert keyring is not None and keyring.origin == "torchrig"
    assert keyring.path == DATA / "ubuntu-archive-keyring.gpg"
    assert passed_over == [
        f"{tmp_path}/host-keyrings/ubuntu-archive-keyring.gpg is not installed "
        "(package ubuntu-keyring)"
    ]


@pytest.mark.parametrize(
    "content",
    [shipped("debian-archive-keyring.gpg"), b"not a keyring", b""],
    ids=["another distribution's keys", "garbage", "empty"],
)
def test_a_host_keyring_without_a_known_key_is_passed_over(tmp_path: Path, content: bytes) -> None:
    host = host_dir(tmp_path, {"ubuntu-archive-keyring.gpg": content})
    keyring, passed_over = choose_keyring("ubuntu", host)
    assert keyring is not None and keyring.origin == "torchrig"
    assert len(passed_over) == 1 and "holds none of the 3 ubuntu archive keys" in passed_over[0]
    assert "790B C727 7767 219C" in passed_over[0]


def test_a_changed_copy_in_torchrig_is_not_trusted(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    tampered = bytearray(shipped("ubuntu-archive-keyring.gpg"))
    tampered[-1] ^= 1
    (data / "ubuntu-archive-keyring.gpg").write_bytes(bytes(tampered))
    keyring, passed_over = choose_keyring("ubuntu", host_dir(tmp_path, {}), data)
    assert keyring is None
    assert "is not installed" in passed_over[0]
    assert "ubuntu-archive-keyring.gpg was changed (sha256 " in passed_over[1]
    assert "keyrings.toml pins 80a36b0a6de2f69f…" in passed_over[1]


def test_a_missing_copy_in_torchrig_is_said(tmp_path: Path) -> None:
    keyring, passed_over = choose_keyring("debian", host_dir(tmp_path, {}), tmp_path / "none")
    assert keyring is None and passed_over[1].endswith("debian-archive-keyring.gpg is missing")


def test_a_truncated_keyring_is_not_a_packet_stream() -> None:
    data = shipped("debian-archive-keyring.gpg")
    with pytest.raises(ValueError, match="runs past the end"):
        primary_fingerprints(data[:100])
