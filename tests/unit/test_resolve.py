"""Table-driven resolver tests: GPUs × drivers × architectures × torch requests.

Each row states what a demanding user would expect, from the facts in FACTS.md.
"""

from __future__ import annotations

import pytest

from torchrig.compat.model import load_compat
from torchrig.compat.resolve import Resolution, kernels_for, resolve
from torchrig.errors import ResolutionError
from torchrig.host.facts import Driver, Gpu, HostFacts, System
from torchrig.spec.load import parse_spec

V100 = ("Tesla V100-SXM2-32GB", None)
T4 = ("Tesla T4", None)
A100 = ("NVIDIA A100-SXM4-80GB", "8.0")
RTX4090 = ("NVIDIA GeForce RTX 4090", "8.9")
H100 = ("NVIDIA H100 80GB HBM3", "9.0")
RTX5090 = ("NVIDIA GeForce RTX 5090", "12.0")
B200 = ("NVIDIA B200", "10.0")
GH200 = ("NVIDIA GH200 480GB", "9.0")


def host(
    *gpus: tuple[str, str | None], driver: str | None = None, arch: str = "x86_64"
) -> HostFacts:
    return HostFacts(
        system=System(arch=arch, cpus=16, memory_bytes=128 << 30),
        driver=Driver(version=driver, cuda="") if driver else None,
        gpus=[
            Gpu(index=i, name=name, cc=cc, uuid=f"GPU-{i:04d}", source="fixture")
            for i, (name, cc) in enumerate(gpus)
        ],
    )


def spec(body: str = "") -> object:
    return parse_spec('[project]\nname = "t"\n' + body)


def run(body: str, facts: HostFacts) -> Resolution:
    return resolve(spec(body), facts, load_compat())  # type: ignore[arg-type]


# (id, spec body, host, expected torch, expected variant)
OK_CASES = [
    ("no-gpu-latest", "", host(), "2.15.0", "cpu"),
    (
        "h100-580-latest-prefers-cu130-over-mvc-only-cu132",
        "",
        host(H100, driver="580.159.04"),
        "2.15.0",
        "cu130",
    ),
    ("h100-595-latest-pypi-cu132", "", host(H100, driver="595.58.03"), "2.15.0", "cu132"),
    (
        "h100-pinned",
        '[torch]\nversion = "2.13.0"\n',
        host(H100, driver="580.159.04"),
        "2.13.0",
        "cu130",
    ),
    (
        "h100-line",
        '[torch]\nversion = "2.12"\n',
        host(H100, driver="580.159.04"),
        "2.12.1",
        "cu130",
    ),
    (
        "h100-range",
        '[torch]\nversion = ">=2.8,<2.12"\n',
        host(H100, driver="580.159.04"),
        "2.11.0",
        "cu130",
    ),
    ("v100-535-latest-cu126", "", host(V100, driver="535.104.05"), "2.14.1", "cu126"),
    ("v100-580-latest-still-cu126", "", host(V100, driver="580.95.05"), "2.14.1", "cu126"),
    (
        "v100-old-pypi",
        '[torch]\nversion = "2.10"\n',
        host(V100, driver="570.124.06"),
        "2.10.0",
        "cu128",
    ),
    ("t4-470-cuda11", "", host(T4, driver="470.82.01"), "2.7.1", "cu118"),
    ("a100-525-cu126", "", host(A100, driver="525.60.13"), "2.14.1", "cu126"),
    ("4090-550-cu126", "", host(RTX4090, driver="550.54.15"), "2.14.1", "cu126"),
    ("b200-570-cu128", "", host(B200, driver="570.124.06"), "2.11.0", "cu128"),
    ("b200-595-pypi", "", host(B200, driver="595.58.03"), "2.15.0", "cu132"),
    ("5090-580-cu130", "", host(RTX5090, driver="580.95.05"), "2.15.0", "cu130"),
    (
        "cpu-asked-on-gpu",
        '[torch]\nvariant = "cpu"\n',
        host(H100, driver="580.159.04"),
        "2.15.0",
        "cpu",
    ),
    ("gpus-none", '[resources]\ngpus = "none"\n', host(H100, driver="580.159.04"), "2.15.0", "cpu"),
    (
        "torchaudio-caps-at-2.11",
        "[torch]\ntorchaudio = true\n",
        host(H100, driver="580.159.04"),
        "2.11.0",
        "cu130",
    ),
    (
        "python-3.10-jammy",
        '[python]\nversion = "3.10"\n',
        host(H100, driver="580.159.04"),
        "2.14.1",
        "cu130",
    ),
    ("mixed-v100-h100-all", "", host(V100, H100, driver="580.95.05"), "2.14.1", "cu126"),
    (
        "mixed-select-h100",
        '[resources]\ngpus = ["1"]\n',
        host(V100, H100, driver="580.95.05"),
        "2.15.0",
        "cu130",
    ),
    (
        "aarch64-gh200-latest",
        "",
        host(GH200, driver="580.95.05", arch="aarch64"),
        "2.15.0",
        "cu130",
    ),
    ("no-gpu-cuda-planned", '[torch]\nvariant = "cu130"\n', host(), "2.15.0", "cu130"),
]


@pytest.mark.parametrize(
    ("body", "facts", "torch", "variant"), [c[1:] for c in OK_CASES], ids=[c[0] for c in OK_CASES]
)
def test_resolves(body: str, facts: HostFacts, torch: str, variant: str) -> None:
    result = run(body, facts)
    assert (result.torch, result.variant) == (torch, variant), result.reasons
    assert result.reasons, "every resolution explains itself"


