"""`torchrig serve` in the workbench: [services.serve] locks the server's packages and has `up`
publish its port on 127.0.0.1 through the Plan; `torchrig run serve RUN` starts it as a job
on that port; left off, nothing about the workbench moves (no port, no package, same digest)."""

from __future__ import annotations

import argparse

import pytest

from tests.plan_inputs import BASE, DEMO_SPEC, TORCHRIG_FILES, cpu_target
from tests.unit.test_plan_targets import CPU_HOST, KEYS, WORKSPACE
from torchrig.cli import run as run_cli
from torchrig.compat.model import load_compat
from torchrig.engine.base import Port
from torchrig.errors import UsageError
from torchrig.launch.compose import render_compose
from torchrig.lock.inputs import stack_packages
from torchrig.plan.plan import Local, Plan, plan
from torchrig.serve.image import render_serving_dockerfile
from torchrig.spec.load import parse_spec, spec_digest

CPU = DEMO_SPEC + 'variant = "cpu"\n'
SERVE_ON = CPU + "[services.serve]\nenabled = true\n"


def _plan(text: str, ports: dict[str, int] | None = None) -> Plan:
    local = Local(
        project_dir=WORKSPACE, workspace=WORKSPACE, mounts=[], keys_file=KEYS, env_file=None,
        base=BASE, torchrig_files=TORCHRIG_FILES, ports=ports,
    )  # fmt: skip
    return plan(parse_spec(text), CPU_HOST, load_compat(), None, local, target=cpu_target())


def test_serve_on_publishes_its_port_on_loopback_through_the_plan() -> None:
    the_plan = _plan(SERVE_ON)
    assert Port("127.0.0.1", 8000, 8000) in the_plan.run.ports
    assert the_plan.up.ports["serve"] == "127.0.0.1:8000"
    # A job listens there, not the entrypoint: TORCHRIG_SERVICES does not name it.
    assert "serve" not in the_plan.run.env["TORCHRIG_SERVICES"].split(",")
    assert "127.0.0.1:8000:8000" in render_compose(the_plan)


def test_the_host_port_up_chose_is_the_one_published() -> None:
    the_plan = _plan(SERVE_ON + "port = 8123\n", ports={"jupyter": 8888, "serve": 8124})
    assert Port("127.0.0.1", 8124, 8000) in the_plan.run.ports


def test_serve_on_locks_the_server_packages() -> None:
    names = [p.split(">")[0].split("=")[0] for p in stack_packages(parse_spec(SERVE_ON))]
    # The server, and what loads the models (the minimal stack has no transformers).
    assert {"fastapi", "uvicorn", "prometheus-client", "transformers", "safetensors"} <= set(names)


def test_serve_off_moves_nothing() -> None:
    the_plan = _plan(CPU)
    assert all(p.container_port != 8000 for p in the_plan.run.ports)
    assert "serve" not in the_plan.up.ports
    packages = stack_packages(parse_spec(CPU))
    assert not any(p.startswith(("fastapi", "uvicorn")) for p in packages)
    # Off at its default, the section is not in the digest: locks made before it stay fresh
    # (tests/golden/lock's digest did not move either).
    explicit_off = parse_spec(CPU + "[services.serve]\nenabled = false\n")
    assert spec_digest(explicit_off) == spec_digest(parse_spec(CPU))
    assert spec_digest(parse_spec(SERVE_ON)) != spec_digest(parse_spec(CPU))


def test_run_serve_starts_the_server_on_the_published_container_port() -> None:
    parser = argparse.ArgumentParser()
    run_cli.add_arguments(parser)
    request = run_cli.job_request(parser.parse_args(["serve", "runs/lm", "--max-tokens", "64"]))
    assert request.name == "serve"
    command = list(request.command)
    assert command[:4] == ["python", "-m", "torchrig.cli.main", "serve"]
    assert command[command.index("--port") + 1] == "8000"
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert command[-3:] == ["runs/lm", "--max-tokens", "64"]


def test_the_serving_image_needs_serve_on_and_says_so() -> None:
    with pytest.raises(UsageError, match="which torchrig serve needs") as caught:
        render_serving_dockerfile(_plan(CPU))
    assert "[services.serve]" in (caught.value.fix or "")
