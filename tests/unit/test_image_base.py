"""Base images without a registry, with debootstrap faked: the commands, the clean-up, the
reproducible tarball, the cache, the content tag, and the errors a person can meet."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from torchrig.engine import RecordingEngine
from torchrig.engine.cli import Runner
from torchrig.errors import HostError, ToolError, UsageError
from torchrig.image.base import (
    BaseImage,
    Bootstrapper,
    apt_sources,
    clean_rootfs,
    default_cache_dir,
    make_request,
    mounts_under,
    tar_argv,
)
from torchrig.image.keyring import DATA as KEYRING_DATA

if TYPE_CHECKING:
    from collections.abc import Generator, Mapping, Sequence

DEBIAN = "http://deb.debian.org/debian"
UBUNTU = "http://archive.ubuntu.com/ubuntu"
DAY = date(2026, 11, 24)
MIDNIGHT = 1795478400  # 2026-11-24T00:00:00Z
SIGNER = {
    "debian": "B8B80B5B623EAB6AD8775C45B7C5D7D6350947F8",
    "ubuntu": "F6ECB3762474EDA9D21B7022871920D1991BC93C",
}


class FakeDebootstrap(Runner):
    """`debootstrap` writes a tiny root filesystem; everything else (tar) really runs."""

    def __init__(self, rc: int = 0) -> None:
        self.rc = rc
        self.streamed: list[list[str]] = []

    def lines(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None = None
    ) -> Generator[str, None, int]:
        self.streamed.append(list(argv))
        target = Path(argv[-3] if argv[-1].endswith("/jammy") else argv[-2])
        assert target.is_absolute() and target.name == "rootfs", argv
        write_rootfs(target)
        yield "I: Retrieving InRelease"
        if any(arg.startswith("--keyring=") for arg in argv):
            # What debootstrap says after gpgv's VALIDSIG (debootstrap's read_gpg_status).
            distro = "ubuntu" if "ubuntu" in argv[-1] or "jammy" in argv[-1] else "debian"
            yield f"I: Valid Release signature (key id {SIGNER[distro]})"
        yield "I: Base system installed successfully."
        if self.rc:
            (target / "debootstrap").mkdir()
            (target / "debootstrap/debootstrap.log").write_text("E: Couldn't download dpkg\n")
        return self.rc


def write_rootfs(root: Path) -> None:
    files = {
        "etc/hostname": "buildhost\n",
        "etc/resolv.conf": "nameserver 10.0.0.53\n",
        "etc/apt/sources.list": "deb http://x bookworm main\n",
        "usr/bin/hello": "#!/bin/sh\necho hello\n",
        "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease": "x",
        "var/cache/apt/pkgcache.bin": "x",
        "var/cache/ldconfig/aux-cache": "x",
        "var/log/dpkg.log": "2026-11-24 install\n",
        "var/log/wtmp": "",
        "var/lib/dpkg/status": "Package: hello\n",
        "var/lib/dpkg/status-old": "Package: hello\n",
        "dev/null": "",
        "tmp/leftover": "x",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "run/lock").mkdir(parents=True)
    (root / "var/log/apt").mkdir()


def bootstrapper(runner: Runner | None = None, **kwargs: object) -> Bootstrapper:
    settings: dict[str, object] = {
        "runner": runner or FakeDebootstrap(),
        "which": lambda name: f"/usr/sbin/{name}",
        "is_root": lambda: True,
        "host_arch": "x86_64",
        "today": DAY,
    }
    settings.update(kwargs)
    return Bootstrapper(**settings)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _no_source_date_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)


@pytest.fixture
def keyrings(tmp_path: Path) -> Path:
    """The host's /usr/share/keyrings, as on a Debian host: Debian's keyring, no Ubuntu one."""
    folder = tmp_path / "keyrings"
    folder.mkdir()
    shutil.copyfile(
        KEYRING_DATA / "debian-archive-keyring.gpg", folder / "debian-archive-keyring.gpg"
    )
    return folder


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    folder = tmp_path / "scripts"
    folder.mkdir()
    for name in ("bookworm", "trixie", "jammy", "sid"):
        (folder / name).write_text("")
    return folder


# --- requests -------------------------------------------------------------------------------


def test_request_from_reference() -> None:
    request = make_request("debian:bookworm", DEBIAN + "/", "x86_64", today=DAY)
    assert (request.distro, request.release, request.arch) == ("debian", "bookworm", "amd64")
    assert request.mirror == DEBIAN and request.components == ("main",)
    assert request.epoch == MIDNIGHT and request.stem == "debian-bookworm-amd64-2026-11-24"
    ubuntu = make_request("ubuntu:noble", UBUNTU, "aarch64", today=DAY)
    assert ubuntu.arch == "arm64" and ubuntu.components == ("main", "universe")


def test_source_date_epoch_fixes_date_and_mtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")  # 2026-01-01
    request = make_request("debian:trixie", DEBIAN, "amd64", today=DAY)
    assert request.epoch == 1767225600 and request.day == date(2026, 1, 1)


@pytest.mark.parametrize(
    ("ref", "mirror", "arch", "message"),
    [
        ("bookworm", DEBIAN, "x86_64", "not a distribution"),
        ("fedora:41", DEBIAN, "x86_64", "not a distribution"),
        ("debian:Bookworm;rm", DEBIAN, "x86_64", "not a distribution"),
        ("debian:bookworm", "deb.debian.org", "x86_64", "not an http"),
        ("debian:bookworm", DEBIAN, "riscv64", "not supported"),
    ],
)
def test_bad_requests(ref: str, mirror: str, arch: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        make_request(ref, mirror, arch)


def test_bad_source_date_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(UsageError, match="SOURCE_DATE_EPOCH"):
        make_request("debian:bookworm", DEBIAN, "x86_64")


def test_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TORCHRIG_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c" / "bases"
    monkeypatch.delenv("TORCHRIG_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "torchrig" / "bases"


def test_apt_sources_like_the_official_images() -> None:
    debian = make_request("debian:bookworm", DEBIAN, "x86_64", today=DAY)
    assert apt_sources(debian) == (
        "deb http://deb.debian.org/debian bookworm main\n"
        "deb http://deb.debian.org/debian bookworm-updates main\n"
        "deb http://deb.debian.org/debian-security bookworm-security main\n"
    )
    ubuntu = make_request("ubuntu:noble", UBUNTU, "x86_64", today=DAY)
    assert apt_sources(ubuntu).splitlines()[-1] == (
        "deb http://archive.ubuntu.com/ubuntu noble-security main universe"
    )


# --- commands -------------------------------------------------------------------------------


def test_debootstrap_and_tar_commands(keyrings: Path, scripts: Path) -> None:
    boot = bootstrapper(keyrings=keyrings, scripts=scripts)
    request = make_request("debian:bookworm", DEBIAN, "x86_64", today=DAY)
    argv = boot.debootstrap_argv("/usr/sbin/debootstrap", request, Path("/c/r"), keyrings / "k")
    assert argv == [
        "/usr/sbin/debootstrap",
        "--variant=minbase",
        "--arch=amd64",
        "--components=main",
        f"--keyring={keyrings}/k",
        "bookworm",
        "/c/r",
        DEBIAN,
    ]
    assert tar_argv(Path("/c/r"), Path("/c/r.tar"), MIDNIGHT) == [
        "tar",
        "--create",
        "--file",
        "/c/r.tar",
        "--directory",
        "/c/r",
        "--sort=name",
        f"--mtime=@{MIDNIGHT}",
        "--numeric-owner",
        "--format=posix",
        "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
        ".",
    ]


def test_newer_ubuntu_borrows_the_jammy_script(scripts: Path) -> None:
    boot = bootstrapper(scripts=scripts)
    request = make_request("ubuntu:noble", UBUNTU, "x86_64", today=DAY)
    argv = boot.debootstrap_argv("debootstrap", request, Path("/r"), None)
    assert argv[4:] == ["--no-check-gpg", "noble", "/r", UBUNTU, f"{scripts}/jammy"]


# --- bootstrapping --------------------------------------------------------------------------


@pytest.mark.root  # chowns to other uids
def test_bootstrap_caches_a_clean_reproducible_tarball(
    tmp_path: Path, keyrings: Path, scripts: Path
) -> None:
    runner = FakeDebootstrap()
    engine = RecordingEngine()
    lines: list[str] = []
    base = bootstrapper(runner, keyrings=keyrings, scripts=scripts).bootstrap(
        "debian:bookworm", DEBIAN, "x86_64", tmp_path / "cache", engine, progress=lines.append
    )
    assert base.tar_path == tmp_path / "cache" / "debian-bookworm-amd64-2026-11-24.tar"
    assert base.tag == f"torchrig-base/debian:bookworm-{base.sha256[:12]}"
    assert base.verified and not base.reused_tar and not base.reused_image
    assert "I: Base system installed successfully." in lines
    assert runner.streamed[0][4] == f"--keyring={keyrings}/debian-archive-keyring.gpg"
    # Only the tarball and its metadata are left in the cache.
    assert sorted(p.name for p in base.tar_path.parent.iterdir()) == [
        "debian-bookworm-amd64-2026-11-24.json",
        "debian-bookworm-amd64-2026-11-24.tar",
    ]
    with tarfile.open(base.tar_path) as tar:
        members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
        names = [m.name for m in tar.getmembers()]
        assert names == sorted(names)
        assert {m.mtime for m in members.values()} == {MIDNIGHT}
        assert {(m.uid, m.gid) for m in members.values()} == {(0, 0)}
        for gone in (
            "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease",
            "var/cache/apt/pkgcache.bin",
            "var/cache/ldconfig/aux-cache",
            "var/log/dpkg.log",
            "var/lib/dpkg/status-old",
            "dev/null",
            "tmp/leftover",
        ):
            assert gone not in members, gone
        for kept in ("var/log/wtmp", "var/log/apt", "run/lock", "dev", "tmp", "usr/bin/hello"):
            assert kept in members, kept

        def text(name: str) -> str:
            f = tar.extractfile(members[name])
            assert f is not None
            return f.read().decode()

        assert text("etc/hostname") == "localhost\n"
        assert text("etc/resolv.conf") == ""
        assert text("etc/apt/sources.list").startswith(f"deb {DEBIAN} bookworm main\n")
    meta = json.loads(base.tar_path.with_suffix(".json").read_text())
    assert meta["sha256"] == base.sha256 and meta["tag"] == base.tag and meta["verified"]
    assert [c.method for c in engine.calls] == ["image_exists", "import_rootfs"]
    labels = engine.calls[1].kwargs["labels"]
    assert labels["io.torchrig.base.rootfs-sha256"] == base.sha256
    assert labels["org.opencontainers.image.created"] == "2026-11-24T00:00:00Z"


def test_two_bootstraps_of_the_same_files_give_the_same_tag(
    tmp_path: Path, keyrings: Path, scripts: Path
) -> None:
    tags = [
        bootstrapper(keyrings=keyrings, scripts=scripts)
        .bootstrap("debian:bookworm", DEBIAN, "x86_64", tmp_path / name, RecordingEngine())
        .tag
        for name in ("one", "two")
    ]
    assert tags[0] == tags[1]


def test_cached_tarball_and_image_are_reused(tmp_path: Path, keyrings: Path, scripts: Path) -> None:
    engine = RecordingEngine()
    first = bootstrapper(keyrings=keyrings, scripts=scripts).bootstrap(
        "debian:bookworm", DEBIAN, "x86_64", tmp_path, engine
    )
    runner = FakeDebootstrap()
    second = bootstrapper(runner, keyrings=keyrings, scripts=scripts, is_root=lambda: False)
    again = second.bootstrap("debian:bookworm", DEBIAN, "x86_64", tmp_path, engine)
    assert again.tag == first.tag and again.reused_tar and again.reused_image
    assert runner.streamed == []  # no debootstrap, so no root needed either
    assert [c.method for c in engine.calls] == ["image_exists", "import_rootfs", "image_exists"]


# --- which keyring checks the packages (issue 10, finding 3) ---------------------------------


def bootstrap_ubuntu(
    tmp_path: Path, boot: Bootstrapper, lines: list[str], *, allow_unverified: bool = False
) -> BaseImage:
    return boot.bootstrap(
        "ubuntu:noble",
        UBUNTU,
        "x86_64",
        tmp_path / "cache",
        RecordingEngine(),
        progress=lines.append,
        # Passed only when set: the attack test below also runs against the code before the fix.
        **({"allow_unverified": True} if allow_unverified else {}),  # type: ignore[arg-type]
    )


def test_ubuntu_on_a_debian_host_is_checked_with_torchrigs_copy_of_its_keyring(
    tmp_path: Path, keyrings: Path, scripts: Path
) -> None:
    """The attack: a Debian host has no Ubuntu keyring, and the base was fetched unchecked."""
    runner = FakeDebootstrap()
    lines: list[str] = []
    base = bootstrap_ubuntu(
        tmp_path, bootstrapper(runner, keyrings=keyrings, scripts=scripts), lines
    )
    assert base.verified and base.signed_by == SIGNER["ubuntu"]
    argv = runner.streamed[0]
    assert f"--keyring={KEYRING_DATA}/ubuntu-archive-keyring.gpg" in argv
    assert "--no-check-gpg" not in argv
    assert any(
        line.startswith("checking signatures with torchrig's copy of the ubuntu archive keyring")
        and "ubuntu-archive-keyring.gpg is not installed (package ubuntu-keyring)" in line
        for line in lines
    )
    meta = json.loads(base.tar_path.with_suffix(".json").read_text())
    assert meta["verified"] is True and meta["signed_by"] == SIGNER["ubuntu"]
    assert meta["keyring"] == f"{KEYRING_DATA}/ubuntu-archive-keyring.gpg"


def test_the_hosts_keyring_is_used_when_it_holds_a_known_key(
    tmp_path: Path, keyrings: Path, scripts: Path
) -> None:
    runner = FakeDebootstrap()
    engine = RecordingEngine()
    base = bootstrapper(runner, keyrings=keyrings, scripts=scripts).bootstrap(
        "debian:bookworm", DEBIAN, "x86_64", tmp_path / "cache", engine
    )
    assert f"--keyring={keyrings}/debian-archive-keyring.gpg" in runner.streamed[0]
    labels = engine.calls[-1].kwargs["labels"]
    assert labels["io.torchrig.base.verified"] == "true"
    assert labels["io.torchrig.base.signed-by"] == SIGNER["debian"] == base.signed_by


def test_a_host_keyring_with_foreign_keys_is_passed_over(
    tmp_path: Path, keyrings: Path, scripts: Path
) -> None:
    """A file at the Ubuntu keyring's path holding other keys (here Debian's) is not trusted."""
    shutil.copyfile(
        keyrings / "debian-archive-keyring.gpg", keyrings / "ubuntu-archive-keyring.gpg"
    )
    runner = FakeDebootstrap()
    lines: list[str] = []
    base = bootstrap_ubuntu(
        tmp_path, bootstrapper(runner, keyrings=keyrings, scripts=scripts), lines
    )
    assert base.verified
    assert f"--keyring={KEYRING_DATA}/ubuntu-archive-keyring.gpg" in runner.streamed[0]
    assert any("holds none of the 3 ubuntu archive keys torchrig knows" in line for line in lines)


def changed_copy(tmp_path: Path) -> Path:
    """torchrig's keyring folder with a keyring whose bytes no longer match keyrings.toml."""
    data = tmp_path / "data"
    data.mkdir()
    tampered = bytearray((KEYRING_DATA / "ubuntu-archive-keyring.gpg").read_bytes())
    tampered[100] ^= 0xFF
    (data / "ubuntu-archive-keyring.gpg").write_bytes(bytes(tampered))
    return data


