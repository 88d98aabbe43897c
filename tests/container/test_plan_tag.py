"""The tag `torchrig plan --json` prints is the tag `torchrig build` makes (issue 13).

Until then `plan` hashed the spec and lock while `build` hashed the build context, so the
printed tag never existed. Here the plan is printed before a build (the project's image
removed, its layers kept) and after it; both name the image the engine then holds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import torchrig as package
from tests.container.workbench import cpu_spec, give_to_user, torchrig_argv

pytestmark = pytest.mark.container
ENGINE = "docker"


def frozen_torchrig(root: Path) -> dict[str, str]:
    """The environment of a torchrig whose files cannot change under the test: the tag is
    a digest of torchrig's own files too, and in a checkout someone is editing, an edit
    between `plan` and `build` rightly changes it."""
    shutil.copytree(
        Path(package.__file__).parent,
        root / "torchrig",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    return {**os.environ, "PYTHONPATH": str(root)}


def cli(env: dict[str, str], project: Path, *args: str) -> dict[str, object]:
    done = subprocess.run(
        torchrig_argv(*args, "--json"), cwd=project, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, f"torchrig {' '.join(args)}: {done.stderr[-3000:]}"
    result: dict[str, object] = json.loads(done.stdout)
    return result


def plan_tag(env: dict[str, str], project: Path) -> str | None:
    image = cli(env, project, "plan")["image"]
    assert isinstance(image, dict)
    return None if image["tag"] is None else str(image["tag"])


def image_labels(tag: str) -> dict[str, str]:
    done = subprocess.run(
        [ENGINE, "image", "inspect", "--format", "{{json .Config.Labels}}", tag],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"{ENGINE} has no image {tag}: {done.stderr.strip()}"
    labels: dict[str, str] = json.loads(done.stdout)
    return labels


def test_the_tag_plan_prints_is_the_image_build_makes(tmp_path: Path) -> None:
    project = tmp_path / "t-plantag-docker"
    project.mkdir()
    (project / "torchrig.toml").write_text(cpu_spec(project.name, jupyter_port=18996))
    give_to_user(project, *project.iterdir())
    env = frozen_torchrig(tmp_path / "frozen")
    built = cli(env, project, "build", "--engine", ENGINE)
    tag = str(built["image"])
    try:
        assert plan_tag(env, project) == tag
        assert image_labels(tag)["io.torchrig.variant"] == "cpu"
        # Before a build: the project's image gone (its layers stay as cache).
        subprocess.run([ENGINE, "image", "rm", "--no-prune", tag], check=True, capture_output=True)
        printed = plan_tag(env, project)
        assert printed == tag
        again = cli(env, project, "build", "--engine", ENGINE)
        assert again["image"] == printed and again["built"] is True
        assert image_labels(printed)["io.torchrig.variant"] == "cpu"
    finally:
        subprocess.run([ENGINE, "image", "rm", "--no-prune", tag], check=False, capture_output=True)
