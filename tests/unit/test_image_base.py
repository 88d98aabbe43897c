"""Base images without a registry, with debootstrap faked: the commands, the clean-up, the
reproducible tarball, the cache, the content tag, and the errors a person can meet."""

from __future__ import annotations

import json
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
    Bootstrapper,
    apt_sources,
    clean_rootfs,
    default_cache_dir,
    make_request,
    mounts_under,
    tar_argv,
)

if TYPE_CHECKING:
    from collections.abc import Generator, Mapping, Sequence

DEBIAN = "http://deb.debian.org/debian"
UBUNTU = "http://archive.ubuntu.com/ubuntu"
DAY = date(2026, 11, 24)
MIDNIGHT = 1795478400  # 2026-11-24T00:00:00Z


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
    folder = tmp_path / "keyrings"
    folder.mkdir()
    (folder / "debian-archive-keyring.gpg").write_bytes(b"k")
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


def test_ubuntu_without_its_keyring_is_bootstrapped_unverified_and_says_so(
    tmp_path: Path, keyrings: Path, scripts: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runner = FakeDebootstrap()
    lines: list[str] = []
    base = bootstrapper(runner, keyrings=keyrings, scripts=scripts).bootstrap(
        "ubuntu:noble", UBUNTU, "x86_64", tmp_path, RecordingEngine(), progress=lines.append
    )
    assert not base.verified
    assert "--no-check-gpg" in runner.streamed[0]
    assert any(line.startswith("WARNING: bootstrapping ubuntu:noble WITHOUT") for line in lines)
    assert "WITHOUT checking package signatures" in caplog.text
    meta = json.loads(base.tar_path.with_suffix(".json").read_text())
    assert meta["verified"] is False


def test_debian_without_its_keyring_is_refused(tmp_path: Path, scripts: Path) -> None:
    with pytest.raises(HostError) as caught:
        bootstrapper(keyrings=tmp_path, scripts=scripts).bootstrap(
            "debian:bookworm", DEBIAN, "x86_64", tmp_path, RecordingEngine()
        )
    assert caught.value.fix == "apt-get install debian-archive-keyring"


def test_not_root(tmp_path: Path) -> None:
    with pytest.raises(HostError, match="needs root") as caught:
        bootstrapper(is_root=lambda: False).bootstrap(
            "debian:bookworm", DEBIAN, "x86_64", tmp_path, RecordingEngine()
        )
    assert caught.value.fix is not None and "sudo" in caught.value.fix
    assert "base.image" in caught.value.fix


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
