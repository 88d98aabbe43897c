"""Helpers for container tests that start a CPU-torch workbench with the real CLI.

    project = cpu_project(root, "t-jobs-docker", services={"jupyter": 18988})
    torchrig("up", "--engine", "docker", "--json", cwd=project)

The image uses the CPU torch wheel these machines carry (see README), so no GPU and no
index is needed; the project belongs to UID/GID, the host user the workbench maps to.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

WHEELHOUSE = "/opt/wheels"
UID, GID = 4242, 4343
T = TypeVar("T")


def torchrig_argv(*args: str) -> list[str]:
    # -P: the project folder (the cwd) stays off sys.path, as for the installed `torchrig`
    # script; a test that plants json.py there must not run it in this process.
    return [sys.executable, "-P", "-m", "torchrig.cli.main", *args]


def torchrig(
    *args: str, cwd: Path, check: bool = True, timeout: float = 1500
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        torchrig_argv(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        pytest.fail(
            f"`torchrig {' '.join(args)}` exited {done.returncode} in {cwd}\n"
            f"stdout: {done.stdout[-3000:]}\nstderr: {done.stderr[-5000:]}",
            pytrace=False,
        )
    return done


def cpu_torch_spec(
    name: str, *, packages: Sequence[str] = (), sections: str = "", extra: str = ""
) -> str:
    """The CPU-torch spec every container test and benchmark starts from.

    torch 2.13.0 for the CPU from the wheelhouse (no index), Python 3.11, the minimal
    stack plus `packages`. `sections` (whole TOML sections, each ending in a blank line)
    go before [sources]; `extra` follows its last line, so it may add [sources] keys
    (`registry = ...`) or further sections.
    """
    listed = f"packages = {json.dumps(list(packages))}\n" if packages else ""
    return f"""
[project]
name = "{name}"

[torch]
version = "2.13.0"
variant = "cpu"
torchvision = false

[python]
version = "3.11"
stack = "minimal"
{listed}
{sections}[sources]
torch_index = "none"
find_links = ["{WHEELHOUSE}"]
{extra}"""


def jupyter_only(port: int) -> str:
    """[services] for a workbench that needs JupyterLab on `port` and no SSH server."""
    return f"[services.jupyter]\nport = {port}\n\n[services.ssh]\nenabled = false\n\n"


def cpu_spec(name: str, *, jupyter_port: int, extra: str = "") -> str:
    """cpu_torch_spec for the host user UID/GID (as "alice") with JupyterLab only."""
    user = f'[user]\nname = "alice"\nuid = {UID}\ngid = {GID}\n\n'
    return cpu_torch_spec(name, sections=user + jupyter_only(jupyter_port), extra=extra)


def let_owners_in(folder: Path) -> Path:
    """Let every account pass through `folder` and the temporary folders above it.

    pytest makes its folders 0700 (root's, here), and torchrig reads a project's files with
    its owner's rights (issue 10, finding 2), as the kernel would let that person: the
    test projects belong to other uids, so the way to them must be open to search (0711),
    as a home folder's is on a real machine. Nothing is made listable or writable.
    """
    top = Path(tempfile.gettempdir()).resolve()
    for path in (folder, *folder.parents):
        if path == top or top not in path.parents:
            break
        mode = path.stat().st_mode & 0o7777
        if mode & 0o011 != 0o011:
            path.chmod(mode | 0o011)
    return folder


@contextmanager
def throwaway_user(name: str, uid: int, groups: str = "docker") -> Iterator[pwd.struct_passwd]:
    """A normal user of this machine for one test (root makes it, and removes it after)."""
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.fail("needs root and useradd to make the test user (the CI machine has them)")
    subprocess.run(["userdel", "--remove", name], capture_output=True, check=False)
    subprocess.run(
        ["useradd", "--uid", str(uid), "--create-home", "--groups", groups, name],
        check=True,
        capture_output=True,
    )
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", "--remove", name], capture_output=True, check=False)


def give_to_user(*paths: Path) -> None:
    """Files the workbench user must own, as they would on a laptop."""
    for path in paths:
        os.chown(path, UID, GID)


def wait_until(check: Callable[[], T | None], timeout: float, what: str, poll: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout:g} s", pytrace=False)
        time.sleep(poll)
