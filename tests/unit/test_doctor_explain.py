"""`doctor --explain`: every exact text of FACTS.md's failure tables is recognised.

The texts below are copied verbatim from FACTS.md ("F. Failure modes in containers", T5b,
T7, T8, T9), placeholders ("…", "N", "%d.%d") included: a pattern that only matched a
tidied-up version of the text would miss what people paste.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from torchrig.doctor.explain import FailureMode, explain, load_failures

LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "doctor" / "logs"

# (expected id, exact text from FACTS.md)
EXACT: list[tuple[str, str]] = [
    # F. Failure modes in containers — every row, every quoted text
    (
        "docker-gpu-driver-missing",
        'docker: Error response from daemon: could not select device driver "" with '
        "capabilities: [[gpu]].",
    ),
    (
        "docker-gpu-driver-missing",
        'could not select device driver "nvidia" with capabilities: [[gpu]]',
    ),
    ("nvml-driver-library-mismatch", "Failed to initialize NVML: Driver/library version mismatch"),
    (
        "nvml-driver-library-mismatch",
        "nvidia-container-cli: initialization error: nvml error: driver/library version mismatch",
    ),
    ("nvml-unknown-error", "Failed to initialize NVML: Unknown Error"),
    (
        "image-cuda-newer-than-driver",
        "nvidia-container-cli: requirement error: unsatisfied condition: cuda>=12.8, please "
        "update your driver to a newer version, or use an earlier cuda container",
    ),
    ("no-cuda-device", "no CUDA-capable device is detected"),
    ("no-cuda-device", "CUDA_ERROR_NO_DEVICE"),
    (
        "no-cuda-device",
        "CUDA initialization: CUDA driver initialization failed, you might not have a CUDA gpu.",
    ),
    (
        "no-nvidia-driver",
        "RuntimeError: Found no NVIDIA driver on your system. Please check that you have an "
        "NVIDIA GPU and installed a driver from http://www.nvidia.com/Download/index.aspx",
    ),
    ("cuda-unavailable-silently", "`torch.cuda.is_available()` → `False` with no error"),
    (
        "no-kernel-image",
        "RuntimeError: CUDA error: no kernel image is available for execution on the device",
    ),
    (
        "gpu-arch-not-in-build",
        "NVIDIA … with CUDA capability sm_120 is not compatible with the current PyTorch "
        "installation. The current PyTorch install supports CUDA capabilities sm_50 … sm_90.",
    ),
    (
        "dataloader-shm-bus-error",
        "ERROR: Unexpected bus error encountered in worker. This might be caused by "
        "insufficient shared memory (shm).",
    ),
    (
        "dataloader-shm-bus-error",
        "RuntimeError: DataLoader worker (pid N) is killed by signal: Bus error.",
    ),
    (
        "shm-no-space",
        "RuntimeError: unable to write to file </torch_12345_…>: No space left on device (28)",
    ),
    (
        "nccl-shm",
        "NCCL WARN Error: failed to extend /dev/shm/nccl-03v824 to 4194660 bytes",
    ),
    ("nccl-system-error", "ncclSystemError"),
    ("nccl-system-error", "unhandled system error"),
    ("nccl-memlock", "NCCL WARN Call to ibv_reg_mr failed … Cannot allocate memory"),
    (
        "nccl-watchdog-timeout",
        "[Rank 0] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=1, "
        "OpType=BROADCAST, … Timeout(ms)=600000) ran for 600081 milliseconds before timing out.",
    ),
    ("torchrun-sighup", "Received Signals.SIGHUP death signal, shutting down workers"),
    ("torchrun-sigterm", "Received Signals.SIGTERM death signal, shutting down workers"),
    ("torchrun-sigterm", "Sending process N closing signal SIGTERM"),
    (
        "workspace-permission-denied",
        "touch: cannot touch 'stagingarea/kale.txt': Permission denied",
    ),
    ("workspace-permission-denied", "PermissionError: [Errno 13] Permission denied"),
    ("sshd-no-hostkeys", "sshd: no hostkeys available -- exiting."),
    ("sshd-privsep-dir", "Missing privilege separation directory: /run/sshd"),
    (
        "ssh-bad-ownership",
        "Authentication refused: bad ownership or modes for directory /home/u/.ssh",
    ),
    ("ssh-account-locked", "User u not allowed because account is locked"),
    ("ssh-host-key-changed", "WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!"),
    (
        "pip-hash-mismatch",
        "THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE…someone may have "
        "tampered with them.",
    ),
    # T9. Mismatch symptoms
    (
        "gpu-arch-not-in-build",
        "NVIDIA … with CUDA capability sm_XX is not compatible with the current PyTorch "
        "installation. The current PyTorch install supports CUDA capabilities sm_75 … sm_120.",
    ),
    ("driver-too-old", "The NVIDIA driver on your system is too old (found version …)"),
    (
        "gpu-too-old-for-pytorch",
        "Found GPU… which is of cuda capability X.Y. PyTorch no longer supports this GPU "
        "because it is too old. The minimum cuda capability supported by this library is "
        "%d.%d.",
    ),
    # T5b. PTX caveat
    ("ptx-newer-than-driver", "cudaErrorUnsupportedPtxVersion"),
    (
        "ptx-newer-than-driver",
        "the provided PTX was compiled with an unsupported toolchain … PTX was generated by a "
        "compiler newer than what is supported by the CUDA driver",
    ),
    # T7. torch.compile / Triton
    (
        "triton-gpu-too-old",
        "Found {name} which is too old to be supported by the triton GPU compiler, which is "
        "used as the backend. Triton only supports devices of CUDA Capability >= 7.0",
    ),
    ("triton-gpu-too-old", "GPUTooOldForTriton"),
    ("triton-turing-f16", "Unsupported conversion from f16 to f16 / LLVM ERROR"),
    ("triton-ptxas-newer-than-driver", "CUDA_ERROR_INVALID_IMAGE (200)"),
    ("triton-ptxas-newer-than-driver", "Triton Error [CUDA]: device kernel image is invalid"),
    # T8. SDPA
    (
        "sdpa-flash-arch",
        "Flash attention only supports gpu architectures in the range [sm80, sm121]. "
        "Attempting to run on a sm 7.5 gpu.",
    ),
]

# The same failures as they appear in the wild, with the variable parts filled in.
REAL: list[tuple[str, str]] = [
    (
        "driver-too-old",
        "RuntimeError: The NVIDIA driver on your system is too old (found version 11040). "
        "Please update your GPU driver by downloading and installing a new version from the "
        "URL: http://www.nvidia.com/Download/index.aspx",
    ),
    (
        "gpu-too-old-for-pytorch",
        "UserWarning: Found GPU0 Tesla K80 which is of cuda capability 3.7. PyTorch no longer "
        "supports this GPU because it is too old. The minimum cuda capability supported by "
        "this library is 5.0.",
    ),
    (
        "nccl-memlock",
        "node3:88:120 [1] NCCL WARN Call to ibv_reg_mr failed with error Cannot allocate memory",
    ),
    (
        "docker-socket-permission",
        "permission denied while trying to connect to the Docker daemon socket at "
        'unix:///var/run/docker.sock: Get "http://%2Fvar%2Frun%2Fdocker.sock/v1.47/version": '
        "dial unix /var/run/docker.sock: connect: permission denied",
    ),
    ("cuda-unavailable-silently", ">>> torch.cuda.is_available()\nFalse"),
    (
        "disk-full",
        "Unexpected error while saving file: big.ipynb [Errno 2] No such file or directory: "
        "'/workspace/.~big.ipynb'",
    ),
    ("disk-full", "OSError: [Errno 28] No space left on device"),
    (
        "image-cuda-newer-than-driver",
        "nvidia-container-cli: requirement error: unsatisfied condition: cuda >= 13.0.2, please "
        "update your driver to a newer version, or use an earlier cuda container: unknown",
    ),
]


def test_every_failure_mode_is_exercised_by_an_exact_text() -> None:
    ids = {m.id for m in load_failures()}
    covered = {i for i, _ in EXACT} | {i for i, _ in REAL}
    assert covered == ids


@pytest.mark.parametrize(("expected", "text"), EXACT + REAL, ids=lambda v: str(v)[:40])
def test_exact_text_is_explained_first_by_its_mode(expected: str, text: str) -> None:
    matches = explain(text)
    assert matches, f"no failure mode matched {text!r}"
    assert matches[0].id == expected, [m.id for m in matches]
    first = matches[0]
    assert first.cause and first.fix and first.source


@pytest.mark.parametrize(("expected", "text"), EXACT, ids=lambda v: str(v)[:40])
def test_exact_text_is_found_inside_log_noise(expected: str, text: str) -> None:
    noisy = (
        "2026-11-22T14:02:59Z INFO starting trainer (world size 2)\n"
        "Epoch 3:  41%|████      | 320/782 [02:11<03:09,  2.44it/s, loss=1.93]\n"
        f"[rank0]: {text}\n"
        "    at train.py:88\n"
    )
    matches = explain(noisy)
    assert expected in [m.id for m in matches]
    match = next(m for m in matches if m.id == expected)
    assert text.splitlines()[0][:20] in match.matched  # the line itself is quoted back


@pytest.mark.parametrize(
    ("log", "expected"),
    [
        ("sm120-old-wheel.log", ["gpu-arch-not-in-build", "no-kernel-image"]),
        ("dataloader-bus-error.log", ["dataloader-shm-bus-error"]),
        ("nccl-timeout.log", ["nccl-watchdog-timeout", "torchrun-sigterm"]),
        ("nccl-shm.log", ["nccl-shm", "nccl-system-error"]),
        ("docker-gpus.log", ["docker-gpu-driver-missing"]),
        ("sshd-supervisor.log", ["sshd-no-hostkeys"]),
    ],
)
def test_logs_explain_every_cause_most_specific_first(log: str, expected: list[str]) -> None:
    matches = explain((LOGS / log).read_text("utf-8"))
    assert [m.id for m in matches] == expected


def test_generic_symptoms_come_after_specific_causes() -> None:
    text = (
        "RuntimeError: CUDA error: no kernel image is available for execution on the device\n"
        "NVIDIA GeForce RTX 5090 with CUDA capability sm_120 is not compatible with the "
        "current PyTorch installation.\n"
    )
    assert [m.id for m in explain(text)] == ["gpu-arch-not-in-build", "no-kernel-image"]


@pytest.mark.parametrize(
    "text",
    [
        "Segmentation fault (core dumped)",
        "ModuleNotFoundError: No module named 'peft'",
        "everything is fine",
        "",
    ],
)
def test_unknown_text_matches_nothing(text: str) -> None:
    assert explain(text) == []


def test_matched_line_is_trimmed_for_huge_lines() -> None:
    text = "x" * 5000 + " Failed to initialize NVML: Unknown Error " + "y" * 5000
    [match] = explain(text)
    assert len(match.matched) <= 240


def test_data_file_is_valid_and_every_mode_is_complete() -> None:
    modes = load_failures()
    assert len(modes) >= 30
    for mode in modes:
        assert mode.id == mode.id.lower() and " " not in mode.id
        assert mode.cause.strip() and mode.fix.strip() and mode.source.strip()
        assert not mode.url or mode.url.startswith("https://")


def test_a_pattern_that_does_not_compile_is_refused() -> None:
    with pytest.raises(ValueError, match="does not compile"):
        FailureMode(id="x", title="x", patterns=["(unclosed"], cause="c", fix="f", source="s")


def test_data_file_ships_inside_the_package() -> None:
    from importlib import resources

    data = resources.files("torchrig.doctor").joinpath("data", "failures.toml")
    assert data.is_file()
