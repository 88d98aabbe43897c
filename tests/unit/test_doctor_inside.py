"""In-container checks, with a stand-in `torch` for the GPU cases and the real CPU torch when
it is installed (the CPU test image's situation: torch present, no GPU)."""

from __future__ import annotations

import http.server
import json
import os
import socket
import stat
import threading
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from torchrig.doctor import inside
from torchrig.doctor.inside import INSIDE_CHECKS, InsideContext, expected_devices
from torchrig.doctor.model import check_id, run_checks

PTXAS = Path(__file__).resolve().parents[1] / "fixtures" / "doctor" / "ptxas"
H100 = ("NVIDIA H100 80GB HBM3", (9, 0))
B200 = ("NVIDIA B200", (10, 0))
V100 = ("Tesla V100-SXM2-32GB", (7, 0))
L4 = ("NVIDIA L4", (8, 9))
CU130_ARCHS = ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120")


def fake_torch(
    *devices: tuple[str, tuple[int, int]],
    cuda: str | None = "13.0",
    available: bool | None = None,
    archs: tuple[str, ...] = CU130_ARCHS,
    nccl: Any = (2, 29, 7),
    says: str = "",
) -> types.ModuleType:
    """A module shaped like torch where doctor looks: version, cuda.*, cuda.nccl.version()."""
    visible = bool(devices) if available is None else available

    def is_available() -> bool:
        if says:
            warnings.warn(says, UserWarning, stacklevel=1)
        return visible

    def nccl_version() -> Any:
        if isinstance(nccl, Exception):
            raise nccl
        return nccl

    torch = types.ModuleType("torch")
    torch.__version__ = f"2.13.0+{'cu' + cuda.replace('.', '') if cuda else 'cpu'}"  # type: ignore[attr-defined]
    torch.version = types.SimpleNamespace(cuda=cuda)  # type: ignore[attr-defined]
    torch.cuda = types.SimpleNamespace(  # type: ignore[attr-defined]
        is_available=is_available,
        device_count=lambda: len(devices) if visible else 0,
        get_device_capability=lambda i: devices[i][1],
        get_device_name=lambda i: devices[i][0],
        get_arch_list=lambda: list(archs) if cuda else [],
        nccl=types.SimpleNamespace(version=nccl_version),
    )
    return torch


def ctx(torch: Any = None, **fields: Any) -> InsideContext:
    fields.setdefault("env", {})
    fields.setdefault("nvidiactl", torch is not None and bool(torch.cuda.device_count()))
    return InsideContext(torch=torch, **fields)


# --- the list itself ------------------------------------------------------------------------


def test_every_check_is_registered_once_and_runs_without_a_gpu() -> None:
    ids = [check_id(c) for c in INSIDE_CHECKS]
    assert len(ids) == len(set(ids))
    results = run_checks(INSIDE_CHECKS, ctx(fake_torch(cuda=None)))
    assert [r.id for r in results] == ids
    assert all(r.status in ("pass", "warn", "fail", "skip") for r in results)
    assert not any("could not run" in r.finding for r in results)


def test_every_check_runs_without_torch() -> None:
    results = run_checks(INSIDE_CHECKS, ctx(None, torch_error="ModuleNotFoundError: torch"))
    assert results[0].status == "fail" and "torchrig doctor --inside" in results[0].fix
    assert not any("could not run" in r.finding for r in results)


# --- torch and CUDA ---------------------------------------------------------------------------


def test_torch_imports() -> None:
    assert inside.check_torch(ctx(fake_torch(H100))).finding == "torch 2.13.0+cu130"
    missing = inside.check_torch(
        ctx(None, torch_error="ModuleNotFoundError: No module named 'torch'")
    )
    assert missing.status == "fail" and "No module named 'torch'" in missing.finding


def test_cpu_only_build_fails() -> None:
    result = inside.check_cuda_build(ctx(fake_torch(cuda=None)))
    assert result.status == "fail" and "torch.version.cuda is None" in result.finding
    assert 'torch.variant = "auto"' in result.fix
    assert inside.check_cuda_build(ctx(fake_torch(H100))).status == "pass"


