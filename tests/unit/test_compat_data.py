"""The bundled compatibility data: it loads, cites real sources, and states the facts the
resolver relies on (FACTS.md T1-T6). A failing assertion here means a data file changed a
fact; check the cited source before changing the test."""

from __future__ import annotations

import re
from datetime import date

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from torchrig.compat.model import Compat, Release, Variant, load_compat

ARCH_RE = re.compile(r"^(sm|compute)_\d+$")
CC_RE = re.compile(r"^\d+\.\d$")
DRIVER_RE = re.compile(r"^\d+(\.\d+){0,2}$")
CU126_X86 = ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]
PYPI_AARCH64_CUDA = ["sm_80", "sm_90", "sm_100", "sm_110", "sm_120"]


@pytest.fixture(scope="module")
def compat() -> Compat:
    return load_compat()


def _line(release: Release) -> Version:
    return Version(release.line)


def _variants(compat: Compat) -> list[tuple[Release, Variant]]:
    return [(r, v) for r in compat.releases for v in r.variants]


def _archs(variant: Variant) -> list[str]:
    return variant.arch_x86_64 + variant.arch_aarch64


def _has(compat: Compat, line: str, variant: str) -> Variant:
    release = compat.release(line)
    assert release is not None, line
    found = release.variant(variant)
    assert found is not None, f"{line} {variant}"
    return found


# --- integrity -------------------------------------------------------------------------------


def test_every_cited_source_exists(compat: Compat) -> None:
    keys = [s.key for s in compat.sources]
    assert len(keys) == len(set(keys)), "duplicate source keys"
    assert "M" in keys
    cited: list[tuple[str, list[str]]] = []
    for r in compat.releases:
        cited.append((f"release {r.line}", r.sources))
        cited += [(f"patch {p.version}", p.sources) for p in r.patches]
        cited += [(f"{r.line} {v.name}", v.sources) for v in r.variants]
    cited += [(f"toolkit {t.version}", t.sources) for t in compat.toolkits]
    cited += [(f"minor_compat {m.major}", m.sources) for m in compat.minor_compat]
    cited += [(f"gpu {g.name}", g.sources) for g in compat.gpus]
    cited += [(f"distribution {d.ref}", d.sources) for d in compat.distributions]
    for what, sources in cited:
        assert sources, f"{what} cites no source"
        missing = set(sources) - set(keys)
        assert not missing, f"{what} cites unknown sources {missing}"


def test_sources_have_titles_and_web_addresses(compat: Compat) -> None:
    for s in compat.sources:
        assert s.title.strip(), s.key
        assert not s.url or s.url.startswith("https://"), s.key


def test_release_lines_are_2_4_to_2_15_in_order(compat: Compat) -> None:
    lines = [r.line for r in compat.releases]
    assert lines == [f"2.{n}" for n in range(4, 16)]


def test_releases_are_well_formed(compat: Compat) -> None:
    for r in compat.releases:
        assert r.patches, r.line
        names = [v.name for v in r.variants]
        assert len(names) == len(set(names)), f"{r.line}: duplicate variants"
        assert r.variant(r.pypi_x86_64) is not None, f"{r.line}: no {r.pypi_x86_64} variant"
        assert r.variant(r.pypi_aarch64) is not None, f"{r.line}: no {r.pypi_aarch64} variant"
        assert "aarch64" in _has(compat, r.line, r.pypi_aarch64).platforms
        spec = SpecifierSet(r.requires_python)
        for py in r.python:
            assert re.fullmatch(r"3\.\d+", py), f"{r.line}: python {py}"
            assert spec.contains(f"{py}.0"), f"{r.line}: {py} outside {r.requires_python}"
        assert r.python == sorted(r.python, key=Version)


def test_patches_belong_to_their_line_and_are_dated(compat: Compat) -> None:
    previous = date.min
    for r in compat.releases:
        versions = [p.version for p in r.patches]
        assert versions == sorted(versions, key=Version)
        for p in r.patches:
            assert p.version.startswith(f"{r.line}."), p.version
            assert Version(p.version).release[:2] == _line(r).release
            day = date.fromisoformat(p.date)
            assert day > previous, f"{p.version} is not newer than the patch before"
            previous = day
            for companion in (p.torchvision, p.torchaudio, p.triton):
                assert companion == "" or Version(companion), p.version


