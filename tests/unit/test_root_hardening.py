"""Issue 10, findings 1 and 7, in fast tests: what root runs and how, and the own network.

The black-box attack is tests/container/test_security_root.py; these pin the pieces: the
image's `-I` and `WORKDIR /`, the user-level health check, the capability set, the capset
the entrypoint does, the descriptor-based hand-over, and the network's life cycle.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.golden_util import GOLDEN
from torchrig.engine import RecordingEngine
from torchrig.engine.base import RunSpec
from torchrig.engine.docker import DockerEngine
from torchrig.engine.podman import PodmanEngine
from torchrig.launch.up import ensure_network
from torchrig.plan.run import CAPABILITIES, Identity, health_check
from torchrig.workbench.home import Layout, hand_over
from torchrig.workbench.privileges import CAPABILITY_BITS, effective_capabilities

UID, GID = 4242, 4343
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, capset)")


@pytest.mark.parametrize("name", ["cpu-bookworm-runtime", "cu130-noble-devel-proxy"])
def test_every_python_root_starts_is_isolated_and_starts_in_slash(name: str) -> None:
    """On the golden Dockerfiles, which test_dockerfile.py ties to the renderer."""
    text = (GOLDEN / "dockerfile" / name / "Dockerfile").read_text()
    python_lines = [ln for ln in text.splitlines() if '"-m", "torchrig.workbench.' in ln]
    assert len(python_lines) == 2, python_lines
    assert all('"/opt/venv/bin/python", "-I", "-m"' in ln for ln in python_lines)
    workdirs = [ln for ln in text.splitlines() if ln.startswith("WORKDIR")]
    assert workdirs == ["WORKDIR /"]


def test_health_check_becomes_the_user_before_python_starts() -> None:
    check = health_check(Identity("alice", UID, GID)).command
    assert check.startswith("cd / && exec /usr/bin/setpriv ")
    assert f"--reuid={UID} --regid={GID} --clear-groups" in check
    assert check.endswith("/opt/venv/bin/python -I -m torchrig.workbench.health")


def test_root_may_read_but_not_write_others_files() -> None:
    assert "DAC_OVERRIDE" not in CAPABILITIES and "FOWNER" not in CAPABILITIES
    assert set(CAPABILITIES) == {"CHOWN", "DAC_READ_SEARCH", "KILL", "SETGID", "SETUID"}


@as_root
def test_limit_capabilities_keeps_only_what_is_named() -> None:
    """In a child process: capset leaves CHOWN in effect, SETUID permitted, nothing else."""
    code = (
        "from torchrig.workbench.privileges import limit_capabilities\n"
        "limit_capabilities(permitted=('CHOWN', 'SETUID'), effective=('CHOWN',))\n"
        "import re; s = open('/proc/self/status').read()\n"
        "print(*(int(re.search(k + r':\\s*(\\w+)', s).group(1), 16) for k in "
        "('CapEff', 'CapPrm', 'CapInh')))\n"
        "limit_capabilities(permitted=('CHOWN', 'SETUID'), effective=('SETUID',))\n"
        "s = open('/proc/self/status').read()\n"
        "print(int(re.search(r'CapEff:\\s*(\\w+)', s).group(1), 16))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    eff, prm, inh = (int(x) for x in first.split())
    chown, setuid = 1 << CAPABILITY_BITS["CHOWN"], 1 << CAPABILITY_BITS["SETUID"]
    assert (eff, prm, inh) == (chown, chown | setuid, 0)
    assert int(second) == setuid  # raised again from the permitted set
    assert effective_capabilities() is not None


@as_root
def test_hand_over_leaves_hard_links_and_swapped_links_alone(tmp_path: Path) -> None:
    victim = tmp_path / "etc"
    victim.mkdir()
    shadow = victim / "shadow"
    shadow.write_text("root:*:\n")
    layout = Layout(tmp_path / "alice")
    layout.ssh_state.mkdir(parents=True)
    os.link(shadow, layout.ssh_state / "hard")  # same file system here
    (layout.ssh_state / "sub").symlink_to(victim, target_is_directory=True)
    hand_over(layout, UID, GID)
    assert (shadow.stat().st_uid, shadow.stat().st_gid) == (0, 0)
    assert victim.stat().st_uid == 0
    assert (layout.ssh_state.stat().st_uid, layout.ssh_state.stat().st_gid) == (UID, GID)


def test_network_argv_isolates_on_podman_only() -> None:
    class Runner:
        def __init__(self) -> None:
            self.argv: list[list[str]] = []

        def run(self, argv, **_kw):  # type: ignore[no-untyped-def]
            self.argv.append(list(argv))
            return subprocess.CompletedProcess(argv, 0, "", "")

    for engine, extra in ((DockerEngine, []), (PodmanEngine, ["--opt", "isolate=true"])):
        runner = Runner()
        made = engine(runner=runner)  # type: ignore[arg-type]
        made.network_create("torchrig-demo-net", labels={"io.torchrig.project": "demo"})
        argv = runner.argv[-1]
        start = argv.index("network")
        assert argv[start:] == [
            "network",
            "create",
            "--driver",
            "bridge",
            *extra,
            "--label",
            "io.torchrig.project=demo",
            "torchrig-demo-net",
        ]


def test_ensure_network_makes_it_once_and_run_needs_it() -> None:
    engine = RecordingEngine()
    engine.add_image("img")
    run = RunSpec(image="img", name="wb", network="torchrig-demo-net")
    assert ensure_network(engine, run) is True
    assert ensure_network(engine, run) is False
    engine.run(run)
    assert "torchrig-demo-net" in engine.networks
