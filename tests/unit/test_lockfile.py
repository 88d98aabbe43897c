"""The lock format, its exports and the check, without uv (packages made up in the test)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.golden_util import GOLDEN, assert_golden
from torchrig.compat.model import load_compat
from torchrig.errors import UsageError
from torchrig.lock.inputs import lock_inputs, stack_packages
from torchrig.lock.lockfile import (
    LockFile,
    Target,
    constraints_txt,
    read_lock,
    render_lock,
    requirements_txt,
)
from torchrig.lock.make import check_lock
from torchrig.lock.uv import LockedPackage, _parse_index_annotations
from torchrig.spec.load import parse_spec, spec_digest

SPEC = '[project]\nname = "demo"\n[torch]\nversion = "2.13.0"\n'


def _pkg(name: str, version: str, size: int = 1000, marker: str = "") -> LockedPackage:
    return LockedPackage(
        name=name,
        version=version,
        index="https://pypi.org/simple",
        file=f"{name.replace('-', '_')}-{version}-py3-none-any.whl",
        url=f"https://files.example/{name}-{version}.whl",
        size=size,
        sha256=hashlib.sha256(f"{name}=={version}".encode()).hexdigest(),
        marker=marker,
    )


def _lock(spec_text: str = SPEC) -> LockFile:
    spec = parse_spec(spec_text)
    inputs = lock_inputs(spec, python="3.12", platform="x86_64-manylinux_2_39")
    target = Target(
        variant="cu130",
        torch="2.13.0",
        cuda="13.0.3",
        python="3.12",
        platform="x86_64-manylinux_2_39",
        torch_index="https://pypi.org/simple",
        inputs_digest=inputs.digest(),
        requirements=["torch==2.13.0", "torchvision==0.28.0", *inputs.packages],
        packages=[
            _pkg("jupyterlab", "4.6.6", 17_000_000),
            _pkg("nvidia-cudnn-cu13", "9.20.0.48", 366_000_000, "sys_platform == 'linux'"),
            _pkg("torch", "2.13.0", 526_000_000),
            _pkg("triton", "3.7.1", 180_000_000),
        ],
    )
    return LockFile(torchrig="0.1.0", spec_digest=spec_digest(spec), targets=[target])


def test_render_is_golden_and_reads_back(tmp_path: Path) -> None:
    lock = _lock()
    text = render_lock(lock)
    assert_golden(GOLDEN / "lock" / "torchrig.lock", text)
    path = tmp_path / "torchrig.lock"
    path.write_text(text)
    assert read_lock(path) == lock


def test_header_says_who_made_it_and_how_to_regenerate() -> None:
    head = render_lock(_lock(), command="torchrig lock --variant cu130").splitlines()[:5]
    assert any("torchrig 0.1.0" in line and "sha256:" in line for line in head)
    assert any("Regenerate: torchrig lock --variant cu130" in line for line in head)


def test_requirements_export_pins_every_package_with_its_hash() -> None:
    text = requirements_txt(_lock().targets[0])
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert len(lines) == 4
    assert all("==" in ln and "--hash=sha256:" in ln for ln in lines)
    assert "nvidia-cudnn-cu13==9.20.0.48 ; sys_platform == 'linux' --hash" in text


def test_constraints_guard_only_the_gpu_stack() -> None:
    text = constraints_txt(_lock().targets[0])
    assert "torch==2.13.0" in text and "triton==3.7.1" in text
    assert "nvidia-cudnn-cu13==9.20.0.48" in text
    assert "jupyterlab" not in text


def test_check_passes_for_an_unchanged_spec_and_ignores_non_package_keys() -> None:
    lock = _lock()
    compat = load_compat()
    assert check_lock(lock, parse_spec(SPEC), compat) == []
    ports_changed = SPEC + "[services.ssh]\nport = 2200\n"
    assert check_lock(lock, parse_spec(ports_changed), compat) == []


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ('[python]\npackages = ["peft"]\n', "packages or sources changed"),
        ('[python]\nstack = "minimal"\n', "packages or sources changed"),
        ('[sources]\nfind_links = ["/srv/wheels"]\n', "packages or sources changed"),
        (
            '[services.jupyter]\nenabled = false\nport = 8888\n[python]\nstack = "none"\n',
            "packages or sources changed",
        ),
        ('[python]\nversion = "3.11"\n', "Python 3.11"),
    ],
)
def test_check_names_what_changed(change: str, fragment: str) -> None:
    problems = check_lock(_lock(), parse_spec(SPEC + change), load_compat())
    assert problems and fragment in problems[0]


def test_check_catches_a_new_torch_request_and_variant() -> None:
    compat = load_compat()
    newer = SPEC.replace('"2.13.0"', '"2.14"')
    assert "no longer matches" in check_lock(_lock(), parse_spec(newer), compat)[0]
    variant = SPEC + 'variant = "cu126"\n'
    assert "torch.variant is now cu126" in check_lock(_lock(), parse_spec(variant), compat)[0]


def test_a_latest_lock_stays_fresh_when_new_torch_releases_appear() -> None:
    latest = '[project]\nname = "demo"\n'
    lock = _lock(latest)
    assert check_lock(lock, parse_spec(latest), load_compat()) == []


def test_stack_adds_service_packages_once() -> None:
    spec = parse_spec('[project]\nname = "x"\n[python]\nstack = "none"\npackages = ["numpy"]\n')
    packages = stack_packages(spec)
    assert packages.count("jupyterlab") == 1  # jupyter is on by default
    assert "numpy" in packages and "pydantic>=2.7,<3" in packages


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "does not exist"),
        ("not = [toml", "not a readable lock"),
        ("version = 1\n", "not a torchrig lock"),
        ('version = 9\ntorchrig = "0"\nspec_digest = ""\ntargets = []\n', "lock format 9"),
    ],
)
def test_bad_lock_files_are_usage_errors(
    tmp_path: Path, content: str | None, fragment: str
) -> None:
    path = tmp_path / "torchrig.lock"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UsageError) as caught:
        read_lock(path)
    assert fragment in caught.value.one_line()


def test_index_annotations_are_parsed() -> None:
    text = (
        "numpy==2.4.1 \\\n    # via -r r.in\n    # from file:///opt/pypi-more/simple\n"
        "six==1.17.0\n    # from https://pypi.org/simple\n"
        "Typing_Extensions==4.0\n    # from https://mirror.example/simple\n"
    )
    assert _parse_index_annotations(text) == {
        "numpy": "file:///opt/pypi-more/simple",
        "six": "https://pypi.org/simple",
        "typing-extensions": "https://mirror.example/simple",
    }
