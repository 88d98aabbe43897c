"""[[mounts]] and the shared Hugging Face cache, on real workbenches (Docker; issue 11, item 4).

Two workbenches of one UID (4711, used by no other test, so the cache volume
torchrig-hf-cache-4711 is this test's alone):

- a host folder mounted read-only at /data: the workbench user reads it, and every write
  fails with EROFS;
- the cache volume at /cache/huggingface: a file one workbench writes into hub/ is read and
  extended by the other, and HF_HUB_CACHE points there in `torchrig exec`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.container.workbench import cpu_spec, let_owners_in, torchrig

pytestmark = pytest.mark.container

PREFIX = "t-mnt"
UID = GID = 4711
VOLUME = f"torchrig-hf-cache-{UID}"


def _project(root: Path, name: str, port: int, data: Path) -> Path:
    project = root / name
    project.mkdir()
    spec = cpu_spec(name, jupyter_port=port).replace("4242", str(UID)).replace("4343", str(GID))
    spec += f'\n[[mounts]]\nsource = "{data}"\ntarget = "/data"\n'
    (project / "torchrig.toml").write_text(spec)
    os.chown(project, UID, GID)
    return project


def _exec(project: Path, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return torchrig(
        "exec", "--engine", "docker", "--", "sh", "-c", script, cwd=project, check=check
    )


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Path]]:
    if shutil.which("docker") is None:
        pytest.fail("docker is needed (bash .ci/install-engines.sh)", pytrace=False)
    root = let_owners_in(tmp_path_factory.mktemp(PREFIX))
    data = root / "data"
    data.mkdir()
    (data / "hello.txt").write_text("from the host\n")
    os.chown(data, UID, GID)  # even the owner's workbench may not write a read-only mount
    made = [_project(root, f"{PREFIX}-a", 18961, data), _project(root, f"{PREFIX}-b", 18962, data)]
    try:
        for project in made:
            torchrig("up", "--engine", "docker", "--json", cwd=project)
        yield made[0], made[1], data
    finally:
        for project in made:
            torchrig("down", "--engine", "docker", "--purge", cwd=project, check=False)
        subprocess.run(["docker", "volume", "rm", "-f", VOLUME], check=False, capture_output=True)


def test_read_only_mount_is_readable_not_writable(projects: tuple[Path, Path, Path]) -> None:
    first, _, data = projects
    assert _exec(first, "cat /data/hello.txt").stdout == "from the host\n"
    tried = _exec(first, "id -u; echo x > /data/new.txt", check=False)
    assert tried.returncode != 0 and "Read-only file system" in tried.stderr, tried
    assert tried.stdout.strip() == str(UID)  # tried as the workbench user, not refused as root
    assert sorted(p.name for p in data.iterdir()) == ["hello.txt"]


def test_hf_cache_volume_is_shared_by_two_workbenches(projects: tuple[Path, Path, Path]) -> None:
    first, second, _ = projects
    env = _exec(first, 'echo "$HF_HUB_CACHE"').stdout.strip()
    assert env == "/cache/huggingface/hub"
    _exec(first, "mkdir -p $HF_HUB_CACHE/t-mnt && echo one > $HF_HUB_CACHE/t-mnt/file")
    assert _exec(second, "cat $HF_HUB_CACHE/t-mnt/file").stdout == "one\n"
    _exec(second, "echo two >> $HF_HUB_CACHE/t-mnt/file")
    assert _exec(first, "cat $HF_HUB_CACHE/t-mnt/file").stdout == "one\ntwo\n"
    owner = _exec(second, "stat -c %u /cache/huggingface").stdout.strip()
    assert owner == str(UID)