def test_variants_are_well_formed(compat: Compat) -> None:
    for r, v in _variants(compat):
        label = f"{r.line} {v.name}"
        if v.name == "cpu":
            assert v.cuda == "" and not _archs(v), label
            assert v.platforms == ["x86_64", "aarch64"], label
            continue
        assert re.fullmatch(r"cu\d{3}", v.name), label
        digits = v.name[2:]
        assert Version(v.cuda).release[:2] == (int(digits[:2]), int(digits[2:])), label
        assert "x86_64" in v.platforms, label
        assert v.arch_x86_64, f"{label}: no x86_64 arch list"
        if "aarch64" in v.platforms:
            assert v.arch_aarch64, f"{label}: aarch64 build without an arch list"
        else:
            assert not v.arch_aarch64, f"{label}: aarch64 arch list without a build"
        for arch in _archs(v):
            assert ARCH_RE.match(arch), f"{label}: {arch}"
        for archs in (v.arch_x86_64, v.arch_aarch64):
            assert len(archs) == len(set(archs)), f"{label}: duplicate arch"


def test_every_cuda_build_has_a_toolkit_row(compat: Compat) -> None:
    for r, v in _variants(compat):
        if not v.cuda:
            continue
        row = compat.toolkit_driver(v.cuda)
        assert row is not None, f"{r.line} {v.name}"
        assert Version(row.version).release[:2] == Version(v.cuda).release[:2]
        assert compat.minor_compat_for(v.cuda_major or 0) is not None


def test_toolkits_are_well_formed(compat: Compat) -> None:
    versions = [Version(t.version) for t in compat.toolkits]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    drivers = [tuple(int(x) for x in t.min_driver.split(".")) for t in compat.toolkits]
    assert drivers == sorted(drivers), "a newer toolkit never needs an older driver"
    for t in compat.toolkits:
        assert DRIVER_RE.match(t.min_driver), t.version
        assert t.label.startswith(f"{Version(t.version).major}.{Version(t.version).minor} ")


def test_gpus_are_well_formed(compat: Compat) -> None:
    names = [g.name for g in compat.gpus]
    assert len(names) == len(set(names))
    for g in compat.gpus:
        assert CC_RE.match(g.cc), g.name
        major, minor = (int(x) for x in g.cc.split("."))
        assert 6 <= major <= 12 and 0 <= minor <= 9, g.name
        assert g.match and all(m.strip() for m in g.match), g.name


# --- CUDA drivers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cuda", "driver"),
    [
        ("11.8", "520.61.05"),
        ("12.1", "530.30.02"),
        ("12.4.1", "550.54.15"),
        ("12.6.3", "560.35.05"),
        ("12.8", "570.26"),
        ("12.8.1", "570.124.06"),
        ("13.0", "580.65.06"),
        ("13.0.2", "580.95.05"),
        ("13.0.3", "580.95.05"),  # no 13.0.3 row: the newest 13.0 row not newer than it
        ("13.2.2", "595.58.03"),
        ("13.3.1", "610.43.02"),
    ],
)
def test_toolkit_driver(compat: Compat, cuda: str, driver: str) -> None:
    row = compat.toolkit_driver(cuda)
    assert row is not None and row.min_driver == driver


@pytest.mark.parametrize(("major", "driver"), [(13, "580"), (12, "525.60.13"), (11, "450.80.02")])
def test_minor_version_compatibility(compat: Compat, major: int, driver: str) -> None:
    row = compat.minor_compat_for(major)
    assert row is not None and row.min_driver == driver


@pytest.mark.parametrize(
    ("line", "driver"),
    [
        ("2.4", "530.30.02"),
        ("2.5", "550.54.15"),
        ("2.6", "550.54.15"),
        ("2.7", "560.35.05"),
        ("2.11", "580.95.05"),
        ("2.12", "580.95.05"),
        ("2.15", "595.58.03"),
    ],
)
def test_pypi_default_driver_needs(compat: Compat, line: str, driver: str) -> None:
    """T5c: the toolkit driver of each PyPI default x86_64 wheel."""
    release = compat.release(line)
    assert release is not None
    variant = _has(compat, line, release.pypi_x86_64)
    row = compat.toolkit_driver(variant.cuda)
    assert row is not None and row.min_driver == driver


