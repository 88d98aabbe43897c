"""Issue 12, item 8, on a real full disk: `torchrig init` into a 4 KiB tmpfs is exit 4 with
the path, and leaves no temporary file behind. Needs root to mount the tmpfs (CI runs the
suite as root, see scripts/test.sh); the unit test in tests/unit/test_bad_input.py covers the
same path without root by making fsync report ENOSPC."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from torchrig.host.facts import HostFacts, System

pytestmark = pytest.mark.root


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("mounting a tmpfs needs root: run this test as root (CI does)")
    mount = tmp_path / "t-bad1-full"
    mount.mkdir()
    # One page: a torchrig.toml (~8 KiB of comments) cannot fit.
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_init_on_a_full_disk_is_exit_4_with_the_path(tiny_disk: Path, tmp_path: Path) -> None:
    host = tmp_path / "host.json"
    host.write_text(HostFacts(system=System(arch="x86_64", cpus=4, memory_bytes=8 << 30)).to_json())
    argv = ["init", "--dir", str(tiny_disk), "--host", str(host)]
    done = subprocess.run(
        [sys.executable, "-m", "torchrig.cli.main", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 4, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert str(tiny_disk / "torchrig.toml") in done.stderr and "No space left" in done.stderr
    assert list(tiny_disk.iterdir()) == [], "nothing half-written is left on the disk"
