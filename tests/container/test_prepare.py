"""`sudo torchrig prepare` fills the shared cache once; a normal user then builds without
root and without a registry (issue 11, item 2).

As root: `prepare` makes the group and the shared cache (TORCHRIG_SHARED_CACHE, a temporary
folder here) and bootstraps the spec's base into it, signature-checked. Then a throwaway
user (uid 4322, only in the docker group) with `sources.registry = "none"` builds the same
spec: the base comes from the shared cache ("using the shared base"), the user's own
cache gets no bootstrapped base, and nothing asks for root. Before issue 11 the user got
"bootstrapping a base image needs root".
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.container.test_first_run_group import run_as
from tests.container.workbench import cpu_spec, let_owners_in, throwaway_user

pytestmark = pytest.mark.container

USER, UID = "t-prep-user", 4322
PROJECT = "t-prep-bench"


@pytest.fixture
def docker_user() -> Iterator[pwd.struct_passwd]:
    """A normal user whose only privilege is the docker group."""
    with throwaway_user(USER, UID) as user:
        yield user


def test_prepare_once_then_a_user_builds_without_root(
    docker_user: pwd.struct_passwd, tmp_path: Path
) -> None:
    user = docker_user
    home = Path(user.pw_dir)
    project = home / PROJECT
    project.mkdir()
    spec = cpu_spec(PROJECT, jupyter_port=18977, extra='registry = "none"\n')
    spec = spec.replace("uid = 4242", f"uid = {UID}").replace("gid = 4343", f"gid = {user.pw_gid}")
    (project / "torchrig.toml").write_text(spec)
    for path in (project, project / "torchrig.toml"):
        os.chown(path, UID, user.pw_gid)
    shared = tmp_path / "shared"
    let_owners_in(tmp_path)  # the user reaches the shared cache through pytest's folders
    env = {**os.environ, "TORCHRIG_SHARED_CACHE": str(shared)}
    prepared = subprocess.run(
        [sys.executable, "-P", "-m", "torchrig.cli.main", "prepare", "--engine", "docker",
         "--json", "--spec", str(project / "torchrig.toml")],
        env=env, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    summary = json.loads(prepared.stdout)
    st = shared.stat()
    assert (st.st_uid, grp.getgrgid(st.st_gid).gr_name) == (0, "torchrig")
    assert stat.S_IMODE(st.st_mode) == 0o3775  # setgid + sticky, group-writable
    [base] = summary["bases"]
    assert base["distribution"] == "debian:bookworm" and Path(base["tarball"]).is_file()
    # The user: no root, no registry, the prepared base.
    built = run_as(user, shared, "build", "--engine", "docker", "--json", cwd=project)
    assert "using the shared base" in built.stderr, built.stderr[-2000:]
    assert "needs root" not in built.stderr
    assert not (home / ".cache" / "torchrig" / "bases").exists()
    tag = json.loads(built.stdout)["image"]
    subprocess.run(["docker", "image", "rm", tag], capture_output=True, check=False)