# --- GPU names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("product", "record", "cc"),
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM", "9.0"),
        ("NVIDIA H100 PCIe", "H100 PCIe", "9.0"),
        ("NVIDIA H100 NVL", "H100 NVL", "9.0"),
        ("NVIDIA H200", "H200", "9.0"),
        ("NVIDIA GH200 480GB", "GH200", "9.0"),
        ("Tesla V100-SXM2-32GB", "V100 SXM2 32GB", "7.0"),
        ("Tesla V100-SXM2-16GB", "V100 SXM2 16GB", "7.0"),
        ("Tesla V100-PCIE-32GB", "V100 PCIe 32GB", "7.0"),
        ("Tesla V100S-PCIE-32GB", "V100", "7.0"),
        ("Tesla T4", "T4", "7.5"),
        ("Tesla P100-PCIE-16GB", "P100", "6.0"),
        ("NVIDIA GeForce GTX 1080 Ti", "GTX 1080 Ti", "6.1"),
        ("NVIDIA GeForce RTX 2080 Ti", "RTX 2080", "7.5"),
        ("NVIDIA A100-SXM4-80GB", "A100 80GB SXM", "8.0"),
        ("NVIDIA A100-SXM4-40GB", "A100 40GB", "8.0"),
        ("NVIDIA A100-PCIE-40GB", "A100 40GB", "8.0"),
        ("NVIDIA A100 80GB PCIe", "A100 80GB PCIe", "8.0"),
        ("NVIDIA A100", "A100", "8.0"),
        ("NVIDIA A10", "A10", "8.6"),
        ("NVIDIA A10G", "A10G", "8.6"),
        ("NVIDIA GeForce RTX 3090", "RTX 3090", "8.6"),
        ("NVIDIA L4", "L4", "8.9"),
        ("NVIDIA L40", "L40", "8.9"),
        ("NVIDIA L40S", "L40S", "8.9"),
        ("NVIDIA GeForce RTX 4090", "RTX 4090", "8.9"),
        ("NVIDIA B200", "B200", "10.0"),
        ("NVIDIA GB200", "GB200", "10.0"),
        ("NVIDIA Thor", "Jetson Thor", "11.0"),
        ("NVIDIA GeForce RTX 5090", "RTX 5090", "12.0"),
        ("NVIDIA GB10", "DGX Spark GB10", "12.1"),
    ],
)
def test_gpu_for_nvml_names(compat: Compat, product: str, record: str, cc: str) -> None:
    gpu = compat.gpu_for(product)
    assert gpu is not None, product
    assert (gpu.name, gpu.cc) == (record, cc)
    assert compat.gpu_for(product.upper()) == gpu, "matching ignores case"


@pytest.mark.parametrize("product", ["NVIDIA RTX A1000", "NVIDIA GeForce RTX 3060", "Intel Arc"])
def test_gpu_for_unknown_names(compat: Compat, product: str) -> None:
    assert compat.gpu_for(product) is None


def test_gpu_peaks_are_dense_and_plausible(compat: Compat) -> None:
    h100 = compat.gpu_for("NVIDIA H100 80GB HBM3")
    assert h100 is not None
    assert (h100.bf16_tflops, h100.tf32_tflops, h100.fp32_tflops) == (989.0, 494.7, 67.0)
    assert (h100.memory_gb, h100.bandwidth_gbs, h100.nvlink_gbs) == (80.0, 3350.0, 900.0)
    v100 = compat.gpu_for("Tesla V100-SXM2-32GB")
    assert v100 is not None and v100.bf16_tflops is None and v100.tf32_tflops is None
    for g in compat.gpus:
        if g.bf16_tflops and g.tf32_tflops:
            # TF32 runs at half the BF16 rate (the L40S datasheet rounds: 183 vs 362.05).
            assert g.tf32_tflops <= g.bf16_tflops * 0.55, g.name
        if g.bf16_tflops and g.fp32_tflops:
            assert g.fp32_tflops < g.bf16_tflops, g.name


# --- the facts the resolver relies on --------------------------------------------------------


def test_no_cuda13_build_has_volta(compat: Compat) -> None:
    for r, v in _variants(compat):
        if v.cuda_major == 13:
            assert "sm_70" not in _archs(v), f"{r.line} {v.name}"


def test_cu126_builds_stop_at_hopper(compat: Compat) -> None:
    for r, v in _variants(compat):
        if v.name == "cu126":
            assert v.arch_x86_64 == CU126_X86, r.line
            assert not {"sm_100", "sm_120"} & set(_archs(v)), r.line


def test_volta_in_pypi_default_through_2_10_and_in_cu126_through_2_14(compat: Compat) -> None:
    for r in compat.releases:
        pypi = _has(compat, r.line, r.pypi_x86_64)
        assert ("sm_70" in pypi.arch_x86_64) == (_line(r) <= Version("2.10")), r.line
        cu126 = r.variant("cu126")
        if _line(r) >= Version("2.7"):
            assert (cu126 is not None) == (_line(r) <= Version("2.14")), r.line
        if cu126:
            assert "sm_70" in cu126.arch_x86_64, r.line


def test_2_15_has_only_cuda13_builds(compat: Compat) -> None:
    release = compat.release("2.15")
    assert release is not None
    assert sorted(v.name for v in release.variants) == ["cpu", "cu130", "cu132"]
    assert release.pypi_x86_64 == release.pypi_aarch64 == "cu132"
    assert release.python[0] == "3.11"


def test_no_cu128_from_2_12(compat: Compat) -> None:
    for r in compat.releases:
        if _line(r) >= Version("2.12"):
            assert r.variant("cu128") is None, r.line


