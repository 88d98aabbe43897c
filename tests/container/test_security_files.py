"""Issue 10, finding 2, against the real Docker and Podman: the env-file path.

The engine CLIs read --env-file themselves, as whoever runs them. As root, a torchrig.env
that the project's owner made a symlink to a root-only file was handed to the engine as
is, and the file's lines became the container's environment. Here, with each engine:

- the premise: a path given to the engine is read as root (what `up` passed before);
- the attack through the real CLI: `torchrig up` refuses with one line (exit 2) before any
  build, and no byte of the secret reaches the output, a container or the state folder;
- the owner's own torchrig.env still reaches the container, through torchrig's 0600 copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from tests.container.conftest import SecurityFigures
from tests.container.test_engine_real import base_bootstrapper, base_image, engine, unique
from torchrig.engine import Engine, RunSpec
from torchrig.launch.session import Session
from torchrig.launch.up import stage_env_file

__all__ = ["base_bootstrapper", "base_image", "engine"]  # fixtures shared with the engine tests

pytestmark = pytest.mark.container

OWNER = 4242
SECRET = "t-sec2-root-only-" + uuid.uuid4().hex[:12]


@pytest.fixture
def room() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("the attack is on root's torchrig: run the container tests as root")
    folder = Path(tempfile.mkdtemp(prefix="t-sec2-"))
    folder.chmod(0o755)
    project = folder / "project"
    project.mkdir()
    os.chown(project, OWNER, OWNER)
    secret = folder / "secret.env"
    secret.write_text(f"T_SEC2_TOKEN={SECRET}\n")
    secret.chmod(0o600)
    yield folder
    shutil.rmtree(folder)


def env_of(engine: Engine, image: str, env_file: Path) -> str:
    """The environment of a container run from `image` with this --env-file."""
    name = unique("sec2-env")
    try:
        # In the foreground: run returns when `env` has printed, so the log holds it all.
        engine.run(
            RunSpec(image=image, name=name, env_file=env_file, command=("env",), detach=False)
        )
        return "\n".join(engine.logs(name, tail=200))
    finally:
        engine.remove(name, force=True)


def test_the_engine_reads_an_env_file_path_as_root(
    engine: Engine, base_image: str, room: Path
) -> None:
    link = room / "project" / "torchrig.env"
    link.symlink_to(room / "secret.env")
    # What `up` used to pass: the path itself. The engine's CLI opens it, as root.
    assert SECRET in env_of(engine, base_image, link)


def test_up_refuses_a_torchrig_env_symlinked_to_a_root_only_file(
    engine: Engine, room: Path, security_figures: SecurityFigures
) -> None:
    project, name = room / "project", f"t-sec2-{uuid.uuid4().hex[:8]}"
    spec = project / "torchrig.toml"
    spec.write_text(
        f'[project]\nname = "{name}"\n[torch]\nversion = "2.13.0"\nvariant = "cpu"\n'
        f"[user]\nuid = {OWNER}\ngid = {OWNER}\n"  # the owner's project maps to the owner
    )
    os.chown(spec, OWNER, OWNER)
    (project / "torchrig.env").symlink_to(room / "secret.env")
    env = {**os.environ, "XDG_STATE_HOME": str(room / "state")}
    done = subprocess.run(
        [sys.executable, "-P", "-m", "torchrig.cli.main", "up", "--engine", engine.name],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    errors = [ln for ln in output.splitlines() if ln.startswith("error")]
    leaked = int(SECRET in output) + int(engine.inspect(f"torchrig-{name}") is not None)
    leaked += sum(SECRET in p.read_text() for p in (room / "state").rglob("*") if p.is_file())
    security_figures.record(
        "root_only_bytes_leaked", leaked, engine=engine.name, test="test_security_files"
    )
    assert leaked == 0, output
    assert done.returncode == 2, output
    assert len(errors) == 1 and "symlink out of the project" in errors[0], output


def test_the_owners_env_file_reaches_the_container_through_a_private_copy(
    engine: Engine, base_image: str, room: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = room / "project"
    env = project / "torchrig.env"
    env.write_text("T_SEC2_MINE=from-the-owner\n")
    env.chmod(0o600)
    os.chown(env, OWNER, OWNER)
    monkeypatch.setenv("XDG_STATE_HOME", str(room / "state"))

    # Only what stage_env_file reads of a session: the project folder and the name.
    name = SimpleNamespace(name=f"t-sec2-{uuid.uuid4().hex[:8]}")
    session = SimpleNamespace(project_dir=project, spec=SimpleNamespace(project=name))
    staged = stage_env_file(cast(Session, session), None)
    assert staged is not None and staged != env
    assert staged.stat().st_mode & 0o777 == 0o600
    assert "T_SEC2_MINE=from-the-owner" in env_of(engine, base_image, staged)
