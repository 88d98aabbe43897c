"""The host probe against recorded outputs: a fake NVML built from nvml.json, a fake /proc
tree in tmp_path, real nvidia-smi XML, real docker/podman JSON. See tests/fixtures/host/README.md
for which fixtures were recorded on a machine and which were synthesised.

tests/fixtures/host/h100-sxm/host.json and tests/fixtures/host/cpu-only.json are golden files
made by running the probe on these fixtures (other tests load them with --host); regenerate
with TORCHRIG_REGEN_GOLDEN=1.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest

from tests.golden_util import assert_golden
from torchrig.host import probe
from torchrig.host.facts import Engine, HostFacts, load_host_facts

if TYPE_CHECKING:
    from collections.abc import Sequence

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "host"
H100 = FIXTURES / "h100-sxm"
TWO_GPU = FIXTURES / "two-gpu-mig"
CPU_ONLY = FIXTURES / "cpu-only"


# --- fakes -------------------------------------------------------------------------------


class FakeNVMLError(Exception):
    pass


class FakeNotSupported(FakeNVMLError):
    pass


class FakeLibraryNotFound(FakeNVMLError):
    pass


class FakeNvml:
    """Answers like pynvml from a recorded nvml.json; handles are GPU indices.

    `as_bytes` mimics old pynvml releases that returned bytes; a GPU whose "mig" is null
    raises NotSupported like a pre-Ampere GPU; `init_error` makes nvmlInit fail.
    """

    NVMLError = FakeNVMLError
    NVMLError_NotSupported = FakeNotSupported
    NVML_DEVICE_MIG_ENABLE = 1

    def __init__(
        self,
        recording: dict[str, Any] | None = None,
        *,
        as_bytes: bool = False,
        init_error: Exception | None = None,
    ) -> None:
        self.rec = recording or {}
        self.as_bytes = as_bytes
        self.init_error = init_error
        self.initialised = False

    @classmethod
    def from_file(cls, path: Path, **kwargs: Any) -> FakeNvml:
        return cls(json.loads(path.read_text()), **kwargs)

    def _s(self, value: str) -> str | bytes:
        return value.encode() if self.as_bytes else value

    def _gpu(self, handle: int) -> dict[str, Any]:
        return dict(self.rec["gpus"][handle])

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise self.init_error
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self.initialised = False

    def nvmlSystemGetDriverVersion(self) -> str | bytes:
        return self._s(self.rec["driver"])

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        return int(self.rec["cuda_driver_version"])

    def nvmlDeviceGetCount(self) -> int:
        return len(self.rec["gpus"])

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> str | bytes:
        return self._s(self._gpu(handle)["name"])

    def nvmlDeviceGetUUID(self, handle: int) -> str | bytes:
        return self._s(self._gpu(handle)["uuid"])

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(total=self._gpu(handle)["memory_total"], used=0, free=0)

    def nvmlDeviceGetCudaComputeCapability(self, handle: int) -> tuple[int, int]:
        major, minor = self._gpu(handle)["cc"]
        return major, minor

    def nvmlDeviceGetMigMode(self, handle: int) -> list[int]:
        mig = self._gpu(handle)["mig"]
        if mig is None:
            raise FakeNotSupported("Not Supported")
        if isinstance(mig, str):
            raise FakeNVMLError(mig)
        return list(mig)

    def nvmlDeviceGetPciInfo(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(busId=self._s(self._gpu(handle)["pci"]))


NO_NVML = FakeNvml(init_error=FakeLibraryNotFound("NVML Shared Library Not Found"))


class FakeRun:
    """A `run` that answers from a table keyed by (program, first argument)."""

    def __init__(self, answers: dict[tuple[str, str], Any]) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(self, cmd: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(cmd))
        assert timeout <= 5, "probe subprocesses must have short timeouts"
        answer = self.answers[(Path(cmd[0]).name, cmd[1])]
        if isinstance(answer, BaseException):
            raise answer
        rc, stdout, stderr = answer
        return subprocess.CompletedProcess(list(cmd), rc, stdout, stderr)


def which_of(**paths: str) -> probe.Which:
    return lambda name: paths.get(name.replace("-", "_"))


NOTHING_ON_PATH = which_of()


def docker_answers(version: str = "version.json", info: str = "info.json") -> dict[Any, Any]:
    d = FIXTURES / "docker"
    return {
        ("docker", "version"): (0, (d / version).read_text(), ""),
        ("docker", "info"): (0, (d / info).read_text(), ""),
    }


def podman_answers() -> dict[Any, Any]:
    d = FIXTURES / "podman"
    return {
        ("podman", "version"): (0, (d / "version.json").read_text(), ""),
        ("podman", "info"): (0, (d / "info.json").read_text(), ""),
    }


def make_root(tmp_path: Path, machine: Path, *, nvidia_proc: bool = False) -> Path:
    """A fake / with the recorded /etc/os-release, /proc/meminfo, /dev/shm (and the
    NVIDIA /proc files when asked)."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "proc").mkdir()
    (root / "dev" / "shm").mkdir(parents=True)
    shutil.copy(machine / "os-release.txt", root / "etc" / "os-release")
    shutil.copy(machine / "proc-meminfo.txt", root / "proc" / "meminfo")
    if nvidia_proc:
        nv = root / "proc" / "driver" / "nvidia"
        (nv / "gpus" / "0000:00:06.0").mkdir(parents=True)
        shutil.copy(machine / "proc-version.txt", nv / "version")
        shutil.copy(machine / "proc-gpu-0000-00-06-0.txt", nv / "gpus/0000:00:06.0/information")
    return root