ERROR_CASES = [
    (
        "v100-2.15-no-sm70",
        '[torch]\nversion = "2.15"\n',
        host(V100, driver="580.95.05"),
        "no kernels for Tesla V100-SXM2-32GB (sm_70)",
    ),
    (
        "driver-535-cu13",
        '[torch]\nvariant = "cu130"\n',
        host(H100, driver="535.104.05"),
        "needs NVIDIA driver >= 580",
    ),
    ("5090-torch-2.6", '[torch]\nversion = "2.6"\n', host(RTX5090, driver="580.95.05"), "(sm_120)"),
    (
        "aarch64-pypi-cpu-only",
        '[torch]\nversion = "<=2.10"\n[sources]\ntorch_index = "https://pypi.org/simple"\n',
        host(GH200, driver="580.95.05", arch="aarch64"),
        "CPU-only",
    ),
    ("unknown-version", '[torch]\nversion = "3.0"\n', host(), "matches no release"),
    (
        "bookworm-with-3.12",
        '[python]\nversion = "3.12"\n[base]\ndistribution = "debian:bookworm"\n',
        host(),
        "has Python 3.11",
    ),
    ("python-3.9", '[python]\nversion = "3.9"\n', host(), "no base distribution"),
    ("gpu-index-missing", '[resources]\ngpus = ["3"]\n', host(H100, driver="580.95.05"), "GPU 3"),
    ("too-many-gpus", "[resources]\ngpus = 4\n", host(H100, driver="580.95.05"), "4 GPUs"),
    (
        "driver-470-latest-cuda13-only",
        '[torch]\nversion = "2.15"\n',
        host(H100, driver="470.82.01"),
        "needs NVIDIA driver",
    ),
    (
        "image-without-python",
        '[base]\nimage = "r.example/x:1@sha256:' + "a" * 64 + '"\n',
        host(),
        "python.version",
    ),
    ("riscv", "", HostFacts(system=System(arch="riscv64")), "riscv64"),
]


@pytest.mark.parametrize(
    ("body", "facts", "fragment"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_impossible_requests_explain_themselves(body: str, facts: HostFacts, fragment: str) -> None:
    with pytest.raises(ResolutionError) as caught:
        run(body, facts)
    text = caught.value.one_line()
    assert fragment in text
    assert "\n" not in text
    assert caught.value.fix, "an impossible request always says what to change"


def test_rejections_name_each_candidate() -> None:
    result = run("", host(V100, driver="535.104.05"))
    reasons = " | ".join(r.reason for r in result.rejected)
    assert "torch 2.15.0" in reasons and "sm_70" in reasons
    assert "needs NVIDIA driver >= 580" in reasons


def test_pypi_default_is_unpinned_local_and_index_variant_is_local() -> None:
    pypi = run('[torch]\nversion = "2.13.0"\n', host(H100, driver="580.159.04"))
    assert pypi.requirements[0] == "torch==2.13.0"
    assert pypi.index == "https://pypi.org/simple"
    other = run("", host(V100, driver="535.104.05"))
    assert other.requirements[0] == "torch==2.14.1+cu126"
    assert other.index == "https://download.pytorch.org/whl/cu126"
    assert all("+cu126" in r for r in other.requirements)


def test_cpu_from_wheelhouse_only() -> None:
    body = (
        '[torch]\nversion = "2.13.0"\nvariant = "cpu"\n[python]\nversion = "3.11"\n'
        '[sources]\ntorch_index = "none"\nfind_links = ["/opt/wheels"]\n'
    )
    result = run(body, host())
    assert result.requirements[0] == "torch==2.13.0+cpu"
    assert result.index == ""
    assert result.base.distribution == "debian:bookworm"
    assert result.platform == "x86_64-manylinux_2_36"


def test_mvc_only_driver_is_warned() -> None:
    result = run("", host(V100, driver="535.104.05"))
    assert any("minor-version compatibility" in w for w in result.warnings)


def test_old_gpus_get_feature_warnings() -> None:
    result = run("", host(V100, driver="535.104.05"))
    assert any("bf16" in w for w in result.warnings)


def test_default_base_is_noble() -> None:
    result = run("", host())
    assert result.base.distribution == "ubuntu:noble"
    assert result.python == "3.12"
    assert result.platform == "x86_64-manylinux_2_39"


def test_unknown_cc_falls_back_to_the_gpu_table() -> None:
    result = run("", host(V100, driver="535.104.05"))
    assert result.gpus[0].cc == "7.0"
    assert result.gpus[0].kernels == "sm_70"


@pytest.mark.parametrize(
    ("cc", "archs", "expected"),
    [
        ("8.9", ["sm_80", "sm_86", "sm_90"], "sm_86"),  # the closest SASS of the same major
        ("8.0", ["sm_80", "sm_86"], "sm_80"),
        ("12.1", ["sm_90", "sm_100", "sm_120"], "sm_120"),
        ("12.0", ["sm_90", "compute_90"], "compute_90"),  # only PTX: JIT-compiled
        ("7.0", ["sm_75", "sm_80"], None),  # no older-or-equal kernel of major 7
    ],
)
def test_kernels_for_picks_what_the_runtime_loads(
    cc: str, archs: list[str], expected: str | None
) -> None:
    assert kernels_for(cc, archs) == expected