def test_no_gpu_passed_in_names_gpus_flag() -> None:
    says = "CUDA initialization: CUDA driver initialization failed, you might not have a CUDA gpu."
    result = inside.check_cuda_available(ctx(fake_torch(says=says), nvidiactl=False))
    assert result.status == "fail"
    assert result.finding.startswith("no CUDA GPU visible: torch.cuda.is_available() is False")
    assert says in result.finding
    assert "--gpus all" in result.fix and "nvidia.com/gpu=all" in result.fix


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"CUDA_VISIBLE_DEVICES": ""}, "`unset CUDA_VISIBLE_DEVICES`"),
        ({"NVIDIA_VISIBLE_DEVICES": "void"}, "NVIDIA_VISIBLE_DEVICES='void' passes no GPU"),
        ({"NVIDIA_DRIVER_CAPABILITIES": "utility"}, "compute,utility"),
    ],
)
def test_no_gpu_names_the_variable_that_hides_it(env: dict[str, str], fragment: str) -> None:
    result = inside.check_cuda_available(
        ctx(fake_torch(H100, available=False), env=env, nvidiactl=True, gpu_nodes=1)
    )
    assert result.status == "fail" and fragment in result.fix


def test_cpu_build_is_named_as_a_cause() -> None:
    result = inside.check_cuda_available(ctx(fake_torch(cuda=None), nvidiactl=True))
    assert result.status == "fail" and "CPU-only build" in result.fix


def test_visible_gpu_passes() -> None:
    result = inside.check_cuda_available(ctx(fake_torch(H100, H100)))
    assert result.status == "pass" and "2 device(s)" in result.finding


@pytest.mark.parametrize(
    ("env", "nodes", "devices", "status"),
    [
        ({}, 2, 2, "pass"),
        ({"NVIDIA_VISIBLE_DEVICES": "all"}, 2, 2, "pass"),
        ({"NVIDIA_VISIBLE_DEVICES": "0,1"}, 2, 1, "fail"),
        ({"CUDA_VISIBLE_DEVICES": "0,1"}, 2, 1, "fail"),
        ({"CUDA_VISIBLE_DEVICES": "1"}, 2, 1, "pass"),
        ({"CUDA_VISIBLE_DEVICES": "0,7"}, 2, 1, "warn"),
        ({"CUDA_VISIBLE_DEVICES": "0,1"}, 1, 1, "warn"),  # as seen on the lent H100
        ({}, 1, 2, "warn"),
    ],
)
def test_device_count_as_expected(
    env: dict[str, str], nodes: int, devices: int, status: str
) -> None:
    torch = fake_torch(*[H100] * devices)
    result = inside.check_device_count(ctx(torch, env=env, gpu_nodes=nodes))
    assert result.status == status, result


def test_expected_devices_reads_the_variables() -> None:
    assert expected_devices(ctx(env={"CUDA_VISIBLE_DEVICES": ""}, gpu_nodes=4))[0] == 0
    assert expected_devices(ctx(env={"NVIDIA_VISIBLE_DEVICES": "none"}, gpu_nodes=4))[0] == 0
    assert expected_devices(ctx(env={"CUDA_VISIBLE_DEVICES": "3,0,9,1"}, gpu_nodes=4))[0] == 2
    assert expected_devices(ctx(env={}, gpu_nodes=None)) == (None, "")


def test_device_arch_v100_on_cuda13_build_fails() -> None:
    result = inside.check_device_arch(ctx(fake_torch(V100)))
    assert result.status == "fail"
    assert "Tesla V100-SXM2-32GB with CUDA capability sm_70 is not compatible" in result.finding
    assert "sm_75 sm_80" in result.finding and "no kernel image" in result.finding
    assert "cu126" in result.fix


def test_device_arch_passes_same_major_and_skips_without_gpu() -> None:
    result = inside.check_device_arch(ctx(fake_torch(H100, L4)))
    assert result.status == "pass"
    assert "(sm_90) runs sm_90" in result.finding and "(sm_89) runs sm_8" in result.finding
    assert inside.check_device_arch(ctx(fake_torch(cuda=None))).status == "skip"


def test_nccl() -> None:
    assert inside.check_nccl(ctx(fake_torch(H100))).finding == "NCCL 2.29.7"
    broken = inside.check_nccl(ctx(fake_torch(H100, nccl=AttributeError("no _nccl_version"))))
    assert broken.status == "fail" and "AttributeError" in broken.finding
    assert inside.check_nccl(ctx(fake_torch(cuda=None))).status == "skip"