# --- NVML --------------------------------------------------------------------------------


def test_nvml_reads_the_recorded_h100() -> None:
    notes: list[str] = []
    driver, gpus = probe.probe_nvml(FakeNvml.from_file(H100 / "nvml.json"), notes)
    assert (driver.version, driver.cuda, driver.source) == ("580.159.04", "13.0", "nvml")
    [gpu] = gpus
    assert gpu.name == "NVIDIA H100 80GB HBM3"
    assert gpu.uuid == "GPU-0f42dc1e-75c5-2bda-54ca-2a62d2c91151"
    assert gpu.memory_mib == 81559  # what nvidia-smi shows for the same GPU
    assert (gpu.cc, gpu.mig, gpu.pci_bus_id) == ("9.0", False, "00000000:00:06.0")
    assert notes == []


def test_nvml_bytes_from_old_pynvml_are_decoded() -> None:
    _, [gpu] = probe.probe_nvml(FakeNvml.from_file(H100 / "nvml.json", as_bytes=True))
    assert gpu.name == "NVIDIA H100 80GB HBM3"
    assert gpu.pci_bus_id == "00000000:00:06.0"


def test_nvml_two_gpus_with_mig_on_one() -> None:
    _, gpus = probe.probe_nvml(FakeNvml.from_file(TWO_GPU / "nvml.json"))
    assert [(g.index, g.mig, g.pci_bus_id) for g in gpus] == [
        (0, False, "00000000:18:00.0"),
        (1, True, "00000000:2A:00.0"),
    ]


def test_mig_not_supported_is_off_and_other_errors_are_unknown() -> None:
    rec = json.loads((TWO_GPU / "nvml.json").read_text())
    rec["gpus"][0]["mig"] = None  # a GPU without MIG
    rec["gpus"][1]["mig"] = "Insufficient Permissions"
    notes: list[str] = []
    _, gpus = probe.probe_nvml(FakeNvml(rec), notes)
    assert [g.mig for g in gpus] == [False, None]
    assert notes == ["NVML GPU 1 MIG mode: Insufficient Permissions"]


def test_nvml_is_shut_down_after_use() -> None:
    nvml = FakeNvml.from_file(H100 / "nvml.json")
    probe.probe_nvml(nvml)
    assert not nvml.initialised


@pytest.mark.parametrize(
    ("value", "text"), [(13000, "13.0"), (12080, "12.8"), (12020, "12.2"), (11040, "11.4")]
)
def test_cuda_version_string(value: int, text: str) -> None:
    assert probe.cuda_version_string(value) == text


