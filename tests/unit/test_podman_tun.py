"""Rootless Podman on a host whose /dev/net/tun is 0600 root (seen 2026-12-07 as a normal
user on the CI machine): every run that publishes a port failed with slirp4netns's own
stderr and only "reproduce with"; now the error names the fix."""

from __future__ import annotations

import pytest

from tests.unit.test_engine_args import ScriptedRunner, podman
from torchrig.engine.base import Port, RunSpec
from torchrig.errors import ToolError

# What Podman 4.3.1 printed for user 1001 (abridged to its first lines).
SLIRP_DENIED = (
    'Error: /usr/bin/slirp4netns failed: "open(\\"/dev/net/tun\\"): Permission denied\\n'
    'WARNING: Support for seccomp is experimental\\nchild failed(1)\\n"\n'
)
SPEC = RunSpec(
    image="localhost/t-tun:1",
    name="t-tun",
    network="t-tun-net",
    ports=(Port("127.0.0.1", 18777, 80),),
)


def test_no_access_to_dev_net_tun_names_the_fix() -> None:
    engine = podman(ScriptedRunner([(["podman", "run"], 126, "", SLIRP_DENIED)]))
    with pytest.raises(ToolError) as caught:
        engine.run(SPEC)
    assert caught.value.message == (
        "podman: starting t-tun failed: rootless Podman publishes ports through slirp4netns, "
        "which may not open /dev/net/tun on this host"
    )
    assert caught.value.fix == (
        "as root, give users the usual access: chmod 0666 /dev/net/tun; or use Docker "
        "(--engine docker, as a member of the docker group)"
    )


def test_other_run_failures_keep_the_engines_line() -> None:
    taken = "Error: rootlessport listen tcp 127.0.0.1:18777: bind: address already in use\n"
    engine = podman(ScriptedRunner([(["podman", "run"], 126, "", taken)]))
    with pytest.raises(ToolError, match="address already in use") as caught:
        engine.run(SPEC)
    assert caught.value.fix is not None
    assert caught.value.fix.startswith("reproduce with: podman run ")
