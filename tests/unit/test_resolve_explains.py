"""Issue 12, items 1-5: the resolver is right on aarch64 and every message it gives is true.

Black-box through `resolve` and `torchrig plan`: what a person reads must name the
candidate, point the right way (newer / older torch), never claim that a build left out of
torchrig's data does not exist, and use one driver rule everywhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from packaging.version import Version

from torchrig.cli.main import main
from torchrig.compat.model import load_compat
from torchrig.compat.resolve import Resolution, resolve
from torchrig.errors import ResolutionError
from torchrig.host.facts import Driver, Gpu, HostFacts, System
from torchrig.spec.load import parse_spec

GH200 = ("NVIDIA GH200 480GB", "9.0")
GB10 = ("NVIDIA GB10", "12.1")
H100 = ("NVIDIA H100 80GB HBM3", "9.0")
V100 = ("Tesla V100-SXM2-32GB", "7.0")
T4 = ("Tesla T4", "7.5")
RTX5090 = ("NVIDIA GeForce RTX 5090", "12.0")


def host(*gpus: tuple[str, str], driver: str | None = None, arch: str = "x86_64") -> HostFacts:
    return HostFacts(
        system=System(arch=arch, cpus=16, memory_bytes=128 << 30),
        driver=Driver(version=driver) if driver else None,
        gpus=[
            Gpu(index=i, name=name, cc=cc, uuid=f"GPU-{i:04d}", source="fixture")
            for i, (name, cc) in enumerate(gpus)
        ],
    )


def run(body: str, facts: HostFacts) -> Resolution:
    return resolve(parse_spec('[project]\nname = "t"\n' + body), facts, load_compat())


def fails(body: str, facts: HostFacts) -> ResolutionError:
    with pytest.raises(ResolutionError) as caught:
        run(body, facts)
    return caught.value


# --- 1. aarch64 with torch <= 2.10 ------------------------------------------------------------


@pytest.mark.parametrize(
    ("gpu", "version", "torch_line"),
    [(GH200, "2.9", "2.9"), (GB10, "2.10", "2.10"), (GH200, "2.10", "2.10")],
)
def test_aarch64_cuda_builds_of_2_9_and_2_10_resolve(
    gpu: tuple[str, str], version: str, torch_line: str
) -> None:
    result = run(f'[torch]\nversion = "{version}"\n', host(gpu, driver="580.95.05", arch="aarch64"))
    assert result.torch.startswith(torch_line + ".")
    assert result.cuda, "a CUDA build, not the CPU-only PyPI wheel"
    assert result.index == f"https://download.pytorch.org/whl/{result.variant}"
    assert result.requirements[0] == f"torch=={result.torch}+{result.variant}"
    assert result.gpus[0].kernels != "?"


def test_the_aarch64_builds_cite_a_source_with_an_address() -> None:
    compat = load_compat()
    urls = {s.key: s.url for s in compat.sources}
    for line in ("2.9", "2.10"):
        release = compat.release(line)
        assert release is not None
        for name in ("cu128", "cu130"):
            variant = release.variant(name)
            assert variant is not None and "aarch64" in variant.platforms, (line, name)
            assert variant.arch_aarch64, (line, name)
            assert any(urls.get(key, "").startswith("https://") for key in variant.sources)


def test_a_build_left_out_of_the_data_is_never_said_not_to_exist() -> None:
    # 2.8 has no aarch64 CUDA build in the data; cu118 is not a build of 2.15 in the data.
    texts = [
        fails(
            '[torch]\nversion = "2.8"\nvariant = "cu128"\n',
            host(GH200, driver="580.95.05", arch="aarch64"),
        ).one_line(),
        fails('[torch]\nversion = "2.15"\nvariant = "cu118"\n', host()).one_line(),
    ]
    assert "no aarch64 build in torchrig's data" in texts[0]
    assert "cu118: not in torchrig's data" in texts[1]
    for text in texts:
        assert "CPU-only" not in text and "does not exist" not in text
        assert " has no " not in text and "no aarch64 build (" not in text


# --- 2. plan --json when nothing fits ----------------------------------------------------------


def _files(tmp_path: Path, spec: str, facts: HostFacts) -> list[str]:
    (tmp_path / "torchrig.toml").write_text('[project]\nname = "t"\n' + spec)
    (tmp_path / "host.json").write_text(facts.to_json())
    return ["--spec", str(tmp_path / "torchrig.toml"), "--host", str(tmp_path / "host.json")]


def test_plan_json_lists_every_rejection_when_nothing_fits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _files(tmp_path, '[torch]\nversion = "2.6"\n', host(RTX5090, driver="580.95.05"))
    assert main(["plan", *argv, "--json"]) == 3
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["chosen"] is None
    tried = int(captured.err.split("tried ")[1].split(" ")[0])
    assert len(data["rejected"]) == tried >= 3
    for item in data["rejected"]:
        assert item["torch"].startswith("2.6.") and item["variant"] and item["reason"]
    assert captured.err.count("\n") == 1 and data["error"] in captured.err


def test_plan_json_names_the_chosen_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _files(tmp_path, "", host(H100, driver="580.95.05"))
    assert main(["plan", *argv, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["chosen"] == {
        "torch": data["resolution"]["torch"],
        "variant": data["resolution"]["variant"],
    }


# --- 3. every rejection names its candidate ----------------------------------------------------


@pytest.mark.parametrize(
    ("body", "facts"),
    [
        # Builds that pass but lose to a preferred one are listed as rejected too.
        ('[torch]\nversion = "2.7"\n', host(T4, driver="570.124.06")),
        ("", host(H100)),
        ("", host(T4, driver="470.82.01")),
        ("", host(V100, H100, driver="580.95.05")),
        ('[torch]\nversion = "2.9"\n', host(GH200, driver="580.95.05", arch="aarch64")),
    ],
    ids=["t4-570-2.7", "h100-no-driver", "t4-470", "v100-h100", "gh200-2.9"],
)
def test_every_rejection_names_version_and_variant(body: str, facts: HostFacts) -> None:
    result = run(body, facts)
    assert result.rejected
    for rejection in result.rejected:
        label = f"torch {rejection.torch} {rejection.variant}"
        assert rejection.reason.startswith(label), rejection.reason


# --- 4. the kernel fix points the right way, within the data -----------------------------------


def test_a_gpu_too_new_for_the_torch_asked_says_newer() -> None:
    fix = fails('[torch]\nversion = "2.6"\n', host(RTX5090, driver="580.95.05")).fix or ""
    assert "pick a newer torch.version" in fix and "older" not in fix
    first = Version(fix.split("newer torch.version: ")[1].split(" ")[0])
    # The first release the data gives sm_120 kernels: what the fix names, no earlier.
    assert run(f'[torch]\nversion = "{first}"\n', host(RTX5090, driver="580.95.05")).cuda


def test_a_gpu_too_old_for_the_torch_asked_says_older() -> None:
    fix = fails('[torch]\nversion = "2.15"\n', host(V100, driver="580.95.05")).fix or ""
    assert "pick an older torch.version" in fix and "newer" not in fix
    last = fix.split("older torch.version: ")[1].split(" have ")[0].split(" … ")[-1]
    assert run(f'[torch]\nversion = "{last}"\n', host(V100, driver="580.95.05")).torch == last


def test_the_kernel_fix_names_only_what_the_data_can_satisfy() -> None:
    # V100 (sm_70) and RTX 5090 (sm_120) in one workbench: only cu128 of 2.8-2.10 has both.
    mixed = host(V100, RTX5090, driver="580.95.05")
    fix = fails('[torch]\nversion = "2.15"\n', mixed).fix or ""
    span = fix.split("older torch.version: ")[1].split(" have ")[0]
    low, high = span.split(" … ")
    for version in (low, high):
        assert run(f'[torch]\nversion = "{version}"\n', mixed).torch == version
    # Kepler-era sm_35 is in no build of the data: say so instead of naming a version.
    fix = fails("", host(("Tesla K40m", "3.5"), driver="470.82.01")).fix or ""
    assert "no build in torchrig's data has kernels for Tesla K40m (sm_35)" in fix


# --- 5. a GPU with no driver loaded ------------------------------------------------------------


def test_no_driver_loaded_is_said_first_with_the_same_driver_rule() -> None:
    result = run("", host(H100))
    toolkit = load_compat().toolkit_driver(result.cuda)
    assert toolkit is not None
    warning = next(w for w in result.warnings if "driver" in w)
    assert warning.startswith("no NVIDIA driver is loaded")
    assert f">= {toolkit.min_driver}" in warning
    # The rule the checks use: the toolkit's own driver clears the caveat, one below does not.
    clean = run(f'[torch]\nvariant = "{result.variant}"\n', host(H100, driver=toolkit.min_driver))
    assert not any("minor-version" in w for w in clean.warnings)


def test_a_release_with_no_build_for_the_arch_says_none_rather_than_an_empty_list() -> None:
    # A data set whose 2.8 lists nothing for aarch64 once read "(it lists  for aarch64)".
    compat = load_compat()
    releases = [
        release.model_copy(
            update={
                "variants": [
                    variant.model_copy(update={"platforms": ["x86_64"]})
                    for variant in release.variants
                ]
            }
        )
        if release.line == "2.8"
        else release
        for release in compat.releases
    ]
    spec = parse_spec('[project]\nname = "t"\n[torch]\nversion = "2.8"\n')
    with pytest.raises(ResolutionError) as caught:
        resolve(
            spec,
            host(GH200, driver="580.95.05", arch="aarch64"),
            compat.model_copy(update={"releases": releases}),
        )
    text = caught.value.one_line()
    assert "none for aarch64" in text
    assert "it lists  for" not in text and "lists  " not in text