@pytest.mark.parametrize(
    ("bus", "normal"),
    [
        ("00000000:00:06.0", "00000000:00:06.0"),
        ("0000:3b:00.0", "00000000:3B:00.0"),
        ("00000001:2a:00.1", "00000001:2A:00.1"),
        ("", ""),
    ],
)
def test_bus_ids_are_normalised_to_nvml_form(bus: str, normal: str) -> None:
    assert probe.normalise_bus_id(bus) == normal


# --- fallbacks: /proc and nvidia-smi -----------------------------------------------------


def test_proc_fallback_when_nvml_is_missing(tmp_path: Path) -> None:
    root = make_root(tmp_path, H100, nvidia_proc=True)
    notes: list[str] = []
    driver, gpus = probe.probe_gpus(root=root, nvml=NO_NVML, which=NOTHING_ON_PATH, notes=notes)
    assert driver is not None
    assert (driver.version, driver.cuda, driver.source) == ("580.159.04", "", "proc")
    [gpu] = gpus
    assert gpu.name == "NVIDIA H100 80GB HBM3"
    assert gpu.uuid == "GPU-0f42dc1e-75c5-2bda-54ca-2a62d2c91151"
    assert gpu.pci_bus_id == "00000000:00:06.0"
    assert gpu.cc is None  # the resolver fills it from the GPU name table
    assert gpu.source == "proc"
    assert notes == [
        "GPU facts from /proc/driver/nvidia: NVML: NVML Shared Library Not Found; "
        "nvidia-smi: not on PATH"
    ]


def test_nvidia_smi_fallback_is_preferred_over_proc(tmp_path: Path) -> None:
    root = make_root(tmp_path, H100, nvidia_proc=True)
    xml = (H100 / "nvidia-smi-q-x.xml").read_text()
    run = FakeRun({("nvidia-smi", "-q"): (0, xml, "")})
    which = which_of(nvidia_smi="/usr/bin/nvidia-smi")
    driver, [gpu] = probe.probe_gpus(root=root, nvml=NO_NVML, run=run, which=which)
    assert driver is not None
    assert (driver.version, driver.cuda, driver.source) == ("580.159.04", "13.0", "nvidia-smi")
    assert (gpu.memory_mib, gpu.mig, gpu.source) == (81559, False, "nvidia-smi")
    assert run.calls == [["/usr/bin/nvidia-smi", "-q", "-x"]]


def test_nvidia_smi_xml_of_the_recorded_h100() -> None:
    driver, [gpu] = probe.parse_nvidia_smi_xml((H100 / "nvidia-smi-q-x.xml").read_text())
    assert (driver.version, driver.cuda) == ("580.159.04", "13.0")
    assert gpu.name == "NVIDIA H100 80GB HBM3"
    assert gpu.uuid == "GPU-0f42dc1e-75c5-2bda-54ca-2a62d2c91151"
    assert (gpu.memory_mib, gpu.mig, gpu.pci_bus_id) == (81559, False, "00000000:00:06.0")
    assert gpu.cc is None  # this driver's XML has no compute capability element


def test_nvidia_smi_xml_two_gpus_with_mig() -> None:
    _, gpus = probe.parse_nvidia_smi_xml((TWO_GPU / "nvidia-smi-q-x.xml").read_text())
    assert [(g.index, g.mig, g.pci_bus_id) for g in gpus] == [
        (0, False, "00000000:18:00.0"),
        (1, True, "00000000:2A:00.0"),
    ]


@pytest.mark.parametrize(
    "element",
    [
        "<compute_cap>8.6</compute_cap>",
        "<compute_capability><major>8</major><minor>6</minor></compute_capability>",
    ],
)
def test_nvidia_smi_xml_compute_capability_when_present(element: str) -> None:
    xml = (
        "<nvidia_smi_log><driver_version>550.54.15</driver_version>"
        "<cuda_version>12.4</cuda_version><gpu id='00000000:01:00.0'>"
        f"<product_name>NVIDIA GeForce RTX 3090</product_name>{element}"
        "<mig_mode><current_mig>N/A</current_mig></mig_mode>"
        "<fb_memory_usage><total>24576 MiB</total></fb_memory_usage></gpu></nvidia_smi_log>"
    )
    _, [gpu] = probe.parse_nvidia_smi_xml(xml)
    assert (gpu.cc, gpu.mig, gpu.memory_mib) == ("8.6", None, 24576)
    assert gpu.pci_bus_id == "00000000:01:00.0"


