"""The lock through the real uv: a local wheelhouse (offline) and real PyPI (network)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.wheelhouse import make_wheel, sha256_of
from torchrig.cli.main import main
from torchrig.lock.lockfile import read_lock
from torchrig.lock.uv import UvRequest, compile_lock

NO_GPU_HOST = {
    "system": {"arch": "x86_64", "cpus": 2, "memory_bytes": 8 << 30},
}


def _wheelhouse(folder: Path) -> Path:
    folder.mkdir()
    # A fake CPU torch and torchrig's runtime dependencies, so the whole lock is offline.
    make_wheel(folder, "torch", "2.13.0+cpu", ("filelock",))
    make_wheel(folder, "filelock", "3.0.0")
    for name, version in (
        ("pydantic", "2.9.0"),
        ("packaging", "24.0"),
        ("rich", "13.9.0"),
        ("nvidia-ml-py", "12.560.30"),
    ):
        make_wheel(folder, name, version)
    make_wheel(folder, "alpha", "1.0", ("beta>=1",))
    make_wheel(folder, "beta", "1.0")
    make_wheel(folder, "beta", "2.0")
    return folder


def _offline_project(tmp_path: Path, wheels: Path, packages: str = '["alpha"]') -> Path:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "torchrig.toml").write_text(
        '[project]\nname = "offline"\n'
        '[torch]\nversion = "2.13.0"\nvariant = "cpu"\ntorchvision = false\n'
        f'[python]\nversion = "3.11"\nstack = "none"\npackages = {packages}\n'
        "[services.jupyter]\nenabled = false\nport = 8888\n"
        f'[sources]\nindex = "none"\ntorch_index = "none"\nfind_links = ["{wheels}"]\n'
    )
    (project / "host.json").write_text(json.dumps(NO_GPU_HOST))
    return project


def _torchrig(project: Path, *args: str) -> int:
    return main(
        [
            "lock",
            "--spec",
            str(project / "torchrig.toml"),
            "--host",
            str(project / "host.json"),
            *args,
        ]
    )


def test_offline_lock_from_a_wheelhouse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wheels = _wheelhouse(tmp_path / "wheels")
    project = _offline_project(tmp_path, wheels)
    assert _torchrig(project) == 0
    lock = read_lock(project / "torchrig.lock")
    (target,) = lock.targets
    got = {p.name: p for p in target.packages}
    assert set(got) == {
        "torch",
        "filelock",
        "alpha",
        "beta",
        "pydantic",
        "packaging",
        "rich",
        "nvidia-ml-py",
    }
    assert got["beta"].version == "2.0", "the newest version that fits is chosen"
    assert got["torch"].version == "2.13.0+cpu"
    for package in target.packages:
        wheel = wheels / package.file
        assert package.sha256 == sha256_of(wheel), package.name
        assert package.size == wheel.stat().st_size
        assert package.index == wheels.as_uri() or package.index == str(wheels)

    # The lock answers the spec; then a changed package list makes it stale (exit 1).
    assert _torchrig(project, "--check") == 0
    spec = project / "torchrig.toml"
    spec.write_text(spec.read_text().replace('["alpha"]', '["alpha", "beta<2"]'))
    capsys.readouterr()
    assert _torchrig(project, "--check") == 1
    err = capsys.readouterr().err
    assert "packages or sources changed" in err and "torchrig lock" in err

    # Re-locking picks up the new constraint.
    assert _torchrig(project) == 0
    relocked = {p.name: p.version for p in read_lock(project / "torchrig.lock").targets[0].packages}
    assert relocked["beta"] == "1.0"


def test_exported_requirements_install_with_hash_checking(tmp_path: Path) -> None:
    wheels = _wheelhouse(tmp_path / "wheels")
    project = _offline_project(tmp_path, wheels, packages='["beta"]')
    assert _torchrig(project) == 0
    out = tmp_path / "req.txt"
    # Export through the CLI, as the image build will.
    code = subprocess.run(
        [
            sys.executable,
            "-m",
            "torchrig.cli.main",
            "lock",
            "--spec",
            str(project / "torchrig.toml"),
            "--export",
            "requirements",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert code.returncode == 0, code.stderr
    out.write_text(code.stdout)
    target = tmp_path / "site"
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--isolated",
            "install",
            "--no-index",
            "--find-links",
            str(wheels),
            "--require-hashes",
            "--no-deps",
            "--target",
            str(target),
            "-r",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert (target / "beta" / "__init__.py").exists()

    # A tampered wheel (same name, other bytes) must be refused.
    beta = next(wheels.glob("beta-2.0-*.whl"))
    make_wheel(wheels, "beta", "2.0", ("filelock",))  # overwrites with different metadata
    assert sha256_of(beta) not in code.stdout
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--isolated",
            "install",
            "--no-index",
            "--find-links",
            str(wheels),
            "--require-hashes",
            "--no-deps",
            "--target",
            str(tmp_path / "site2"),
            "-r",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode != 0
    assert "DO NOT MATCH THE HASHES" in bad.stderr


@pytest.mark.network
def test_lock_against_real_pypi() -> None:
    request = UvRequest(
        requirements=["six==1.17.0", "packaging"],
        python="3.11",
        platform="x86_64-manylinux_2_36",
        default_index="https://pypi.org/simple",
        indexes=[],
        find_links=[],
    )
    packages = {p.name: p for p in compile_lock(request)}
    assert set(packages) == {"six", "packaging"}
    six = packages["six"]
    assert six.index == "https://pypi.org/simple"
    assert six.file == "six-1.17.0-py2.py3-none-any.whl"
    # The recorded hash is the real file's: fetch it and compare.
    with urllib.request.urlopen(six.url, timeout=60) as response:
        body = response.read()
    assert hashlib.sha256(body).hexdigest() == six.sha256
    assert len(body) == six.size