def test_aarch64_pypi_is_cpu_only_through_2_10(compat: Compat) -> None:
    for r in compat.releases:
        if _line(r) <= Version("2.10"):
            assert r.pypi_aarch64 == "cpu", r.line
        else:
            assert r.pypi_aarch64 == r.pypi_x86_64 != "cpu", r.line
            variant = _has(compat, r.line, r.pypi_aarch64)
            assert variant.arch_aarch64 == PYPI_AARCH64_CUDA, r.line


def test_pypi_wheels_carry_no_ptx(compat: Compat) -> None:
    for r in compat.releases:
        x86 = _has(compat, r.line, r.pypi_x86_64)
        arm = _has(compat, r.line, r.pypi_aarch64)
        for arch in x86.arch_x86_64 + arm.arch_aarch64:
            assert arch.startswith("sm_"), f"{r.line}: {arch}"


def test_blackwell_first_in_2_7_cu128(compat: Compat) -> None:
    cu128 = _has(compat, "2.7", "cu128")
    assert {"sm_100", "sm_120"} <= set(cu128.arch_x86_64)
    assert "sm_70" not in cu128.arch_x86_64
    for r, v in _variants(compat):
        if _line(r) < Version("2.7"):
            assert not {"sm_100", "sm_120"} & set(_archs(v)), f"{r.line} {v.name}"
    pypi = [
        r.line
        for r in compat.releases
        if "sm_100" in _has(compat, r.line, r.pypi_x86_64).arch_x86_64
    ]
    assert pypi[0] == "2.8"


def test_kepler_only_in_cu118_and_maxwell_pascal_only_up_to_cuda_12_6(compat: Compat) -> None:
    for r, v in _variants(compat):
        archs = set(_archs(v))
        if "sm_37" in archs:
            assert v.name == "cu118", f"{r.line} {v.name}"
        if {"sm_50", "sm_60"} & archs:
            assert Version(v.cuda) < Version("12.8"), f"{r.line} {v.name}"


def test_thor_only_in_aarch64_cuda13_builds(compat: Compat) -> None:
    for r, v in _variants(compat):
        assert "sm_110" not in v.arch_x86_64, f"{r.line} {v.name}"
        if "sm_110" in v.arch_aarch64:
            assert v.cuda_major == 13, f"{r.line} {v.name}"


@pytest.mark.parametrize(
    ("line", "variant", "cuda"),
    [
        ("2.4", "cu121", "12.1"),
        ("2.5", "cu124", "12.4.1"),
        ("2.6", "cu124", "12.4.1"),
        ("2.7", "cu126", "12.6.3"),
        ("2.8", "cu128", "12.8"),
        ("2.11", "cu130", "13.0.2"),
        ("2.12", "cu130", "13.0.2"),
        ("2.13", "cu130", "13.0.3"),
        ("2.14", "cu130", "13.0.3"),
        ("2.15", "cu132", "13.2.2"),
    ],
)
def test_pypi_default_variants(compat: Compat, line: str, variant: str, cuda: str) -> None:
    release = compat.release(line)
    assert release is not None and release.pypi_x86_64 == variant
    assert _has(compat, line, variant).cuda == cuda


def test_inferred_arch_lists_are_marked(compat: Compat) -> None:
    for line, name in [("2.15", "cu130"), ("2.6", "cu118"), ("2.6", "cu126"), ("2.5", "cu121")]:
        assert _has(compat, line, name).arch_uncertain, f"{line} {name}"
    for line, name in [("2.11", "cu130"), ("2.15", "cu132"), ("2.8", "cu128")]:
        assert not _has(compat, line, name).arch_uncertain, f"{line} {name}"


def test_torchaudio_ends_at_2_11(compat: Compat) -> None:
    for r in compat.releases:
        for p in r.patches:
            if Version(p.version) >= Version("2.12"):
                assert p.torchaudio == "", p.version
            else:
                assert p.torchaudio == p.version, p.version
    release = compat.release("2.11")
    assert release is not None
    assert not release.patches[0].torchaudio_pin, "torchaudio 2.11.0 declares no torch requirement"


@pytest.mark.parametrize(
    ("ref", "python", "glibc"),
    [
        ("debian:bookworm", "3.11", "2.36"),
        ("debian:trixie", "3.13", "2.41"),
        ("ubuntu:jammy", "3.10", "2.35"),
        ("ubuntu:noble", "3.12", "2.39"),
    ],
)
def test_distributions(compat: Compat, ref: str, python: str, glibc: str) -> None:
    dist = compat.distribution(ref)
    assert dist is not None
    assert (dist.python, dist.glibc) == (python, glibc)
    assert dist.image == f"docker.io/library/{ref}"
    if dist.name == "ubuntu":
        assert dist.mirror_aarch64 == "http://ports.ubuntu.com/ubuntu-ports"
        assert dist.components == ["main", "universe"]
    else:
        assert dist.mirror == "http://deb.debian.org/debian" and not dist.mirror_aarch64