def test_nvidia_smi_failure_is_a_reason(tmp_path: Path) -> None:
    run = FakeRun(
        {
            ("nvidia-smi", "-q"): (
                9,
                "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA "
                "driver. Make sure that the latest NVIDIA driver is installed and running.\n",
                "",
            )
        }
    )
    notes: list[str] = []
    driver, gpus = probe.probe_gpus(
        root=tmp_path,
        nvml=FakeNvml(init_error=FakeNVMLError("Driver Not Loaded")),
        run=run,
        which=which_of(nvidia_smi="/usr/bin/nvidia-smi"),
        notes=notes,
    )
    assert (driver, gpus) == (None, [])
    [note] = notes
    assert note.startswith("No NVIDIA GPU found (NVML: Driver Not Loaded; /proc/driver/nvidia:")
    assert "nvidia-smi: NVIDIA-SMI has failed because it couldn't communicate" in note


def test_nvidia_smi_timeout_is_a_reason(tmp_path: Path) -> None:
    run = FakeRun({("nvidia-smi", "-q"): subprocess.TimeoutExpired(["nvidia-smi"], 5)})
    notes: list[str] = []
    probe.probe_gpus(
        root=tmp_path,
        nvml=NO_NVML,
        run=run,
        which=which_of(nvidia_smi="/usr/bin/nvidia-smi"),
        notes=notes,
    )
    assert "nvidia-smi: no answer within 5 s" in notes[0]


def test_no_gpu_at_all_is_said_plainly(tmp_path: Path) -> None:
    notes: list[str] = []
    driver, gpus = probe.probe_gpus(root=tmp_path, nvml=NO_NVML, which=NOTHING_ON_PATH, notes=notes)
    assert (driver, gpus) == (None, [])
    assert notes == [
        "No NVIDIA GPU found (NVML: NVML Shared Library Not Found; /proc/driver/nvidia: not "
        "present, the NVIDIA kernel module is not loaded; nvidia-smi: not on PATH)"
    ]


def test_nvml_with_no_gpu_says_so() -> None:
    rec = json.loads((H100 / "nvml.json").read_text())
    rec["gpus"] = []
    notes: list[str] = []
    driver, gpus = probe.probe_gpus(nvml=FakeNvml(rec), notes=notes)
    assert driver is not None and gpus == []
    assert notes == ["No NVIDIA GPU found (NVML: driver 580.159.04 is loaded but lists no GPU)"]


def test_an_unexpected_nvml_exception_does_not_escape(tmp_path: Path) -> None:
    nvml = FakeNvml(init_error=RuntimeError("segfault-ish"))
    facts = probe.probe_host(engines=False, root=tmp_path, nvml=nvml, which=NOTHING_ON_PATH)
    assert facts.gpus == []
    assert "NVML: segfault-ish" in facts.notes[-1]


@pytest.mark.parametrize(
    ("line", "version"),
    [
        (
            "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build",
            "580.159.04",
        ),
        (
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.129.03  Thu Oct 19 2023",
            "535.129.03",
        ),
        (
            "NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  570.86.15  Release",
            "570.86.15",
        ),
    ],
)
def test_proc_driver_version(line: str, version: str) -> None:
    assert probe.parse_proc_driver_version(line + "\nGCC version: gcc 12\n") == version


# --- system ------------------------------------------------------------------------------


def test_system_reads_root(tmp_path: Path) -> None:
    root = make_root(tmp_path, H100)
    notes: list[str] = []
    system = probe.probe_system(root, notes)
    assert system.os == "Ubuntu 24.04.3 LTS"
    assert system.memory_bytes == 131981020 * 1024
    assert system.shm_bytes is not None and system.shm_bytes > 0
    assert system.cpus >= 1 and system.arch in ("x86_64", "aarch64")
    assert notes == []


def test_system_missing_files_become_notes(tmp_path: Path) -> None:
    notes: list[str] = []
    system = probe.probe_system(tmp_path, notes)
    assert (system.os, system.memory_bytes, system.shm_bytes) == ("", 0, None)
    assert [n.split(":")[0] for n in notes] == ["os-release", "/proc/meminfo", "/dev/shm"]


