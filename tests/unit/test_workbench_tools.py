"""The "workbench" stack brings what people use over SSH: tmux, an editor, htop (issue 11,
item 4); nvtop only where the base's enabled components carry it (data: D4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchrig.compat.model import load_compat
from torchrig.compat.resolve import resolve
from torchrig.host.facts import HostFacts, System
from torchrig.launch.session import Session
from torchrig.plan.image import workbench_tools as plan_tools
from torchrig.spec.load import parse_spec, spec_digest


def tools_of(session: Session) -> tuple[str, ...]:
    return plan_tools(session.spec, session.compat, session.resolution)


HOST = HostFacts(system=System(arch="x86_64", cpus=8, memory_bytes=64 << 30, user="ada"))


def _session(tmp_path: Path, base: str, stack: str) -> Session:
    text = (
        '[project]\nname = "demo"\n[torch]\nversion = "2.13.0"\nvariant = "cpu"\n'
        f'[python]\nstack = "{stack}"\n[base]\ndistribution = "{base}"\n'
    )
    spec = parse_spec(text)
    compat = load_compat()
    return Session(
        tmp_path / "torchrig.toml",
        spec,
        spec_digest(spec),
        HOST,
        compat,
        resolve(spec, HOST, compat),
    )


@pytest.mark.parametrize("base", ["debian:bookworm", "ubuntu:noble", "ubuntu:jammy"])
def test_the_workbench_stack_has_tmux_an_editor_and_htop(tmp_path: Path, base: str) -> None:
    tools = tools_of(_session(tmp_path, base, "workbench"))
    assert {"tmux", "vim", "nano", "htop"} <= set(tools)
    assert "nvtop" not in tools  # contrib / multiverse: not enabled on these bases


def test_nvtop_where_the_base_carries_it_in_main(tmp_path: Path) -> None:
    assert "nvtop" in tools_of(_session(tmp_path, "debian:trixie", "workbench"))


@pytest.mark.parametrize("stack", ["minimal", "none"])
def test_lean_stacks_stay_lean(tmp_path: Path, stack: str) -> None:
    assert tools_of(_session(tmp_path, "ubuntu:noble", stack)) == ()


def test_every_distribution_names_its_tools_with_a_source() -> None:
    compat = load_compat()
    for dist in compat.distributions:
        assert dist.tools and "D4" in dist.sources, dist.ref