def test_c_compiler() -> None:
    found = inside.check_c_compiler(
        ctx(which=lambda name: f"/usr/bin/{name}" if name == "gcc" else None)
    )
    assert found.status == "pass" and found.finding == "gcc: /usr/bin/gcc"
    none = inside.check_c_compiler(ctx(which=lambda name: None))
    assert none.status == "fail" and "torch.compile" in none.finding
    custom = inside.check_c_compiler(
        ctx(env={"CC": "clang-19 -O2"}, which=lambda n: "/opt/clang" if n == "clang-19" else None)
    )
    assert custom.finding == "clang-19: /opt/clang"
    by_path = inside.check_c_compiler(  # as on the lent H100: CC=/opt/gcc/bin/gcc
        ctx(env={"CC": "/opt/gcc/bin/gcc"}, which=lambda n: n if n.startswith("/") else None)
    )
    assert by_path.finding == "/opt/gcc/bin/gcc"


# --- Triton's ptxas ---------------------------------------------------------------------------


def _triton(tmp_path: Path, **versions: str) -> Path:
    """A triton package folder whose bundled ptxas binaries print recorded `--version` text."""
    folder = tmp_path / "triton"
    bin_dir = folder / "backends" / "nvidia" / "bin"
    bin_dir.mkdir(parents=True)
    for name, version in versions.items():
        exe = bin_dir / name.replace("_", "-")
        exe.write_text(f"#!/bin/sh\ncat '{PTXAS / (version + '.txt')}'\n")
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return folder


def test_ptxas_newer_than_the_driver_warns(tmp_path: Path) -> None:
    triton = _triton(tmp_path, ptxas="12.8.93", ptxas_blackwell="13.1.80")
    context = ctx(
        fake_torch(B200), triton_dir=triton, driver_cuda="12.9", driver_version="575.57.08"
    )
    result = inside.check_triton_ptxas(context)
    assert result.status == "warn"
    assert "ptxas-blackwell is CUDA 13.1.80, newer than the driver's CUDA 12.9" in result.finding
    assert "device kernel image is invalid" in result.finding
    assert "TRITON_PTXAS_PATH" in result.fix and "CUDA >= 13.1" in result.fix


def test_ptxas_blackwell_does_not_matter_on_hopper(tmp_path: Path) -> None:
    triton = _triton(tmp_path, ptxas="12.8.93", ptxas_blackwell="13.1.80")
    result = inside.check_triton_ptxas(ctx(fake_torch(H100), triton_dir=triton, driver_cuda="12.9"))
    assert result.status == "pass"
    assert "ptxas 12.8.93, ptxas-blackwell 13.1.80" in result.finding


def test_ptxas_override_and_unknown_driver(tmp_path: Path) -> None:
    triton = _triton(tmp_path, ptxas="13.1.80")
    forced = {"TRITON_PTXAS_PATH": str(triton / "backends" / "nvidia" / "bin" / "ptxas")}
    warned = inside.check_triton_ptxas(ctx(fake_torch(H100), env=forced, driver_cuda="13.0"))
    assert warned.status == "warn" and "TRITON_PTXAS_PATH is CUDA 13.1.80" in warned.finding
    unknown = inside.check_triton_ptxas(ctx(fake_torch(H100), triton_dir=triton))
    assert unknown.status == "skip" and "ptxas 13.1.80" in unknown.finding


def test_ptxas_missing_triton_and_cpu_builds() -> None:
    missing = inside.check_triton_ptxas(ctx(fake_torch(H100), driver_cuda="13.0"))
    assert missing.status == "warn" and "Triton is not installed" in missing.finding
    assert inside.check_triton_ptxas(ctx(fake_torch(cuda=None))).status == "skip"


def test_ptxas_that_does_not_run(tmp_path: Path) -> None:
    triton = _triton(tmp_path, ptxas="12.8.93")
    (triton / "backends" / "nvidia" / "bin" / "ptxas").chmod(0o644)
    result = inside.check_triton_ptxas(ctx(fake_torch(H100), triton_dir=triton, driver_cuda="13.0"))
    assert result.status == "pass" and "(does not run)" in result.finding


# --- shm, memlock -----------------------------------------------------------------------------


def test_shm_64_mb_fails_like_ngc_says() -> None:
    result = inside.check_container_shm(ctx(shm_bytes=64 * 2**20))
    assert result.status == "fail"
    assert "The SHMEM allocation limit is set to the default of 64 MiB" in result.finding
    assert "--shm-size=8g" in result.fix and "not --ipc=host" in result.fix
    assert inside.check_container_shm(ctx(shm_bytes=512 * 2**20)).status == "warn"
    assert inside.check_container_shm(ctx(shm_bytes=8 * 2**30)).status == "pass"
    assert inside.check_container_shm(ctx(shm_bytes=None)).status == "skip"


