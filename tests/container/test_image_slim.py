"""The workbench image carries no files a workbench never reads (issue 18: an image no
larger than the naive Dockerfile's).

The system layer's install left the downloaded .deb files in /var/cache/apt/archives (a
bootstrapped base has no docker-clean hook: 164 MB in the CPU image), and every package's
documentation, man pages, message catalogues and the CJK faces no recipe draws with. The
licences stay, and so does the one CJK face the recipes' plots use.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.container.workbench import cpu_spec, give_to_user, torchrig

pytestmark = pytest.mark.container
ENGINE = "docker"

# Printed one per line by the probe below; each must be absent from the image.
NEVER = {
    "debs": "ls /var/cache/apt/archives/*.deb",
    "docs": "find /usr/share/doc/git /usr/share/doc/openssh-server -type f ! -name copyright",
    "man pages": "ls /usr/share/man/man1/git.1.gz /usr/share/man/man8/sshd.8.gz",
    "messages": "ls /usr/share/locale/de/LC_MESSAGES/git.mo /usr/share/locale/de/LC_MESSAGES/ld.mo",
    "unused CJK faces": "ls /usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
}
# Each must be present.
KEPT = {
    "licences": "test -s /usr/share/doc/git/copyright"
    " -a -s /usr/share/doc/openssh-server/copyright",
    "the recipes' CJK face": "test -s /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "emoji face": "test -s /usr/share/fonts/truetype/ancient-scripts/Symbola_hint.ttf",
    "apt still works from the image's lists": "apt-get --version",
}


def probe(image: str, shell: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ENGINE, "run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", image, "-c", shell],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_image_keeps_licences_and_drops_what_no_workbench_reads(tmp_path: Path) -> None:
    project = tmp_path / "t-slim-docker"
    project.mkdir()
    (project / "torchrig.toml").write_text(cpu_spec(project.name, jupyter_port=18994))
    give_to_user(project, *project.iterdir())
    built = json.loads(torchrig("build", "--engine", ENGINE, "--json", cwd=project).stdout)
    image = str(built["image"])
    try:
        found = {what: probe(image, shell) for what, shell in NEVER.items()}
        present = {what: done.stdout.strip() for what, done in found.items() if done.stdout.strip()}
        assert not present, f"in {image}: {present}"
        missing = {what: probe(image, shell) for what, shell in KEPT.items()}
        lost = [what for what, done in missing.items() if done.returncode != 0]
        assert not lost, f"{image} lost: {lost}"
    finally:
        subprocess.run([ENGINE, "image", "rm", "--no-prune", image], capture_output=True)
