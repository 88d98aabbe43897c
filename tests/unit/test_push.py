"""torchrig push without a registry (issue 14, item 1): the record beside the lock, the rule
every cluster file follows to name its image, and one line for each way a push fails.
The real registry, with Docker and Podman, is tests/container/test_push_registry.py."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from torchrig.engine.base import RegistryRefused, RegistryUnreachable
from torchrig.engine.cli import push_failure
from torchrig.engine.fake import RecordingEngine
from torchrig.errors import ToolError, UsageError
from torchrig.push.push import parse_target, push
from torchrig.push.record import IMAGES_FILE, cluster_image, read_images

IMAGE = "torchrig/demo:cpu-0123456789ab"
DIGEST = "sha256:" + "5e" * 32


def test_a_push_is_recorded_by_digest(tmp_path: Path) -> None:
    engine = RecordingEngine()
    engine.add_image(IMAGE)
    pushed, record = push(engine, IMAGE, parse_target("127.0.0.1:5000/team/demo", IMAGE), tmp_path)
    assert record == tmp_path / IMAGES_FILE
    assert pushed.tag == "127.0.0.1:5000/team/demo:cpu-0123456789ab"
    assert pushed.ref == f"127.0.0.1:5000/team/demo@{engine.registry[pushed.tag]}"
    assert read_images(tmp_path) == [pushed]
    # Plain HTTP is allowed for a registry on this machine only.
    assert engine.called("push")[0].kwargs == {"tls_verify": False}
    assert cluster_image(tmp_path, IMAGE) == pushed.ref


def test_a_newer_build_replaces_its_variant_and_keeps_the_others(tmp_path: Path) -> None:
    engine = RecordingEngine()
    newer, gpu = "torchrig/demo:cpu-ffffffffffff", "torchrig/demo:cu130-0123456789ab"
    for image in (IMAGE, newer, gpu):
        engine.add_image(image)
        push(engine, image, parse_target("reg.example/demo", image), tmp_path)
    assert sorted(e.image for e in read_images(tmp_path)) == [newer, gpu]
    assert parse_target("reg.example/demo", IMAGE).name == "reg.example/demo"
    assert engine.called("push")[0].kwargs == {"tls_verify": True}


def test_an_image_not_built_is_one_line_and_pushes_nothing(tmp_path: Path) -> None:
    engine = RecordingEngine()
    with pytest.raises(UsageError) as caught:
        push(engine, IMAGE, parse_target("reg.example/demo", IMAGE), tmp_path)
    assert f"the image {IMAGE} is not built" in caught.value.one_line()
    assert "torchrig build" in caught.value.one_line()
    assert not engine.called("push") and not (tmp_path / IMAGES_FILE).exists()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("Reg.Example/Demo", "is not a registry name (names are lower case)"),
        (f"reg.example/demo@{DIGEST}", "names a digest"),
        ("reg.example/demo:-x", "'-x' is not an image tag"),
        ("reg.example/de mo", "is not a registry name"),
    ],
)
def test_bad_targets_are_one_line(text: str, says: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_target(text, IMAGE)
    assert says in caught.value.one_line()


# What Docker 20.10 and Podman 4.3 printed on this machine, pushing to Debian's
# docker-registry 2.8 (tests/container/test_push_registry.py pushes for real).
DOCKER_NO_LOGIN = (
    "The push refers to repository [127.0.0.1:15112/t/x]\nbf71ed8e0d00: Preparing\n"
    "no basic auth credentials\n"
)
PODMAN_NO_LOGIN = (
    "Error: trying to reuse blob sha256:bf71 at destination: checking whether a blob "
    "sha256:bf71 exists in 127.0.0.1:15112/t/x: unauthorized: authentication required\n"
)
DOCKER_REFUSED = 'Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused'
PODMAN_NO_HOST = (
    "Error: trying to reuse blob sha256:bf71 at destination: pinging container registry "
    'nonexistent.invalid: Get "https://nonexistent.invalid/v2/": dial tcp: lookup '
    "nonexistent.invalid on 10.255.255.53:53: no such host\n"
)
PODMAN_PLAIN_HTTP = (
    "Error: trying to reuse blob sha256:bf71 at destination: pinging container registry "
    '127.0.0.1:15111: Get "https://127.0.0.1:15111/v2/": http: server gave HTTP response '
    "to HTTPS client\n"
)


@pytest.mark.parametrize(
    ("engine", "target", "text", "kind", "says", "fix"),
    [
        ("docker", "127.0.0.1:15112/t/x:1", DOCKER_NO_LOGIN, RegistryRefused,
         "registry 127.0.0.1:15112 refused the push", "docker login 127.0.0.1:15112"),
        ("podman", "127.0.0.1:15112/t/x:1", PODMAN_NO_LOGIN, RegistryRefused,
         "authentication required", "podman login 127.0.0.1:15112"),
        ("docker", "127.0.0.1:1/t/x:1", DOCKER_REFUSED, RegistryUnreachable,
         "registry 127.0.0.1:1 is unreachable", "that the registry runs"),
        ("podman", "nonexistent.invalid/t/x:1", PODMAN_NO_HOST, RegistryUnreachable,
         "no such host", "check the address"),
        ("podman", "127.0.0.1:15111/t/x:1", PODMAN_PLAIN_HTTP, RegistryUnreachable,
         "HTTP response to HTTPS client", "insecure registry"),
        ("docker", "reg/x:1", "some other failure", ToolError, "pushing reg/x:1 failed",
         "reproduce with"),
    ],
)  # fmt: skip
def test_push_failures_are_one_line_each(
    engine: str, target: str, text: str, kind: type[ToolError], says: str, fix: str
) -> None:
    error = push_failure(engine, target, text, [engine, "push", target])
    assert type(error) is kind and error.exit_code == 5
    line = error.one_line()
    assert says in line and fix in line and "\n" not in line


def test_the_image_a_cluster_file_names(tmp_path: Path) -> None:
    digest_ref = f"reg.example/other@{DIGEST}"
    # Nothing pushed: a digest as given, a tag as given, nothing at all refused.
    assert cluster_image(tmp_path, IMAGE, digest_ref) == digest_ref
    assert cluster_image(tmp_path, IMAGE, "reg.example/demo:v1") == "reg.example/demo:v1"
    with pytest.raises(UsageError, match="no pushed image for torchrig/demo"):
        cluster_image(tmp_path, IMAGE)
    engine = RecordingEngine()
    engine.add_image(IMAGE)
    pushed, _ = push(engine, IMAGE, parse_target("reg.example/demo", IMAGE), tmp_path)
    # Pushed: the record's digest; a tag is refused; a digest still wins.
    assert cluster_image(tmp_path, IMAGE) == pushed.ref
    with pytest.raises(UsageError) as caught:
        cluster_image(tmp_path, IMAGE, "reg.example/demo:v1")
    assert "is a tag, and torchrig.images records pushed digests" in caught.value.one_line()
    assert cluster_image(tmp_path, IMAGE, digest_ref) == digest_ref
    # A rebuilt image whose push is not recorded yet: the old digest is never used.
    with pytest.raises(UsageError) as caught:
        cluster_image(tmp_path, "torchrig/demo:cpu-ffffffffffff")
    assert "not of the current build torchrig/demo:cpu-ffffffffffff" in caught.value.one_line()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[[pushed]\n", "is not valid TOML"),
        ('[[pushed]]\nimage = "a"\n', "writes (pushed[0].ref: Field required)"),
        ('[[pushed]]\nimage = "a"\nref = "r:latest"\ntag = "t"\nengine = "docker"\n',
         "ref 'r:latest' is not name@sha256"),
        ('images = 1\n', "unknown key 'images'"),
        ('[[pushed]]\nimage = "a"\nref = "r"\ntag = "t"\nengine = "d"\nextra = 1\n',
         "pushed[0].extra: Extra inputs are not permitted"),
        ("pushed = 3\n", "pushed[0].entry: Input should be a valid dictionary"),
    ],
)  # fmt: skip
def test_a_broken_record_is_one_line(tmp_path: Path, text: str, says: str) -> None:
    (tmp_path / IMAGES_FILE).write_text(text)
    with pytest.raises(UsageError) as caught:
        read_images(tmp_path)
    assert says in caught.value.one_line() and "torchrig push" in caught.value.one_line()


@pytest.fixture
def their_project() -> Iterator[Path]:
    """A project folder uid 4242 owns, where that uid can reach it (not under pytest's 0700
    basetemp)."""
    folder = Path(tempfile.mkdtemp(prefix="t-slurm-push-"))
    os.chown(folder, 4242, 4343)
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.root  # acts for another uid
def test_root_pushing_for_someone_writes_the_record_as_its_owner(their_project: Path) -> None:
    """Before: root's push left a root-owned torchrig.images in the user's project (the
    Slurm lab had to chown it back)."""
    engine = RecordingEngine()
    newer = "torchrig/demo:cpu-ffffffffffff"
    for image in (IMAGE, newer):
        engine.add_image(image)
        _, record = push(engine, image, parse_target("reg.example/demo", image), their_project)
        st = record.stat()
        assert (st.st_uid, st.st_gid) == (4242, 4343)
    assert [e.image for e in read_images(their_project)] == [newer]


@pytest.mark.root  # acts for another uid
def test_root_cannot_write_the_record_where_its_owner_may_not(their_project: Path) -> None:
    their_project.chmod(0o555)  # the owner's own folder, closed to writing: root is not asked
    engine = RecordingEngine()
    engine.add_image(IMAGE)
    with pytest.raises(UsageError) as caught:
        push(engine, IMAGE, parse_target("reg.example/demo", IMAGE), their_project)
    line = caught.value.one_line()
    assert f"{IMAGES_FILE}: cannot write {their_project / IMAGES_FILE}" in line
    assert "uid 4242, the project's owner, may not write there" in line
    assert not (their_project / IMAGES_FILE).exists()
