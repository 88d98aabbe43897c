"""The lock through the real uv: a local wheelhouse (offline) and real PyPI (network)."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
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
        ("prometheus-client", "0.21.0"),  # the metrics service, on by default
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
        "prometheus-client",
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


def _simple_index(root: Path, wheels: Path) -> None:
    """A PEP 691 (JSON) index of the wheelhouse under root/simple: hashes and sizes."""
    pages: dict[str, list[dict[str, object]]] = {}
    for wheel in sorted(wheels.glob("*.whl")):
        name = wheel.name.split("-")[0].replace("_", "-").lower()
        (root / "files").mkdir(parents=True, exist_ok=True)
        (root / "files" / wheel.name).write_bytes(wheel.read_bytes())
        pages.setdefault(name, []).append(
            {
                "filename": wheel.name,
                "url": f"/files/{wheel.name}",
                "hashes": {"sha256": sha256_of(wheel)},
                "size": wheel.stat().st_size,
            }
        )
    for name, files in pages.items():
        page = root / "simple" / name
        page.mkdir(parents=True)
        body = {"meta": {"api-version": "1.1"}, "name": name, "files": files, "versions": []}
        (page / "index.json").write_text(json.dumps(body))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """A local package index over HTTP (the shape of a PyPI mirror); yields its URL."""
    root = tmp_path / "served"
    _simple_index(root, _wheelhouse(tmp_path / "index-wheels"))
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def guess_type(self, path: str | os.PathLike[str]) -> str:
        return (
            "application/vnd.pypi.simple.v1+json"
            if str(path).endswith(".json")
            else "application/zip"
        )

    def do_GET(self) -> None:
        if self.path.endswith("/"):
            self.path += "index.json"
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


def _index_project(tmp_path: Path, index: str, extra: str = "") -> Path:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "torchrig.toml").write_text(
        '[project]\nname = "mirror"\n'
        '[torch]\nversion = "2.13.0"\nvariant = "cpu"\ntorchvision = false\n'
        '[python]\nversion = "3.11"\nstack = "none"\npackages = ["alpha"]\n'
        "[services.jupyter]\nenabled = false\nport = 8888\n"
        f'[sources]\nindex = "{index}"\ntorch_index = "none"\n'
        f'trusted_hosts = ["127.0.0.1"]\n{extra}'
    )
    (project / "host.json").write_text(json.dumps(NO_GPU_HOST))
    return project


def _uv_runs(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("+ ") and " pip compile " in line]


def test_one_index_locks_in_one_uv_run(
    tmp_path: Path, served: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 18: with one index every file came from it, so the second uv run (3.5-4 s of a
    5.6 s lock of the workbench set) is not needed; the lock still names the index."""
    project = _index_project(tmp_path, served)
    assert main(["--debug", *_lock_args(project)]) == 0
    runs = _uv_runs(capsys.readouterr().err)
    assert len(runs) == 1, runs
    packages = read_lock(project / "torchrig.lock").targets[0].packages
    assert {p.name for p in packages} >= {"torch", "alpha", "beta", "filelock"}
    assert {p.index for p in packages} == {served}
    assert all(p.url.startswith("http://127.0.0.1:") for p in packages)


def test_two_sources_still_name_each_package_index(
    tmp_path: Path, served: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """With a wheelhouse beside the index, the annotation run (now beside the pylock run)
    still says where each package came from."""
    house = tmp_path / "house"
    house.mkdir()
    make_wheel(house, "gamma", "1.0")
    project = _index_project(tmp_path, served, f'find_links = ["{house}"]\n')
    spec = project / "torchrig.toml"
    spec.write_text(spec.read_text().replace('["alpha"]', '["alpha", "gamma"]'))
    assert main(["--debug", *_lock_args(project)]) == 0
    assert len(_uv_runs(capsys.readouterr().err)) == 2
    got = {p.name: p for p in read_lock(project / "torchrig.lock").targets[0].packages}
    assert got["alpha"].index == served
    assert got["gamma"].index in (house.as_uri(), str(house))
    assert got["gamma"].sha256 == sha256_of(house / "gamma-1.0-py3-none-any.whl")


def _lock_args(project: Path) -> list[str]:
    return [
        "lock",
        "--spec",
        str(project / "torchrig.toml"),
        "--host",
        str(project / "host.json"),
    ]
