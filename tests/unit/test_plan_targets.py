"""Golden files from torchrig.toml: for each spec, the Dockerfile, the `docker run`
arguments, compose.yaml and devcontainer.json, all rendered from the same Plan.

The image tag is the digest of the plan's build context; build writes exactly those files
(image/build.py checks it), so the tag `torchrig plan --json` prints is the one `build`
makes for every spec here. tests/container/test_plan_tag.py checks one for real.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from tests.golden_util import GOLDEN, assert_golden
from tests.plan_inputs import (
    BASE,
    BOOTSTRAP_BASE,
    DEMO_SPEC,
    GPU_HOST,
    TORCHRIG_FILES,
    cpu_target,
    cuda_target,
)
from torchrig.compat.model import load_compat
from torchrig.engine.docker import DockerEngine
from torchrig.host.facts import Engine, HostFacts, System
from torchrig.launch.compose import render_compose, render_devcontainer
from torchrig.plan.image import context_digest
from torchrig.plan.plan import Local, Plan, plan
from torchrig.spec.load import parse_spec

CPU_HOST = HostFacts(
    system=System(arch="x86_64", cpus=2, memory_bytes=24 << 30, user="alice", uid=4242, gid=4343),
    engines=[Engine(name="docker", path="/usr/bin/docker", reachable=True)],
)
CASES: dict[str, tuple[str, HostFacts]] = {
    "cpu": (DEMO_SPEC + 'variant = "cpu"\n', CPU_HOST),
    "cuda-default": (DEMO_SPEC, GPU_HOST),
    "devel": (DEMO_SPEC + 'flavour = "devel"\n', GPU_HOST),
    "mirrors-offline": (
        DEMO_SPEC
        + "[sources]\n"
        + 'index = "https://pypi.corp.example/simple"\n'
        + 'torch_index = "none"\n'
        + 'apt_mirror = "http://apt.corp.example/ubuntu"\n'
        + 'registry = "none"\n'
        + 'hf_endpoint = "https://hf.corp.example"\n'
        + 'trusted_hosts = ["pypi.corp.example"]\n',
        GPU_HOST,
    ),
    "gpus-subset": (DEMO_SPEC + '[resources]\ngpus = ["1"]\n', GPU_HOST),
    "tensorboard-on": (DEMO_SPEC + "[services.tensorboard]\nenabled = true\n", GPU_HOST),
    "ssh-off": (DEMO_SPEC + "[services.ssh]\nenabled = false\n", GPU_HOST),
}
WORKSPACE = Path("/work/demo")
KEYS = Path("/home/alice/.local/state/torchrig/demo/authorized_keys")
ENV_FILE = Path("/home/alice/.local/state/torchrig/demo/env")


def make_plan(case: str) -> Plan:
    text, host = CASES[case]
    spec = parse_spec(text)
    cpu = spec.torch.variant == "cpu"
    local = Local(
        project_dir=WORKSPACE,
        workspace=WORKSPACE,
        mounts=[],
        keys_file=KEYS,
        env_file=ENV_FILE if case == "mirrors-offline" else None,
        base=BOOTSTRAP_BASE if case == "mirrors-offline" else BASE,
        torchrig_files=TORCHRIG_FILES,
    )
    target = cpu_target() if cpu else cuda_target()
    return plan(spec, host, load_compat(), None, local, target=target)


def run_text(p: Plan) -> str:
    """One option (with its value) a line."""
    lines: list[list[str]] = []
    for word in DockerEngine(runner=None).run_argv(p.run):
        if word.startswith("--") or not lines:
            lines.append([])
        lines[-1].append(shlex.quote(word))
    return " \\\n  ".join(" ".join(line) for line in lines) + "\n"


@pytest.mark.parametrize("case", sorted(CASES))
def test_targets_are_golden_and_one_plan(case: str) -> None:
    p = make_plan(case)
    assert p.image.tag is not None and p.image.dockerfile is not None, p.image.pending
    folder = GOLDEN / "plan-targets" / case
    assert_golden(folder / "Dockerfile", p.image.dockerfile)
    assert_golden(folder / "run.docker.txt", run_text(p))
    compose = render_compose(p)
    devcontainer = render_devcontainer(p)
    assert_golden(folder / "compose.yaml", compose)
    assert_golden(folder / "devcontainer.json", devcontainer)
    # One plan: every target names the same image, the tag of the context's digest.
    tag = p.image.tag
    assert p.run.image == tag and p.build.image == tag
    assert f'image: "{tag}"' in compose and f'"image": "{tag}"' in devcontainer
    assert tag.endswith("-" + context_digest(p.image.context)[:12])
    assert {f.path for f in p.image.context} >= {"Dockerfile", "image.json", "constraints.txt"}


def test_cuda_exports_publish_on_loopback_with_the_gpus_and_no_capabilities() -> None:
    # What the former export goldens (test_runplan) asserted besides their text, which is
    # cuda-default's compose.yaml and devcontainer.json above.
    p = make_plan("cuda-default")
    compose, devcontainer = render_compose(p), render_devcontainer(p)
    assert "127.0.0.1:8888:8888" in compose and "driver" in compose
    assert "--gpus=all" in devcontainer and "--cap-drop=ALL" in devcontainer


def test_the_tag_follows_every_file_of_the_context() -> None:
    p = make_plan("cuda-default")
    other = make_plan("devel")
    assert p.image.tag != other.image.tag
    text, host = CASES["cuda-default"]
    local = Local(
        project_dir=WORKSPACE,
        base=BASE,
        torchrig_files=(*TORCHRIG_FILES[:1], TORCHRIG_FILES[1].model_copy(update={"size": 1})),
    )
    same_files = plan(parse_spec(text), host, load_compat(), None, local, target=cuda_target())
    assert same_files.image.tag == p.image.tag, "the size is no input, the content digest is"
    changed = TORCHRIG_FILES[1].model_copy(update={"sha256": "3" * 64})
    local = Local(project_dir=WORKSPACE, base=BASE, torchrig_files=(TORCHRIG_FILES[0], changed))
    edited = plan(parse_spec(text), host, load_compat(), None, local, target=cuda_target())
    assert edited.image.tag != p.image.tag


def test_without_a_lock_or_a_base_the_tag_is_unknown_and_says_why() -> None:
    text, host = CASES["cuda-default"]
    spec = parse_spec(text)
    no_lock = plan(spec, host, load_compat(), None, Local(project_dir=WORKSPACE, base=BASE))
    assert no_lock.image.tag is None and no_lock.build.image is None
    assert no_lock.image.pending == ["no torchrig.lock yet: run `torchrig lock`"]
    no_base = plan(
        spec,
        host,
        load_compat(),
        None,
        Local(project_dir=WORKSPACE, torchrig_files=TORCHRIG_FILES),
        target=cuda_target(),
    )
    assert no_base.image.tag is None and "base image" in no_base.image.pending[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_build_writes_the_context_the_tag_was_computed_from(case: str, tmp_path: Path) -> None:
    """By construction for every spec here: build's context, written from the plan with
    torchrig's real files, has the digest in the plan's tag (write_context refuses else)."""
    from torchrig.image.build import write_context, written_context
    from torchrig.launch.local import torchrig_files

    text, host = CASES[case]
    spec = parse_spec(text)
    target = cpu_target() if spec.torch.variant == "cpu" else cuda_target()
    local = Local(project_dir=WORKSPACE, base=BASE, torchrig_files=torchrig_files())
    p = plan(spec, host, load_compat(), None, local, target=target)
    write_context(p.image, tmp_path)
    assert p.image.tag is not None
    assert p.image.tag.endswith("-" + context_digest(written_context(tmp_path))[:12])
    assert sorted(f.path for f in written_context(tmp_path)) == [f.path for f in p.image.context]
