"""The image tag and the layer cache must not depend on the build-time wheel server's port.

Attack (issue 10, finding 4): any local user could bind the port the wheel server wanted
(41257 until then); the next `torchrig build` of the same spec and lock then served the
wheels elsewhere, wrote the new address into the Dockerfile, and so got a new tag and a full
rebuild (6.3 GB for CUDA). Here the port is held by another socket for the second build, and
the build must give the same tag from the layer cache: the same image id, no step run again.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.container.conftest import Timings
from tests.container.workbench import cpu_spec, give_to_user, torchrig

pytestmark = pytest.mark.container

# The port torchrig's wheel server asked for before the fix; a squatter took it.
SQUATTED_PORT = 41257
KEEP_TAG = "t-portsq-keep"


def image_id(engine: str, tag: str) -> str:
    done = subprocess.run(
        [engine, "image", "inspect", "--format", "{{.Id}}", tag],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def build(engine: str, project: Path) -> dict[str, object]:
    done = torchrig("build", "--engine", engine, "--json", cwd=project)
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.fixture
def squatter() -> Iterator[socket.socket]:
    """A listening socket on 127.0.0.1:41257, as a local user without privileges can make."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", SQUATTED_PORT))
    except OSError:
        sock.close()
        pytest.fail(f"port {SQUATTED_PORT} is already taken on this machine", pytrace=False)
    sock.listen()
    yield sock
    sock.close()


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_a_taken_port_changes_neither_the_tag_nor_the_layer_cache(
    engine: str, tmp_path: Path, timings: Timings, request: pytest.FixtureRequest
) -> None:
    project = tmp_path / f"t-portsq-{engine}"
    project.mkdir()
    (project / "torchrig.toml").write_text(cpu_spec(project.name, jupyter_port=18997))
    give_to_user(project, *project.iterdir())
    keep = f"{KEEP_TAG}:{engine}"
    first = build(engine, project)
    tag = str(first["image"])
    try:
        built_id = image_id(engine, tag)
        # Keep the image under a second name and drop the project's tag: the next build then
        # really runs the engine (not only the tag check) and must take every step from cache.
        subprocess.run([engine, "tag", tag, keep], check=True, capture_output=True)
        subprocess.run([engine, "image", "rm", tag], check=True, capture_output=True)
        request.getfixturevalue("squatter")
        began = time.monotonic()
        second = build(engine, project)
        seconds = time.monotonic() - began
        timings.append(("build, port taken, layers cached", engine, seconds))
        assert second["image"] == tag, "the same spec and lock gave another tag"
        assert second["built"] is True
        assert image_id(engine, tag) == built_id, "a layer was built again"
        third = build(engine, project)
        assert third["image"] == tag and third["built"] is False
    finally:
        # --no-prune (Docker): untag only, the layers stay as cache for the next run.
        prune = ["--no-prune"] if engine == "docker" else []
        for name in (keep, tag):
            subprocess.run([engine, "image", "rm", *prune, name], check=False, capture_output=True)
