"""Host checks, one test (or a few cases) per check, on recorded facts and variations of them.

The recorded machines are tests/fixtures/host/h100-sxm/host.json (H100, driver 580.159.04,
no engine) and cpu-only.json (no GPU, Docker without the NVIDIA runtime). Each variation
below changes one thing, so the test says which fact leads to which verdict.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from torchrig.compat.model import load_compat
from torchrig.compat.resolve import resolve
from torchrig.doctor import host as doctor
from torchrig.doctor.host import HOST_CHECKS, HostContext, host_context, target_build
from torchrig.doctor.model import Check, check_id, run_checks
from torchrig.errors import SpecError, UsageError
from torchrig.host.facts import Driver, Engine, Gpu, HostFacts, load_host_facts
from torchrig.lock.inputs import lock_inputs
from torchrig.lock.lockfile import LockFile, Target
from torchrig.lock.uv import LockedPackage
from torchrig.spec.load import parse_spec, spec_digest
from torchrig.spec.model import Spec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "host"
H100 = load_host_facts(FIXTURES / "h100-sxm" / "host.json")
CPU = load_host_facts(FIXTURES / "cpu-only.json")
COMPAT = load_compat()
GIB = 2**30

DOCKER = Engine(
    name="docker",
    path="/usr/bin/docker",
    client_version="28.2.2",
    server_version="28.2.2",
    reachable=True,
    rootless=False,
    storage_path="/var/lib/docker",
    storage_free_bytes=200 * GIB,
)
PODMAN = Engine(
    name="podman",
    path="/usr/bin/podman",
    client_version="5.4.2",
    server_version="5.4.2",
    reachable=True,
    rootless=True,
    storage_path="/home/u/.local/share/containers/storage",
    storage_free_bytes=200 * GIB,
)


def spec(body: str = "") -> Spec:
    return parse_spec('[project]\nname = "t"\n' + body)


def gpu_host(
    name: str = "NVIDIA H100 80GB HBM3",
    cc: str | None = "9.0",
    driver: str = "580.159.04",
    *,
    count: int = 1,
    engines: list[Engine] | None = None,
    mig: bool = False,
) -> HostFacts:
    """The recorded H100 machine with its GPU(s), driver or engines swapped."""
    gpus = [
        Gpu(index=i, name=name, cc=cc, uuid=f"GPU-{i}f42dc1e", mig=mig and i == count - 1)
        for i in range(count)
    ]
    return H100.model_copy(
        update={
            "driver": Driver(version=driver, cuda="13.0"),
            "gpus": gpus,
            "engines": engines if engines is not None else [DOCKER.model_copy()],
        }
    )


def ctx(host: HostFacts, body: str | None = "", **fields: Any) -> HostContext:
    """A context as `host_context` builds it, from a spec body (None: no spec)."""
    s = spec(body) if body is not None else None
    res, error = target_build(s, host, COMPAT) if s is not None else (None, None)
    fields.setdefault("env", {})
    return HostContext(
        host=host, compat=COMPAT, spec=s, resolution=res, resolution_error=error, **fields
    )


def engine(**changes: Any) -> Engine:
    return DOCKER.model_copy(update=changes)


# --- the list itself ------------------------------------------------------------------------


def test_every_check_is_registered_once_with_its_own_id() -> None:
    ids = [check_id(c) for c in HOST_CHECKS]
    assert len(ids) == len(set(ids))
    results = run_checks(HOST_CHECKS, ctx(gpu_host()))
    assert [r.id for r in results] == ids  # a check's id is its function's name


def test_a_crashing_check_is_a_warning_not_a_crash() -> None:
    def check_broken(_: HostContext) -> Check:
        raise KeyError("oops")

    [result] = run_checks([check_broken], ctx(gpu_host()))
    assert (result.id, result.status) == ("broken", "warn")
    assert "KeyError" in result.finding and "--debug" in result.fix


def test_the_recorded_h100_passes_its_gpu_checks() -> None:
    results = {r.id: r for r in run_checks(HOST_CHECKS, ctx(H100, live=False))}
    for name in ("driver", "build", "driver-cuda", "gpu-arch", "mig", "shm", "memlock"):
        assert results[name].status == "pass", results[name]
    assert results["engine"].status == "fail"  # recorded with neither docker nor podman
    assert results["ports"].status == "skip" and results["workspace"].status == "skip"


# --- driver ---------------------------------------------------------------------------------


def test_driver_present_names_version_and_gpus() -> None:
    result = doctor.check_driver(ctx(H100))
    assert result.status == "pass"
    assert "580.159.04" in result.finding and "CUDA up to 13.0" in result.finding
    assert "NVIDIA H100 80GB HBM3" in result.finding


def test_no_driver_warns_the_workbench_is_cpu_only() -> None:
    result = doctor.check_driver(ctx(CPU))
    assert result.status == "warn"
    assert "No NVIDIA GPU found" in result.finding and "CPU-only" in result.finding
    assert "nvidia-smi" in result.fix and 'resources.gpus = "none"' in result.fix


def test_no_driver_is_fine_when_the_spec_asks_for_no_gpu() -> None:
    assert doctor.check_driver(ctx(CPU, '[resources]\ngpus = "none"\n')).status == "pass"


def test_no_driver_fails_when_the_spec_asks_for_a_cuda_build() -> None:
    result = doctor.check_driver(ctx(CPU, '[torch]\nvariant = "cu130"\n'))
    assert result.status == "fail"
    assert "cu130" in result.finding and "--host FILE" in result.fix


def test_driver_without_gpus_warns() -> None:
    host = H100.model_copy(update={"gpus": []})
    result = doctor.check_driver(ctx(host))
    assert result.status == "warn" and "lists no GPU" in result.finding


# --- build ----------------------------------------------------------------------------------


def test_build_names_the_chosen_build() -> None:
    result = doctor.check_build(ctx(gpu_host()))
    assert result.status == "pass"
    assert result.finding.startswith("torch 2.15.0 cu130 (CUDA 13.0")


def test_build_fails_with_the_resolvers_reason() -> None:
    result = doctor.check_build(
        ctx(gpu_host("Tesla V100-SXM2-32GB", "7.0"), '[torch]\nversion = "2.15"\n')
    )
    assert result.status == "fail"
    assert "no PyTorch build fits" in result.finding and "sm_70" in result.finding


def test_build_fails_on_a_broken_spec() -> None:
    broken = SpecError("no such file", "run `torchrig init`", path="torchrig.toml")
    result = doctor.check_build(HostContext(host=H100, compat=COMPAT, spec_error=broken))
    assert result.status == "fail" and "no such file" in result.finding
    assert result.fix == "run `torchrig init`"


# --- driver vs the build's CUDA ---------------------------------------------------------------


def test_driver_535_with_a_cu130_resolution_fails() -> None:
    pinned = spec('[torch]\nversion = "2.13.0"\nvariant = "cu130"\n')
    cu130 = resolve(pinned, gpu_host(), COMPAT)  # resolved where it fits …
    old = gpu_host(driver="535.183.01")  # … checked on a machine where it does not
    context = HostContext(host=old, compat=COMPAT, spec=pinned, resolution=cu130)
    result = doctor.check_driver_cuda(context)
    assert result.status == "fail"
    assert "CUDA 13.0.3, which needs driver >= 580" in result.finding
    assert "this host has 535.183.01" in result.finding
    assert "update the NVIDIA driver to >= 580.95.05" in result.fix
    assert 'torch.variant = "auto"' in result.fix and "cu126 runs on this host" in result.fix
    assert result.source.startswith("S22")


def test_a_pinned_cu130_on_driver_535_is_explained_even_though_nothing_resolves() -> None:
    context = ctx(gpu_host(driver="535.183.01"), '[torch]\nvariant = "cu130"\n')
    assert context.resolution_error is not None  # resolve() refuses it …
    assert context.resolution is not None and context.resolution.variant == "cu130"
    assert doctor.check_driver_cuda(context).status == "fail"  # … and doctor says why


def test_driver_below_the_toolkits_own_minimum_warns_about_ptx_jit() -> None:
    context = ctx(gpu_host(driver="580.65.06"), '[torch]\nversion = "2.13.0"\nvariant = "cu130"\n')
    result = doctor.check_driver_cuda(context)
    assert result.status == "warn"
    assert "minor-version compatibility" in result.finding
    assert "cudaErrorUnsupportedPtxVersion" in result.finding
    assert ">= 580.95.05" in result.fix


def test_new_enough_driver_passes_and_cpu_builds_skip() -> None:
    assert doctor.check_driver_cuda(ctx(gpu_host())).status == "pass"
    assert doctor.check_driver_cuda(ctx(CPU)).status == "skip"


# --- GPU kernels in the build -----------------------------------------------------------------


def test_v100_with_torch_2_15_has_no_kernels() -> None:
    context = ctx(gpu_host("Tesla V100-SXM2-32GB", "7.0"), '[torch]\nversion = "2.15"\n')
    result = doctor.check_gpu_arch(context)
    assert result.status == "fail"
    assert "Tesla V100-SXM2-32GB (sm_70) has no kernels in torch 2.15.0" in result.finding
    assert "sm_75 … sm_120" in result.finding
    assert "torch 2.14.1 cu126 runs on this host" in result.fix


def test_rtx_5090_with_torch_2_6_has_no_kernels() -> None:
    context = ctx(gpu_host("NVIDIA GeForce RTX 5090", "12.0"), '[torch]\nversion = "2.6"\n')
    result = doctor.check_gpu_arch(context)
    assert result.status == "fail"
    assert "(sm_120) has no kernels in torch 2.6.0 cu124" in result.finding
    assert "sm_50 … sm_90" in result.finding
    assert "serves sm_120" in result.fix


def test_gpu_served_by_a_lower_minor_passes() -> None:
    result = doctor.check_gpu_arch(ctx(gpu_host("NVIDIA L40S", "8.9")))
    # Ada (8.9) runs Ampere SASS of the same major; which entry is named is the resolver's.
    assert result.status == "pass" and "(sm_89) runs sm_8" in result.finding


def test_compute_capability_from_the_gpu_table_or_unknown() -> None:
    by_name = doctor.check_gpu_arch(
        ctx(gpu_host("Tesla V100-SXM2-32GB", None), '[torch]\nversion = "2.14"\n')
    )
    assert by_name.status == "pass" and "sm_70" in by_name.finding
    unknown = doctor.check_gpu_arch(ctx(gpu_host("Mystery GPU 9000", None)))
    assert unknown.status == "warn" and "compute capability unknown" in unknown.finding


def test_a_cpu_build_on_a_gpu_host() -> None:
    asked = doctor.check_gpu_arch(ctx(gpu_host(), '[torch]\nvariant = "cpu"\n'))
    assert asked.status == "pass" and "as the spec asks" in asked.finding
    assert doctor.check_gpu_arch(ctx(CPU)).status == "skip"


# --- MIG and CUDA_VISIBLE_DEVICES -------------------------------------------------------------


def test_mig_on_warns_to_select_by_mig_uuid() -> None:
    result = doctor.check_mig(ctx(gpu_host(count=2, mig=True)))
    assert result.status == "warn"
    assert "MIG mode is on for GPU 1" in result.finding
    assert "nvidia-smi -L" in result.fix and 'resources.gpus = ["MIG-…"]' in result.fix


def test_mig_off_and_no_gpu() -> None:
    assert doctor.check_mig(ctx(gpu_host(count=2))).status == "pass"
    assert doctor.check_mig(ctx(CPU)).status == "skip"


@pytest.mark.parametrize(
    ("value", "status", "fragment"),
    [
        (None, "pass", "not set"),
        ("0,1", "pass", "names GPUs"),
        ("GPU-1f42", "pass", "names GPUs"),
        ("", "warn", "set but empty"),
        ("0,3", "warn", "names GPU 3, but there are 2"),
        ("GPU-deadbeef", "warn", "no GPU here"),
        ("first", "warn", "neither an index nor a UUID"),
    ],
)
def test_cuda_visible_devices(value: str | None, status: str, fragment: str) -> None:
    env = {} if value is None else {"CUDA_VISIBLE_DEVICES": value}
    result = doctor.check_cuda_visible_devices(ctx(gpu_host(count=2), env=env))
    assert result.status == status and fragment in result.finding
    if status == "warn":
        assert "unset CUDA_VISIBLE_DEVICES" in result.fix


def test_cuda_visible_devices_is_moot_for_saved_facts() -> None:
    context = ctx(gpu_host(), env={"CUDA_VISIBLE_DEVICES": ""}, live=False)
    assert doctor.check_cuda_visible_devices(context).status == "skip"


# --- engine and toolkit -----------------------------------------------------------------------


def test_engine_that_answers_passes() -> None:
    result = doctor.check_engine(ctx(CPU))
    assert result.status == "pass"
    assert result.finding == "docker 20.10.24+dfsg1 answers, rootful"


def test_no_engine_fails_with_the_install_command() -> None:
    result = doctor.check_engine(ctx(H100))
    assert result.status == "fail"
    assert "no container engine" in result.finding and "not installed" in result.finding
    assert "apt-get install docker.io" in result.fix and "podman" in result.fix


def test_docker_socket_permission_names_usermod() -> None:
    error = (
        "permission denied while trying to connect to the Docker daemon socket at "
        "unix:///var/run/docker.sock: Get ...: connect: permission denied"
    )
    host = gpu_host(engines=[engine(reachable=False, error=error, server_version="")])
    result = doctor.check_engine(ctx(host))
    assert result.status == "fail" and "may not use it" in result.finding
    assert "usermod -aG docker $USER" in result.fix


def test_docker_daemon_down_and_podman_broken() -> None:
    down = gpu_host(engines=[engine(reachable=False, error="Cannot connect to the Docker daemon")])
    assert "systemctl start docker" in doctor.check_engine(ctx(down)).fix
    broken = PODMAN.model_copy(update={"reachable": False, "error": "cannot re-exec process"})
    result = doctor.check_engine(ctx(gpu_host(engines=[broken]), engine="podman"))
    assert result.status == "fail" and "podman info" in result.fix


def test_an_asked_for_engine_that_is_missing() -> None:
    result = doctor.check_engine(ctx(gpu_host(), engine="podman"))
    assert result.status == "fail" and "podman is not installed" in result.finding


def test_docker_without_nvidia_runtime_fails_with_nvidia_ctk() -> None:
    result = doctor.check_container_toolkit(ctx(gpu_host()))
    assert result.status == "fail"
    assert 'could not select device driver "" with capabilities: [[gpu]]' in result.finding
    assert "nvidia-ctk runtime configure --runtime=docker" in result.fix
    assert "systemctl restart docker" in result.fix


@pytest.mark.parametrize(
    "docker",
    [engine(nvidia_runtime=True), engine(cdi_devices=["nvidia.com/gpu=0", "nvidia.com/gpu=all"])],
)
def test_docker_with_runtime_or_cdi_passes(docker: Engine) -> None:
    assert doctor.check_container_toolkit(ctx(gpu_host(engines=[docker]))).status == "pass"


def test_podman_without_cdi_fails_with_cdi_generate() -> None:
    result = doctor.check_container_toolkit(ctx(gpu_host(engines=[PODMAN.model_copy()])))
    assert result.status == "fail"
    assert "nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml" in result.fix


def test_podman_with_cdi_passes() -> None:
    podman = PODMAN.model_copy(update={"cdi_devices": ["nvidia.com/gpu=all"]})
    assert doctor.check_container_toolkit(ctx(gpu_host(engines=[podman]))).status == "pass"


def test_snap_docker_cannot_be_configured() -> None:
    snap = engine(path="/snap/bin/docker")
    result = doctor.check_container_toolkit(ctx(gpu_host(engines=[snap])))
    assert result.status == "fail" and "snap" in result.finding


def test_toolkit_is_not_needed_without_gpus() -> None:
    assert doctor.check_container_toolkit(ctx(CPU)).status == "skip"
    no_gpu = ctx(gpu_host(), '[resources]\ngpus = "none"\n')
    assert doctor.check_container_toolkit(no_gpu).status == "skip"


# --- disk, shm, memlock -----------------------------------------------------------------------


@pytest.mark.parametrize(("free_gib", "status"), [(5, "fail"), (15, "warn"), (60, "pass")])
def test_disk_thresholds_for_a_cuda_build_without_lock(free_gib: int, status: str) -> None:
    host = gpu_host(engines=[engine(storage_free_bytes=free_gib * GIB)])
    result = doctor.check_disk(ctx(host))
    assert result.status == status
    assert "2.5 × 4.5 GiB to download, estimated for a CUDA build" in result.finding
    if status != "pass":
        assert "docker system prune" in result.fix


def test_disk_uses_the_locks_download_size() -> None:
    body = '[torch]\nversion = "2.13.0"\n'
    host = gpu_host(engines=[engine(storage_free_bytes=20 * GIB)])
    context = ctx(host, body)
    assert context.resolution is not None
    lock = _lock(spec(body), context.resolution.variant, sizes=[8 * GIB, 1 * GIB])
    with_lock = HostContext(**{**context.__dict__, "lock": lock})
    result = doctor.check_disk(with_lock)
    assert result.status == "fail"  # 2.5 × 9 GiB = 22.5 GiB > 20 GiB free
    assert (
        "needs about 22.5 GiB" in result.finding and "from torchrig.lock (cu130)" in result.finding
    )


def test_disk_unknown_is_skipped() -> None:
    host = gpu_host(engines=[engine(storage_free_bytes=None)])
    assert doctor.check_disk(ctx(host)).status == "skip"


def test_shm_of_64_mb_warns_that_the_workbench_gets_its_own() -> None:
    small = CPU.model_copy(update={"system": CPU.system.model_copy(update={"shm_bytes": 64 << 20})})
    result = doctor.check_shm(ctx(small))
    assert result.status == "warn"
    assert "64 MiB" in result.finding and "--shm-size=5g" in result.finding
    assert "--shm-size=8g" in result.fix
    assert doctor.check_shm(ctx(CPU)).status == "pass"


def test_memlock_limited_under_rootless_podman_warns() -> None:
    host = gpu_host(engines=[PODMAN.model_copy(update={"cdi_devices": ["nvidia.com/gpu=all"]})])
    limited = host.model_copy(
        update={"system": host.system.model_copy(update={"memlock_bytes": 8 << 20, "user": "u"})}
    )
    result = doctor.check_memlock(ctx(limited))
    assert result.status == "warn" and "rootless" in result.finding
    assert "u - memlock unlimited" in result.fix
    assert doctor.check_memlock(ctx(CPU)).status == "pass"  # rootful Docker raises it
    assert doctor.check_memlock(ctx(H100)).status == "pass"  # unlimited


# --- ports and workspace ----------------------------------------------------------------------


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        yield listener.getsockname()[1]


def test_a_busy_port_warns_and_names_the_next_free_one(busy_port: int) -> None:
    body = f"[services.jupyter]\nport = {busy_port}\n[services.ssh]\nenabled = false\n"
    # Only the port under test: the metrics port (9400) may be held on a busy host.
    body += "[services.metrics]\nenabled = false\n"
    result = doctor.check_ports(ctx(gpu_host(), body))
    assert result.status == "warn"
    assert f"127.0.0.1:{busy_port} (jupyter) in use" in result.finding
    assert f"sport = :{busy_port}" in result.fix and "services.jupyter.port" in result.fix


def test_free_ports_pass_and_saved_facts_skip(busy_port: int) -> None:
    free = busy_port + 1 if busy_port < 65000 else busy_port - 1
    body = f"[services.jupyter]\nport = {free}\n[services.ssh]\nenabled = false\n"
    # Only the port under test: the metrics port (9400) may be held on a busy host.
    body += "[services.metrics]\nenabled = false\n"
    result = doctor.check_ports(ctx(gpu_host(), body))
    assert result.status == "pass" or "in use" in result.finding  # another test may hold it
    assert doctor.check_ports(ctx(gpu_host(), body, live=False)).status == "skip"


def _as_user(host: HostFacts, uid: int) -> HostFacts:
    system = host.system.model_copy(update={"uid": uid, "gid": uid, "user": "alice"})
    return host.model_copy(update={"system": system})


def test_unwritable_workspace_warns_with_chown(tmp_path: Path) -> None:
    workspace = tmp_path / "proj"
    workspace.mkdir(mode=0o755)
    owner = workspace.stat().st_uid
    other = owner + 1 if owner else 4242  # never 0: the workbench is never root
    result = doctor.check_workspace(ctx(_as_user(H100, other), workspace=workspace))
    assert result.status == "warn"
    assert f"not writable by the workbench user alice (uid {other}" in result.finding
    assert f"sudo chown -R {other}:{other} {workspace}" in result.fix


def test_workspace_owned_by_the_workbench_user_passes(tmp_path: Path) -> None:
    workspace = tmp_path / "proj"
    workspace.mkdir(mode=0o755)
    uid = os.getuid() or 4242
    if os.getuid() == 0:
        os.chown(workspace, uid, uid)
    result = doctor.check_workspace(ctx(_as_user(H100, uid), workspace=workspace))
    assert result.status == "pass" and f"uid {uid}" in result.finding


def test_missing_workspace_fails(tmp_path: Path) -> None:
    result = doctor.check_workspace(ctx(H100, workspace=tmp_path / "gone"))
    assert result.status == "fail" and "mkdir -p" in result.fix


def test_writable_by_reads_owner_group_and_other_bits(tmp_path: Path) -> None:
    st = tmp_path.stat()
    fake = os.stat_result((0o40750, 0, 0, 0, 100, 200, 0, 0, 0, 0))
    assert doctor.writable_by(fake, 100, 1) and not doctor.writable_by(fake, 101, 200)
    assert doctor.writable_by(fake, 0, 0)  # root
    assert doctor.writable_by(st, st.st_uid, st.st_gid) == bool(st.st_mode & 0o200)


# --- lock -------------------------------------------------------------------------------------


def _pkg(name: str, size: int) -> LockedPackage:
    return LockedPackage(
        name=name,
        version="1.0",
        index="https://pypi.org/simple",
        file=f"{name}-1.0-py3-none-any.whl",
        url=f"https://files.example/{name}.whl",
        size=size,
        sha256=hashlib.sha256(name.encode()).hexdigest(),
    )


def _lock(s: Spec, variant: str, sizes: list[int]) -> LockFile:
    inputs = lock_inputs(s, python="3.12", platform="x86_64-manylinux_2_39")
    target = Target(
        variant=variant,
        torch="2.13.0",
        cuda="13.0.3",
        python="3.12",
        platform="x86_64-manylinux_2_39",
        torch_index="https://pypi.org/simple",
        inputs_digest=inputs.digest(),
        requirements=["torch==2.13.0"],
        packages=[_pkg(f"p{i}", size) for i, size in enumerate(sizes)],
    )
    return LockFile(torchrig="0.1.0", spec_digest=spec_digest(s), targets=[target])


def test_lock_states(tmp_path: Path) -> None:
    body = '[torch]\nversion = "2.13.0"\n'
    base = ctx(gpu_host(), body, lock_path=tmp_path / "torchrig.lock")
    assert base.resolution is not None and base.resolution.variant == "cu130"
    fields = base.__dict__
    assert doctor.check_lock(base).status == "pass"  # none yet: up makes it
    fresh = HostContext(**{**fields, "lock": _lock(spec(body), "cu130", [GIB])})
    assert doctor.check_lock(fresh).status == "pass"
    other = HostContext(**{**fields, "lock": _lock(spec(body), "cu126", [GIB])})
    result = doctor.check_lock(other)
    assert result.status == "fail" and "torchrig lock --variant cu130" in result.fix
    older = _lock(spec(body + '[python]\npackages = ["peft"]\n'), "cu130", [GIB])
    stale = doctor.check_lock(HostContext(**{**fields, "lock": older}))
    assert stale.status == "fail" and "packages or sources changed" in stale.finding
    broken = HostContext(**{**fields, "lock_error": UsageError("bad lock", "run `torchrig lock`")})
    assert doctor.check_lock(broken).status == "fail"
    assert doctor.check_lock(ctx(gpu_host(), body)).status == "skip"  # no spec file


# --- context from files -----------------------------------------------------------------------


def test_host_context_uses_defaults_without_a_spec(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    context = host_context(H100, spec_path=None, live=False)
    assert context.spec is not None and context.spec_note
    assert context.lock_path is None and context.workspace == tmp_path.resolve()
    assert doctor.check_build(context).status == "pass"


def test_host_context_reads_spec_and_lock(tmp_path: Path) -> None:
    path = tmp_path / "torchrig.toml"
    path.write_text('[project]\nname = "t"\n')
    (tmp_path / "torchrig.lock").write_text("not a lock")
    context = host_context(H100, spec_path=path, env={})
    assert context.spec is not None and context.spec_error is None
    assert context.lock_error is not None
    assert doctor.check_lock(context).status == "fail"


def test_host_context_keeps_a_missing_explicit_spec_as_a_finding(tmp_path: Path) -> None:
    context = host_context(H100, spec_path=tmp_path / "nope.toml", env={})
    result = doctor.check_build(context)
    assert result.status == "fail" and "no such file" in result.finding