def test_os_release_without_pretty_name() -> None:
    assert probe.parse_os_release('NAME="Alpine Linux"\nVERSION=3.20\n') == "Alpine Linux 3.20"


@pytest.mark.parametrize(
    ("machine", "arch"), [("arm64", "aarch64"), ("AMD64", "x86_64"), ("aarch64", "aarch64")]
)
def test_arch_is_normalised(machine: str, arch: str) -> None:
    assert probe.normalise_arch(machine) == arch


# --- engines -----------------------------------------------------------------------------


def test_docker_recorded(tmp_path: Path) -> None:
    (tmp_path / "var/lib/docker").mkdir(parents=True)
    run = FakeRun(docker_answers())
    engine, notes = probe.probe_engine(
        "docker", root=tmp_path, run=run, which=which_of(docker="/usr/local/bin/docker")
    )
    assert engine.present and engine.reachable and engine.error == ""
    assert (engine.client_version, engine.server_version) == ("28.2.2", "20.10.24+dfsg1")
    assert (engine.rootless, engine.nvidia_runtime) == (False, False)
    assert engine.storage_path == "/var/lib/docker"
    assert engine.storage_free_bytes is not None and engine.storage_free_bytes > 0
    assert notes == []
    assert sorted(run.calls) == [  # asked at once (below): in either order
        ["/usr/local/bin/docker", "info", "--format", "{{json .}}"],
        ["/usr/local/bin/docker", "version", "--format", "{{json .}}"],
    ]