def test_memlock() -> None:
    assert inside.check_container_memlock(ctx(memlock_bytes=-1)).status == "pass"
    limited = inside.check_container_memlock(ctx(memlock_bytes=64 * 2**20))
    assert limited.status == "warn" and "--ulimit memlock=-1" in limited.fix


# --- services ---------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def jupyter_port() -> Iterator[int]:
    class Api(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"version": "2.15.0"}).encode()
            self.send_response(200 if self.path == "/api" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Api)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def ssh_port() -> Iterator[int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n")

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


SERVICES = {"TORCHRIG_SERVICES": "jupyter,ssh"}


def test_jupyter_answers(jupyter_port: int) -> None:
    result = inside.check_jupyter(ctx(env=SERVICES, jupyter_port=jupyter_port))
    assert result.status == "pass" and "jupyter_server 2.15.0" in result.finding


def test_jupyter_down_fails_and_disabled_skips() -> None:
    down = inside.check_jupyter(ctx(env=SERVICES, jupyter_port=_closed_port()))
    assert down.status == "fail" and "does not answer" in down.finding
    assert "torchrig logs" in down.fix
    assert inside.check_jupyter(ctx(env={"TORCHRIG_SERVICES": "ssh"})).status == "skip"
    assert inside.check_jupyter(ctx(env={})).status == "skip"


def test_sshd_listens(ssh_port: int) -> None:
    result = inside.check_sshd(ctx(env=SERVICES, ssh_port=ssh_port))
    assert result.status == "pass" and "SSH-2.0-OpenSSH_9.6p1" in result.finding


def test_sshd_down_fails() -> None:
    result = inside.check_sshd(ctx(env=SERVICES, ssh_port=_closed_port()))
    assert result.status == "fail" and "nothing listens" in result.finding
    assert "--explain" in result.fix
    assert inside.check_sshd(ctx(env={"TORCHRIG_SERVICES": "jupyter"})).status == "skip"


def test_something_else_on_the_ssh_port_fails(jupyter_port: int) -> None:
    result = inside.check_sshd(ctx(env=SERVICES, ssh_port=jupyter_port, timeout_s=0.3))
    assert result.status == "fail" and "is no SSH server: it sent no banner" in result.finding


# --- the real thing: this machine's CPU torch, no GPU -----------------------------------------


def test_inside_this_machine_with_cpu_torch_reports_no_gpu() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    context = inside.inside_context(env={})
    assert context.torch is torch
    results = {r.id: r for r in run_checks(INSIDE_CHECKS, context)}
    assert results["torch"].status == "pass"
    no_gpu = results["cuda-available"]
    assert no_gpu.status == "fail"
    assert no_gpu.finding.startswith("no CUDA GPU visible")
    assert "--gpus all" in no_gpu.fix
    if torch.version.cuda is None:
        assert results["cuda-build"].status == "fail"
        assert "CPU-only build" in no_gpu.fix
    assert results["device-count"].status == "skip"
    assert not any("could not run" in r.finding for r in results.values())


# --- disk (issue 10, finding 7) ---------------------------------------------------------------


def test_disk_warns_when_the_workspace_is_low(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchrig.workbench import disk

    def statvfs(path: str) -> os.statvfs_result:
        # 10 MiB of 64 MiB free: under 1 GiB.
        return os.statvfs_result((4096, 4096, 16384, 2560, 2560, 0, 0, 0, 0, 255))

    monkeypatch.setattr(disk.os, "statvfs", statvfs)
    found = inside.check_disk(ctx(None, disk_paths=(str(tmp_path),)))
    assert found.status == "warn"
    assert found.finding.startswith(f"low disk: {tmp_path} has 10 MiB free of 64 MiB")
    assert "du -sh" in found.fix and found.source


def test_disk_passes_with_room_and_skips_without_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchrig.workbench import disk

    def statvfs(path: str) -> os.statvfs_result:
        # 400 GiB of 1000 GiB free.
        return os.statvfs_result((4096, 4096, 262144000, 104857600, 104857600, 0, 0, 0, 0, 255))

    monkeypatch.setattr(disk.os, "statvfs", statvfs)
    assert inside.check_disk(ctx(None, disk_paths=(str(tmp_path),))).status == "pass"
    monkeypatch.undo()
    assert inside.check_disk(ctx(None, disk_paths=("/no/such",))).status == "skip"
