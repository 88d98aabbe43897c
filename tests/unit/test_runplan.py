"""The run part of the plan (plan/run.py) and what this machine says for it (launch/local.py):
secure defaults, identity, ports, GPUs, exports."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.plan_inputs import BASE, DEMO_SPEC, GPU_HOST, TORCHRIG_FILES, cuda_target
from torchrig.compat.model import load_compat
from torchrig.compat.resolve import resolve
from torchrig.errors import HostError, UsageError
from torchrig.host.facts import Engine, HostFacts, System
from torchrig.image.build import locked_target
from torchrig.launch.local import authorized_keys, check_workspace, choose_ports
from torchrig.launch.session import Session
from torchrig.launch.workspace_access import ROOT_DEFAULT_ID
from torchrig.lock.lockfile import LockFile
from torchrig.plan.plan import Local, Plan, plan
from torchrig.plan.run import check_gpu_runtime, gpu_selector, identity
from torchrig.spec.load import parse_spec, spec_digest

CPU_HOST = HostFacts(
    system=System(arch="x86_64", cpus=2, memory_bytes=24 << 30, user="root", uid=0, gid=0),
    engines=[Engine(name="docker", path="/usr/bin/docker", reachable=True)],
)


def _workbench(tmp_path: Path, spec_text: str = DEMO_SPEC, host: HostFacts = GPU_HOST) -> Plan:
    spec = parse_spec(spec_text)
    keys = tmp_path / "keys"
    keys.write_text("ssh-ed25519 AAAA test\n")
    local = Local(
        project_dir=tmp_path,
        workspace=Path("/srv/demo") if (Path("/srv/demo")).is_dir() else tmp_path,
        ports={"jupyter": 8888, "ssh": 2222},
        keys_file=keys,
        mounts=[],
        base=BASE,
        torchrig_files=TORCHRIG_FILES,
    )
    return plan(spec, host, load_compat(), None, local, target=cuda_target())


def test_run_plan_has_the_secure_defaults(tmp_path: Path) -> None:
    run = _workbench(tmp_path).run
    assert all(p.host_ip == "127.0.0.1" for p in run.ports)
    assert run.security_opt == ("no-new-privileges:true",)
    assert run.cap_drop == ("ALL",) and "SYS_ADMIN" not in run.cap_add
    assert run.pids_limit and run.stop_timeout and run.stop_timeout >= 60
    assert run.ulimits == {"memlock": -1, "stack": 67108864}
    assert run.shm_size == "64g"  # a quarter of 512 GiB, capped at 64g
    assert run.gpus == "all"
    assert run.env["TORCHRIG_UID"] == "4242" and run.env["TORCHRIG_USER"] == "alice"
    assert not any("TOKEN" in k for k in run.env), "no secret in plain env"
    mounts = {m.target: m for m in run.mounts}
    assert mounts["/workspace"].kind == "bind"
    assert mounts["/home/alice"].kind == "volume"
    assert mounts["/run/torchrig/authorized_keys"].read_only


def test_root_on_the_host_never_means_root_in_the_workbench() -> None:
    spec = parse_spec(DEMO_SPEC)
    who = identity(spec, CPU_HOST)
    assert (who.name, who.uid, who.gid) == ("rig", ROOT_DEFAULT_ID, ROOT_DEFAULT_ID)
    assert ROOT_DEFAULT_ID == 70000, "docs/workbench.md names it"


def test_spec_identity_wins() -> None:
    spec = parse_spec(DEMO_SPEC + '[user]\nname = "bob"\nuid = 5001\ngid = 5002\n')
    who = identity(spec, GPU_HOST)
    assert (who.name, who.uid, who.gid) == ("bob", 5001, 5002)


@pytest.mark.parametrize(
    ("gpus", "expected"), [('"all"', "all"), ("1", 1), ('["1"]', ("1",)), ('"none"', None)]
)
def test_gpu_selection(gpus: str, expected: object) -> None:
    spec = parse_spec(DEMO_SPEC + f"[resources]\ngpus = {gpus}\n")
    assert gpu_selector(spec, resolve(spec, GPU_HOST, load_compat()), GPU_HOST) == expected


def test_gpus_without_toolkit_are_refused_with_the_fix() -> None:
    host = GPU_HOST.model_copy(
        update={"engines": [Engine(name="docker", path="/usr/bin/docker", reachable=True)]}
    )
    with pytest.raises(HostError) as caught:
        check_gpu_runtime("all", "docker", host)
    assert "nvidia-ctk runtime configure" in caught.value.one_line()
    with pytest.raises(HostError) as caught:
        check_gpu_runtime("all", "podman", host)
    assert "cdi generate" in caught.value.one_line()


def test_taken_port_moves_to_the_next_free_one() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        spec = parse_spec(DEMO_SPEC + f"[services.jupyter]\nport = {port}\n")
        chosen = choose_ports(spec)
    assert chosen["jupyter"] != port and chosen["jupyter"] > port


def test_missing_workspace_and_env_file_are_usage_errors(tmp_path: Path) -> None:
    from torchrig.launch.local import local_facts

    spec = parse_spec(DEMO_SPEC)
    (tmp_path / "torchrig.toml").write_text(DEMO_SPEC)
    compat = load_compat()
    session = Session(
        tmp_path / "torchrig.toml",
        spec,
        spec_digest(spec),
        GPU_HOST,
        compat,
        resolve(spec, GPU_HOST, compat),
    )
    with pytest.raises(UsageError, match="does not exist"):
        check_workspace(tmp_path / "nope")
    with pytest.raises(UsageError, match="does not exist"):
        local_facts(session, workspace=tmp_path / "nope", image_files=False)
    with pytest.raises(UsageError, match="env file"):
        local_facts(session, env_file=tmp_path / "missing.env", image_files=False)


def test_stale_or_missing_lock_is_refused_before_building() -> None:
    spec = parse_spec(DEMO_SPEC)
    with pytest.raises(UsageError, match=r"no torchrig\.lock"):
        locked_target(spec, load_compat(), None, "cu130")
    stale = LockFile(torchrig="0.1.0", spec_digest="", targets=[])
    with pytest.raises(UsageError, match="targets"):
        locked_target(spec, load_compat(), stale, "cu130")


def test_authorized_keys_from_spec_lines_paths_and_home(tmp_path: Path) -> None:
    pub = tmp_path / "k.pub"
    pub.write_text("ssh-ed25519 BBBB from-file\n")
    spec = parse_spec(DEMO_SPEC + f'[user]\nauthorized_keys = ["ssh-rsa AAAA line", "{pub}"]\n')
    assert authorized_keys(spec) == "ssh-rsa AAAA line\nssh-ed25519 BBBB from-file\n"
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519.pub").write_text("ssh-ed25519 CCCC home\n")
    assert authorized_keys(parse_spec(DEMO_SPEC), home=home) == "ssh-ed25519 CCCC home\n"