def test_docker_version_and_info_are_asked_at_once(tmp_path: Path) -> None:
    """Issue 18 (up ≤ 3 s): the two questions are independent; asked one after the other
    they cost two CLI starts and daemon round trips on the way of every `up`."""
    answers = FakeRun(docker_answers())

    def slow(cmd: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        time.sleep(0.5)
        return answers(cmd, timeout)

    started = time.monotonic()
    engine, _ = probe.probe_engine(
        "docker", root=tmp_path, run=slow, which=which_of(docker="/usr/bin/docker")
    )
    assert engine.reachable and engine.server_version == "20.10.24+dfsg1"
    assert time.monotonic() - started < 0.9, "docker version, then docker info"


def test_docker_daemon_not_running_recorded(tmp_path: Path) -> None:
    d = FIXTURES / "docker"
    run = FakeRun(
        {
            ("docker", "version"): (
                1,
                (d / "version-no-daemon.json").read_text(),
                (d / "version-no-daemon.stderr").read_text(),
            )
        }
    )
    engine, _ = probe.probe_engine(
        "docker", root=tmp_path, run=run, which=which_of(docker="/usr/bin/docker")
    )
    assert engine.present and not engine.reachable
    assert engine.client_version == "28.2.2"
    assert engine.error.startswith("Cannot connect to the Docker daemon at unix:///var/run/")
    # `docker info` is asked at the same time (no wait for it) and its answer left unread.
    assert engine.rootless is None and engine.storage_path == ""


def test_docker_timeout_is_an_error_not_a_hang(tmp_path: Path) -> None:
    run = FakeRun({("docker", "version"): subprocess.TimeoutExpired(["docker"], 4)})
    engine, _ = probe.probe_engine(
        "docker", root=tmp_path, run=run, which=which_of(docker="/usr/bin/docker")
    )
    assert not engine.reachable
    assert "did not answer within 4 s" in engine.error


def test_docker_rootless_with_nvidia_runtime_and_cdi(tmp_path: Path) -> None:
    info = json.loads((FIXTURES / "docker/info.json").read_text())
    info["SecurityOptions"] = ["name=seccomp,profile=builtin", "name=rootless", "name=cgroupns"]
    info["Runtimes"]["nvidia"] = {"path": "nvidia-container-runtime"}
    answers = docker_answers()
    answers[("docker", "info")] = (0, json.dumps(info), "")
    (tmp_path / "etc/cdi").mkdir(parents=True)
    shutil.copy(FIXTURES / "cdi/nvidia.yaml", tmp_path / "etc/cdi/nvidia.yaml")
    engine, _ = probe.probe_engine(
        "docker", root=tmp_path, run=FakeRun(answers), which=which_of(docker="/usr/bin/docker")
    )
    assert engine.rootless is True and engine.nvidia_runtime is True
    assert engine.cdi_devices == [
        "nvidia.com/gpu=0",
        "nvidia.com/gpu=GPU-0f42dc1e-75c5-2bda-54ca-2a62d2c91151",
        "nvidia.com/gpu=all",
    ]


def test_podman_recorded(tmp_path: Path) -> None:
    engine, notes = probe.probe_engine(
        "podman",
        root=tmp_path,
        run=FakeRun(podman_answers()),
        which=which_of(podman="/usr/bin/podman"),
    )
    assert engine.reachable and (engine.client_version, engine.server_version) == ("4.3.1", "4.3.1")
    assert engine.rootless is False
    assert engine.storage_path == "/var/lib/containers/storage"
    assert engine.storage_free_bytes is None  # the path does not exist under this root
    assert notes == []


def test_podman_rootless() -> None:
    info = json.loads((FIXTURES / "podman/info.json").read_text())
    info["host"]["security"]["rootless"] = True
    engine = Engine(name="podman", path="/usr/bin/podman")
    probe.apply_podman_info(engine, info)
    assert engine.rootless is True


def test_podman_info_failure(tmp_path: Path) -> None:
    answers = podman_answers()
    answers[("podman", "info")] = (125, "", "Error: cannot setup namespace using newuidmap\n")
    engine, _ = probe.probe_engine(
        "podman", root=tmp_path, run=FakeRun(answers), which=which_of(podman="/usr/bin/podman")
    )
    assert not engine.reachable and engine.client_version == "4.3.1"
    assert engine.error == "Error: cannot setup namespace using newuidmap"


def test_engine_cli_absent_is_not_run(tmp_path: Path) -> None:
    run = FakeRun({})
    engine, _ = probe.probe_engine("podman", root=tmp_path, run=run, which=NOTHING_ON_PATH)
    assert not engine.present and "not installed" in engine.error
    assert run.calls == []


def test_a_crashing_runner_does_not_escape(tmp_path: Path) -> None:
    def run(cmd: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        raise PermissionError(13, "Permission denied", cmd[0])

    engine, _ = probe.probe_engine(
        "docker", root=tmp_path, run=run, which=which_of(docker="/usr/bin/docker")
    )
    assert not engine.reachable and "could not run" in engine.error


def test_no_engine_is_said_plainly(tmp_path: Path) -> None:
    facts = probe.probe_host(root=tmp_path, nvml=NO_NVML, which=NOTHING_ON_PATH)
    assert [(e.name, e.present) for e in facts.engines] == [("docker", False), ("podman", False)]
    assert facts.notes[-1].startswith("No usable container engine (docker: the docker CLI is not")


def test_engines_can_be_skipped(tmp_path: Path) -> None:
    run = FakeRun({})
    facts = probe.probe_host(engines=False, root=tmp_path, run=run, nvml=NO_NVML)
    assert facts.engines == [] and run.calls == []
    assert not any("container engine" in n for n in facts.notes)


# --- CDI ---------------------------------------------------------------------------------


def test_cdi_yaml_in_nvidia_ctk_layout() -> None:
    kind, names = probe.parse_cdi_yaml((FIXTURES / "cdi/nvidia.yaml").read_text())
    assert kind == "nvidia.com/gpu"
    assert names == ["0", "GPU-0f42dc1e-75c5-2bda-54ca-2a62d2c91151", "all"]


def test_cdi_yaml_hand_written_layout() -> None:
    text = (
        "cdiVersion: 0.6.0\nkind: 'nvidia.com/gpu'\ndevices:\n"
        "  - name: all\n    containerEdits:\n      deviceNodes:\n        - path: /dev/nvidia0\n"
        '  - name: "1"  \ncontainerEdits:\n  env:\n  - name: not-a-device\n'
    )
    assert probe.parse_cdi_yaml(text) == ("nvidia.com/gpu", ["all", "1"])


def test_cdi_json_and_both_directories(tmp_path: Path) -> None:
    (tmp_path / "etc/cdi").mkdir(parents=True)
    (tmp_path / "var/run/cdi").mkdir(parents=True)
    shutil.copy(FIXTURES / "cdi/nvidia.yaml", tmp_path / "etc/cdi/nvidia.yaml")
    spec = {"cdiVersion": "0.5.0", "kind": "vendor.com/fpga", "devices": [{"name": "f0"}]}
    (tmp_path / "var/run/cdi/fpga.json").write_text(json.dumps(spec))
    (tmp_path / "var/run/cdi/README").write_text("not a spec")
    names = probe.read_cdi_devices(tmp_path)
    assert names[:1] == ["nvidia.com/gpu=0"] and names[-1] == "vendor.com/fpga=f0"
    assert len(names) == 4


# --- the whole probe, and the golden host files other tests load -------------------------


def recorded_system(machine: Path) -> dict[str, Any]:
    """System facts of a recorded machine that the probe reads from the live process
    (kernel, CPUs, limits, glibc), taken from that machine's recordings instead."""
    uname = (machine / "uname.txt").read_text().split()
    shm_line = (machine / "shm.txt").read_text().splitlines()[1].split()
    memlock = (machine / "ulimit-l.txt").read_text().strip()
    return {
        "kernel": uname[2],
        "arch": probe.normalise_arch(uname[-2]),
        "cpus": int((machine / "nproc.txt").read_text()),
        "shm_bytes": int(shm_line[1]),
        "memlock_bytes": -1 if memlock == "unlimited" else int(memlock) * 1024,
        "glibc": (machine / "glibc.txt").read_text().split()[1],
        "user": "root",  # both recordings were made as root
        "uid": 0,
        "gid": 0,
    }


def as_recorded(facts: HostFacts, machine: Path, collected_at: str, **engine: Any) -> HostFacts:
    system = facts.system.model_copy(update=recorded_system(machine))
    engines = [e.model_copy(update=engine.get(e.name, {})) for e in facts.engines]
    hostname = (machine / "uname.txt").read_text().split()[1]
    update = {"system": system, "engines": engines, "hostname": hostname}
    return facts.model_copy(update=update | {"collected_at": collected_at})


def build_h100_facts(tmp_path: Path) -> HostFacts:
    # Recorded there: NVML answered; no docker or podman was installed.
    facts = probe.probe_host(
        root=make_root(tmp_path, H100, nvidia_proc=True),
        nvml=FakeNvml.from_file(H100 / "nvml.json"),
        run=FakeRun({}),
        which=which_of(nvidia_smi="/usr/local/nvidia/bin/nvidia-smi"),
    )
    return as_recorded(facts, H100, "2026-11-24T00:49:34+00:00")


def build_cpu_only_facts(tmp_path: Path) -> HostFacts:
    # Recorded on a CPU-only Debian 12 VM with Docker 20.10 (daemon) + 28.2 (CLI).
    facts = probe.probe_host(
        root=make_root(tmp_path, CPU_ONLY),
        nvml=NO_NVML,
        run=FakeRun(docker_answers()),
        which=which_of(docker="/usr/local/bin/docker"),
    )
    free = {"storage_free_bytes": 84314460160}  # measured by the live probe there
    return as_recorded(facts, CPU_ONLY, "2026-11-24T00:55:08+00:00", docker=free)


def test_golden_h100_host_json(tmp_path: Path) -> None:
    facts = build_h100_facts(tmp_path)
    assert facts.gpus[0].cc == "9.0" and facts.driver and facts.driver.cuda == "13.0"
    assert_golden(H100 / "host.json", facts.to_json() + "\n")
    assert load_host_facts(H100 / "host.json") == facts


def test_golden_cpu_only_json(tmp_path: Path) -> None:
    facts = build_cpu_only_facts(tmp_path)
    docker = facts.engine("docker")
    assert not facts.has_nvidia_gpu and docker is not None and docker.reachable
    assert_golden(FIXTURES / "cpu-only.json", facts.to_json() + "\n")
    assert load_host_facts(FIXTURES / "cpu-only.json") == facts


def test_live_probe_is_valid() -> None:
    # How fast it is: benchmarks/plan_speed.py, not a timed unit test.
    facts = probe.probe_host(engines=False)
    HostFacts.model_validate_json(facts.to_json())
    assert facts.collected_at.endswith("+00:00")