def test_no_trustworthy_keyring_is_refused_before_anything_is_fetched(
    tmp_path: Path, keyrings: Path, scripts: Path
) -> None:
    runner = FakeDebootstrap()
    boot = bootstrapper(
        runner, keyrings=keyrings, scripts=scripts, keyring_data=changed_copy(tmp_path)
    )
    with pytest.raises(HostError) as caught:
        bootstrap_ubuntu(tmp_path, boot, [])
    assert caught.value.message.startswith("cannot check the package signatures of ubuntu:noble: ")
    assert "ubuntu-archive-keyring.gpg was changed" in caught.value.message
    assert caught.value.fix is not None
    assert "apt-get install ubuntu-keyring" in caught.value.fix
    assert "base.allow_unverified = true" in caught.value.fix
    assert runner.streamed == []
    assert not (tmp_path / "cache" / "ubuntu-noble-amd64-2026-11-24.tar").exists()


def test_allow_unverified_bootstraps_unchecked_and_says_so_loudly(
    tmp_path: Path, keyrings: Path, scripts: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runner = FakeDebootstrap()
    engine = RecordingEngine()
    lines: list[str] = []
    boot = bootstrapper(
        runner, keyrings=keyrings, scripts=scripts, keyring_data=changed_copy(tmp_path)
    )
    base = boot.bootstrap(
        "ubuntu:noble",
        UBUNTU,
        "x86_64",
        tmp_path / "cache",
        engine,
        progress=lines.append,
        allow_unverified=True,
    )
    assert not base.verified and base.signed_by == ""
    assert "--no-check-gpg" in runner.streamed[0]
    warning = next(line for line in lines if line.startswith("WARNING:"))
    assert warning.startswith(
        "WARNING: bootstrapping ubuntu:noble WITHOUT checking package signatures "
        "(base.allow_unverified = true)"
    )
    assert UBUNTU in warning and "was changed" in warning
    assert "WITHOUT checking package signatures" in caplog.text
    assert json.loads(base.tar_path.with_suffix(".json").read_text())["verified"] is False
    labels = engine.calls[-1].kwargs["labels"]
    assert labels["io.torchrig.base.verified"] == "false"
    assert "io.torchrig.base.signed-by" not in labels


def test_an_unverified_cached_base_is_not_reused_unless_allowed(
    tmp_path: Path, keyrings: Path, scripts: Path
) -> None:
    unchecked = bootstrapper(
        keyrings=keyrings, scripts=scripts, keyring_data=changed_copy(tmp_path)
    )
    bootstrap_ubuntu(tmp_path, unchecked, [], allow_unverified=True)
    runner = FakeDebootstrap()
    allowed = bootstrap_ubuntu(
        tmp_path,
        bootstrapper(runner, keyrings=keyrings, scripts=scripts),
        [],
        allow_unverified=True,
    )
    assert allowed.reused_tar and not allowed.verified and runner.streamed == []
    lines: list[str] = []
    checked = bootstrap_ubuntu(
        tmp_path, bootstrapper(runner, keyrings=keyrings, scripts=scripts), lines
    )
    assert not checked.reused_tar and checked.verified
    assert "--no-check-gpg" not in runner.streamed[0]
    assert any("was bootstrapped unverified: bootstrapping again" in line for line in lines)
    assert json.loads(checked.tar_path.with_suffix(".json").read_text())["verified"] is True


def test_debian_without_the_hosts_keyring_uses_torchrigs_copy(
    tmp_path: Path, scripts: Path
) -> None:
    runner = FakeDebootstrap()
    base = bootstrapper(runner, keyrings=tmp_path, scripts=scripts).bootstrap(
        "debian:bookworm", DEBIAN, "x86_64", tmp_path / "cache", RecordingEngine()
    )
    assert base.verified
    assert f"--keyring={KEYRING_DATA}/debian-archive-keyring.gpg" in runner.streamed[0]


def test_not_root(tmp_path: Path) -> None:
    with pytest.raises(HostError, match="needs root") as caught:
        bootstrapper(is_root=lambda: False).bootstrap(
            "debian:bookworm", DEBIAN, "x86_64", tmp_path, RecordingEngine()
        )
    assert caught.value.fix is not None and "sudo torchrig prepare" in caught.value.fix
    assert "sources.registry" in caught.value.fix


def test_debootstrap_missing(tmp_path: Path) -> None:
    with pytest.raises(HostError, match="debootstrap is not installed") as caught:
        bootstrapper(which=lambda name: None).bootstrap(
            "debian:bookworm", DEBIAN, "x86_64", tmp_path, RecordingEngine()
        )
    assert caught.value.fix == "apt-get install debootstrap"


def test_foreign_architecture_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot bootstrap arm64 on a x86_64 host"):
        bootstrapper().bootstrap("debian:bookworm", DEBIAN, "aarch64", tmp_path, RecordingEngine())


def test_failed_debootstrap_shows_its_log_and_leaves_nothing(
    tmp_path: Path, keyrings: Path, scripts: Path
) -> None:
    boot = bootstrapper(FakeDebootstrap(rc=1), keyrings=keyrings, scripts=scripts)
    with pytest.raises(ToolError) as caught:
        boot.bootstrap("debian:bookworm", DEBIAN, "x86_64", tmp_path, RecordingEngine())
    assert "debootstrap failed (exit status 1)" in caught.value.message
    assert "E: Couldn't download dpkg" in caught.value.message
    assert caught.value.fix is not None and "--variant=minbase" in caught.value.fix
    assert list(tmp_path.iterdir()) == [keyrings, scripts]


# --- the file system ------------------------------------------------------------------------


def test_clean_rootfs_keeps_owners_of_what_stays(tmp_path: Path) -> None:
    write_rootfs(tmp_path)
    clean_rootfs(tmp_path)
    assert (tmp_path / "var/log/wtmp").exists() and not (tmp_path / "var/log/dpkg.log").exists()
    assert (tmp_path / "etc/hostname").read_text() == "localhost\n"
    assert list((tmp_path / "dev").iterdir()) == []


def test_mounts_under_reads_mountinfo(tmp_path: Path) -> None:
    root = tmp_path / "my root"
    mountinfo = "\n".join(
        [
            "22 1 0:21 / /proc rw - proc proc rw",
            f"90 22 0:5 / {root}/dev rw - devtmpfs udev rw".replace(" root", "\\040root"),
            f"91 22 0:5 / {root}/dev/pts rw - devpts devpts rw".replace(" root", "\\040root"),
            f"92 22 0:5 / {root}-other/proc rw - proc proc rw".replace(" root", "\\040root"),
        ]
    )
    assert mounts_under(root, mountinfo) == [root / "dev/pts", root / "dev"]


def test_real_tar_is_gnu_tar() -> None:
    # --sort=name needs GNU tar 1.28 or newer; every Debian and Ubuntu host has it.
    out = subprocess.run(["tar", "--version"], capture_output=True, text=True, check=True).stdout
    assert "GNU tar" in out
