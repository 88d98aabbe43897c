"""Where the base comes from (image/obtain.py): a registry pinned by digest, else the shared
cache `sudo torchrig prepare` fills (checked before use), else a bootstrap that needs root;
and the shared wheel cache, used only for files that check out."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from torchrig.compat.resolve import BaseChoice
from torchrig.engine import RecordingEngine
from torchrig.errors import HostError, SpecError
from torchrig.image import registry
from torchrig.image.base import Bootstrapper
from torchrig.image.obtain import Base, obtain_base
from torchrig.image.wheels import fetch_all
from torchrig.lock.uv import LockedPackage
from torchrig.spec.load import parse_spec

DEBIAN = "http://deb.debian.org/debian"
DIGEST = "sha256:" + "ab" * 32
BOOKWORM = BaseChoice(
    distribution="debian:bookworm",
    image="docker.io/library/debian:bookworm",
    python="3.11",
    glibc="2.36",
    mirror=DEBIAN,
)


@pytest.fixture
def shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "shared"
    monkeypatch.setenv("TORCHRIG_SHARED_CACHE", str(root))
    monkeypatch.setenv("TORCHRIG_CACHE", str(tmp_path / "mine"))
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    return root


def not_root() -> Bootstrapper:
    return Bootstrapper(is_root=lambda: False, host_arch="x86_64")


def put_base(shared: Path, content: bytes = b"rootfs", day: str = "2026-01-02") -> Path:
    """A bootstrapped base as `prepare` leaves it: tarball and record, mode 0644."""
    bases = shared / "bases"
    bases.mkdir(parents=True, exist_ok=True)
    tar = bases / f"debian-bookworm-amd64-{day}.tar"
    tar.write_bytes(content)
    record = {
        "distribution": "debian:bookworm",
        "mirror": DEBIAN,
        "components": ["main"],
        "date": day,
        "source_date_epoch": 1767312000,
        "sha256": hashlib.sha256(content).hexdigest(),
        "verified": True,
        "keyring": "/usr/share/keyrings/debian-archive-keyring.gpg",
        "signed_by": "ABCD",
    }
    tar.with_suffix(".json").write_text(json.dumps(record))
    for path in (tar, tar.with_suffix(".json")):
        path.chmod(0o644)
    return tar


def obtain(
    engine: RecordingEngine, setting: str = "auto", boot: Bootstrapper | None = None
) -> Base:
    return obtain_base(
        BOOKWORM,
        ("main",),
        "x86_64",
        engine,
        None,
        registry_setting=setting,
        bootstrapper=boot or not_root(),
    )


# --- references ----------------------------------------------------------------------------


def test_registry_references() -> None:
    assert registry.registry_ref(BOOKWORM.image, "auto") == "docker.io/library/debian:bookworm"
    assert (
        registry.registry_ref(BOOKWORM.image, "127.0.0.1:5000")
        == "127.0.0.1:5000/library/debian:bookworm"
    )
    assert (
        registry.registry_ref(BOOKWORM.image, "mirror.example/hub/")
        == "mirror.example/hub/library/debian:bookworm"
    )
    # A mirror stands in for Docker Hub only.
    assert registry.registry_ref("quay.io/x/y:1", "m.example") == "quay.io/x/y:1"
    assert registry.repository("ubuntu:noble") == "docker.io/library/ubuntu"
    assert registry.repository("localhost:5000/a/b@" + DIGEST) == "localhost:5000/a/b"
    assert registry.is_loopback("127.0.0.1:5000/library/debian:bookworm")
    assert registry.is_loopback("localhost:5000/x:1")
    assert not registry.is_loopback("docker.io/library/debian:bookworm")
    assert not registry.is_loopback("mirror.example:5000/library/debian:bookworm")


def test_digest_of_reads_docker_and_podman_spellings() -> None:
    ref = "docker.io/library/debian:bookworm"
    assert registry.digest_of([f"debian@{DIGEST}"], ref) == f"docker.io/library/debian@{DIGEST}"
    assert registry.digest_of([f"docker.io/library/debian@{DIGEST}"], ref) == (
        f"docker.io/library/debian@{DIGEST}"
    )
    assert registry.digest_of([f"other@{DIGEST}", "debian@sha256:short"], ref) is None


# --- the order ------------------------------------------------------------------------------


def test_a_reachable_registry_gives_a_base_pinned_by_digest(shared: Path) -> None:
    engine = RecordingEngine()
    engine.registry["127.0.0.1:5000/library/debian:bookworm"] = DIGEST
    base = obtain(engine, "127.0.0.1:5000")
    assert (base.image, base.source) == (f"127.0.0.1:5000/library/debian@{DIGEST}", "registry")
    (pull,) = engine.called("pull")
    # Loopback registries speak plain HTTP (Podman needs to be told).
    assert pull.kwargs == {"tls_verify": False}
    assert not engine.called("import_rootfs")


def test_docker_hub_is_pulled_with_tls(shared: Path) -> None:
    engine = RecordingEngine()
    engine.registry[BOOKWORM.image] = DIGEST
    assert obtain(engine).image == f"docker.io/library/debian@{DIGEST}"
    assert engine.called("pull")[0].kwargs == {"tls_verify": True}


def test_no_registry_and_a_shared_base_needs_no_root(shared: Path) -> None:
    tar = put_base(shared)
    engine = RecordingEngine()
    base = obtain(engine)
    assert base.source == "shared cache"
    assert base.image.startswith("torchrig-base/debian:bookworm-")
    (imported,) = engine.called("import_rootfs")
    assert imported.args[0] == tar


def test_the_newest_trusted_shared_base_wins(shared: Path) -> None:
    put_base(shared, b"old", "2026-01-01")
    newest = put_base(shared, b"new", "2026-02-01")
    engine = RecordingEngine()
    obtain(engine)
    assert engine.called("import_rootfs")[0].args[0] == newest


def test_registry_none_never_pulls(shared: Path) -> None:
    put_base(shared)
    engine = RecordingEngine()
    engine.registry[BOOKWORM.image] = DIGEST
    assert obtain(engine, "none").source == "shared cache"
    assert not engine.called("pull")


def test_a_changed_shared_tarball_is_not_used(shared: Path) -> None:
    tar = put_base(shared)
    tar.write_bytes(b"tampered")
    with pytest.raises(HostError, match="needs root") as caught:
        obtain(RecordingEngine())
    assert "sudo torchrig prepare" in str(caught.value.fix)


def test_a_shared_base_others_can_write_is_not_used(shared: Path) -> None:
    tar = put_base(shared)
    tar.chmod(0o664)  # a member of group torchrig could have replaced it
    with pytest.raises(HostError, match="needs root"):
        obtain(RecordingEngine())


def test_a_shared_base_from_another_mirror_is_not_used(shared: Path) -> None:
    put_base(shared)
    other = BOOKWORM.model_copy(update={"mirror": "http://mirror.example/debian"})
    with pytest.raises(HostError, match="needs root"):
        obtain_base(other, ("main",), "x86_64", RecordingEngine(), None, bootstrapper=not_root())


def test_the_spec_image_is_used_as_written(shared: Path) -> None:
    image = BOOKWORM.model_copy(update={"distribution": "image", "image": f"x/y@{DIGEST}"})
    engine = RecordingEngine()
    base = obtain_base(image, ("main",), "x86_64", engine, None)
    assert (base.image, base.components) == (f"x/y@{DIGEST}", ())
    assert not engine.called("pull")


# --- the shared wheel cache -----------------------------------------------------------------


def wheel(tmp_path: Path, content: bytes) -> LockedPackage:
    source = tmp_path / "src" / "pkg-1.0-py3-none-any.whl"
    source.parent.mkdir(exist_ok=True)
    source.write_bytes(content)
    return LockedPackage(
        name="pkg",
        version="1.0",
        index="",
        file=source.name,
        url=source.as_uri(),
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
    )


def test_a_shared_wheel_is_used_and_nothing_downloaded(tmp_path: Path, shared: Path) -> None:
    package = wheel(tmp_path, b"wheel")
    fetch_all([package], root=shared / "wheels")  # what `prepare` does
    # A user outside group torchrig: the shared folder is not theirs to write.
    (shared / "wheels").chmod(0o755)
    files, downloaded = fetch_all([package])
    assert downloaded == 0 and files["pkg"].is_relative_to(shared)
    assert files["pkg"].stat().st_mode & 0o777 == 0o644


def test_a_tampered_shared_wheel_is_not_used(tmp_path: Path, shared: Path) -> None:
    package = wheel(tmp_path, b"wheel")
    fetch_all([package], root=shared / "wheels")
    copy = next((shared / "wheels").rglob("*.whl"))
    copy.chmod(0o664)  # written by a group member: checked by hash
    copy.write_bytes(b"evil!")
    (shared / "wheels").chmod(0o755)
    files, downloaded = fetch_all([package])
    assert downloaded == len(b"wheel") and not files["pkg"].is_relative_to(shared)
    assert files["pkg"].read_bytes() == b"wheel"


# --- the spec key ---------------------------------------------------------------------------


def test_sources_registry_takes_a_mirror_and_refuses_a_url() -> None:
    base = '[project]\nname = "x"\n[sources]\n'
    assert parse_spec(base + 'registry = "mirror.example:5000"').sources.registry == (
        "mirror.example:5000"
    )
    with pytest.raises(SpecError, match=r"sources.registry.*is not a registry") as caught:
        parse_spec(base + 'registry = "https://mirror.example"')
    assert "host[:port]" in str(caught.value.fix)


def test_a_shared_cache_this_user_cannot_enter_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found in the container test: Path.is_dir raises PermissionError below a folder the
    # user cannot enter, which crashed the build (exit 70) instead of using the user's cache.
    monkeypatch.setattr("os.access", lambda path, mode: False)
    monkeypatch.setattr(Path, "is_dir", lambda self: (_ for _ in ()).throw(PermissionError(13)))
    from torchrig.image import shared_cache

    assert not shared_cache.readable_dir(tmp_path / "x")
    assert not shared_cache.writable_dir(tmp_path / "x")
