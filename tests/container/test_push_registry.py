"""`torchrig push` to a real registry with Docker and Podman (issue 14, item 1), and the
Kubernetes files that pin what it pushed (item 4).

Two of Debian's docker-registry on 127.0.0.1 (own config and storage in a temporary folder,
no Docker Hub): one open, one behind htpasswd. The project is locked for real (the CPU torch
wheel in /opt/wheels); its image is a one-file image imported under the exact tag the Plan
names, since push sends whatever the engine holds under that tag and a 2 GB workbench would
only make the test slow. Observed from outside: the digest in torchrig.images is the one
the registry serves for the pushed tag, the engine pulls it back by that digest, export
kubernetes names it; an image not built, a registry that is not there and one that wants a
login are one line each; after the engine's own login (its config in a temporary folder)
the same push succeeds.

Reproduce: .venv/bin/python -m pytest tests/container/test_push_registry.py -m container
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.container.workbench import WHEELHOUSE, wait_until
from tests.kube_schema import KUBERNETES_VERSIONS, validate_text
from torchrig.freeport import free_port

pytestmark = [pytest.mark.container, pytest.mark.network]

REPO = Path(__file__).resolve().parents[2]
HOST = REPO / "tests" / "fixtures" / "host" / "cpu-only.json"
ENGINES = ("docker", "podman")
# A throwaway login for the test registry: docker-registry 2.8 wrote this bcrypt line for
# the password below when it provisioned a missing htpasswd file.
USER, PASSWORD = "docker", "9uCfGdn6FzgnHV03pDVdwAY8nxv9sPfH-yM_zimBIhU"
HTPASSWD = "docker:$2a$10$ZVG.4GNKmuOxLSrmaZrtUu4LxhLFAaATFfoMcDBG7UBAW2FOKtAYi\n"
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.oci.image.manifest.v1+json"
)


def _serve(folder: Path, auth: bool) -> tuple[subprocess.Popen[bytes], int]:
    found = shutil.which("docker-registry")
    if found is None:
        pytest.fail("docker-registry is not installed (.ci/install-engines.sh installs it)")
    port = free_port()
    config = (
        "version: 0.1\nlog:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {folder / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    if auth:
        (folder / "htpasswd").write_text(HTPASSWD)
        config += f"auth:\n  htpasswd:\n    realm: t-kube\n    path: {folder / 'htpasswd'}\n"
    (folder / "config.yml").write_text(config)
    log = (folder / "registry.log").open("w")
    server = subprocess.Popen([found, "serve", str(folder / "config.yml")], stdout=log, stderr=log)

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2) as r:
                return r.status == 200
        except urllib.error.HTTPError as e:
            return e.code == 401 and auth
        except OSError:
            return False

    wait_until(answers, 30, f"the registry answering on 127.0.0.1:{port}/v2/")
    return server, port


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """(open port, htpasswd port)."""
    servers = []
    try:
        for auth in (False, True):
            servers.append(_serve(tmp_path_factory.mktemp(f"t-kube-registry-{auth}"), auth))
        yield servers[0][1], servers[1][1]
    finally:
        for server, _ in servers:
            server.terminate()
            server.wait(timeout=30)


@pytest.fixture(scope="module", name="code")
def code_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of torchrig's package for the CLI to run from. The image's tag is a digest of
    torchrig's own files too, so in a checkout being edited the tag the test imports under
    could change before the push looks for it; the copy holds it still."""
    folder = tmp_path_factory.mktemp("t-kube-code")
    shutil.copytree(
        REPO / "src" / "torchrig", folder / "torchrig", ignore=shutil.ignore_patterns("__pycache__")
    )
    return folder


def cli(
    code: Path, *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-P", "-m", "torchrig.cli.main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={
            **os.environ,
            "PYTHONPATH": str(code),
            "TORCHRIG_PODMAN_RUNTIME": "runc",
            **(env or {}),
        },
    )


def ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    if done.returncode != 0:
        pytest.fail(
            f"`{' '.join(done.args)}` exited {done.returncode}\n"
            f"stdout: {done.stdout[-3000:]}\nstderr: {done.stderr[-3000:]}",
            pytrace=False,
        )
    return done


def one_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, (done.returncode, done.stderr)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    return errors[0]


def engine(name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = [name, *(["--runtime", "runc"] if name == "podman" else []), *args]
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=300)


def registry_digest(port: int, name: str, tag: str) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v2/{name}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": MANIFEST_TYPES},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return str(reply.headers["Docker-Content-Digest"])


@pytest.fixture(params=ENGINES)
def project(
    request: pytest.FixtureRequest, tmp_path: Path, registries: tuple[int, int], code: Path
) -> Iterator[tuple[str, Path, str]]:
    """(engine, a locked project whose Plan names an image the engine holds nothing of
    yet, that image's tag)."""
    name = request.param
    if shutil.which(name) is None:
        pytest.fail(f"{name} is not installed (.ci/install-engines.sh installs it)")
    open_port, _ = registries
    project = f"t-kube-push-{name}-{os.getpid()}"
    (tmp_path / "torchrig.toml").write_text(
        f'[project]\nname = "{project}"\n'
        '[torch]\nversion = "2.13.0"\nvariant = "cpu"\ntorchvision = false\n'
        '[python]\nversion = "3.11"\nstack = "none"\n'
        '[base]\nimage = "debian@sha256:' + "0" * 64 + '"\n'
        f'[sources]\ntorch_index = "none"\nfind_links = ["{WHEELHOUSE}"]\n'
        f'[cluster]\nengine = "kubernetes"\nnodes = 2\nregistry = "127.0.0.1:{open_port}/t-kube"\n'
        '[cluster.kubernetes]\nnamespace = "t-kube"\npvc = "t-kube-work"\n'
    )
    ok(cli(code, "lock", "--host", str(HOST), cwd=tmp_path))
    plan = json.loads(ok(cli(code, "plan", "--json", "--host", str(HOST), cwd=tmp_path)).stdout)
    tag = plan["image"]["tag"]
    assert tag and tag.startswith(f"torchrig/{project}:cpu-"), plan["image"]
    root = tmp_path / "rootfs"
    root.mkdir()
    (root / "hello.txt").write_text("a one-file image\n")
    with tarfile.open(tmp_path / "rootfs.tar", "w") as tar:
        tar.add(root, arcname=".")
    try:
        yield name, tmp_path, tag
    finally:
        # Every image of this project, tagged or pulled by digest only: by id.
        listed = engine(name, "images", "--format", "{{.Repository}} {{.ID}}", check=False)
        for line in listed.stdout.splitlines():
            repository, _, image_id = line.partition(" ")
            if project in repository:
                engine(name, "image", "rm", "--force", image_id, check=False)


def test_push_records_the_registrys_digest_and_export_pins_it(
    project: tuple[str, Path, str], registries: tuple[int, int], code: Path
) -> None:
    name, folder, tag = project
    open_port, _ = registries
    host = ("--host", str(HOST), "--engine", name)
    # Not built yet: one line, exit 2, nothing pushed or recorded.
    line = one_line(cli(code, "push", *host, cwd=folder), 2)
    assert f"the image {tag} is not built (with {name})" in line
    assert not (folder / "torchrig.images").exists()

    engine(name, "import", str(folder / "rootfs.tar"), tag)
    pushed = json.loads(ok(cli(code, "push", *host, "--json", cwd=folder)).stdout)
    repository = f"t-kube/{tag.split('/', 1)[1].split(':')[0]}"
    local_tag = tag.rsplit(":", 1)[1]
    assert pushed["image"] == tag
    assert pushed["tag"] == f"127.0.0.1:{open_port}/{repository}:{local_tag}"
    digest = registry_digest(open_port, repository, local_tag)
    assert pushed["ref"] == f"127.0.0.1:{open_port}/{repository}@{digest}"
    assert f'ref = "{pushed["ref"]}"' in (folder / "torchrig.images").read_text()
    # The engine pulls it back by that digest (what every cluster node does).
    engine(name, "image", "rm", "--force", tag)
    pull = ["pull", *(["--tls-verify=false"] if name == "podman" else []), pushed["ref"]]
    engine(name, *pull)

    ok(
        cli(
            code,
            "export",
            "kubernetes",
            "--host",
            str(HOST),
            "--",
            "python",
            "-c",
            "pass",
            cwd=folder,
        )
    )
    for file in ("trainjob.yaml", "job.yaml"):
        text = (folder / "kubernetes" / file).read_text()
        assert f'image: "{pushed["ref"]}"' in text
        for version in KUBERNETES_VERSIONS:
            validate_text(text, version)


def test_push_failures_are_one_line_each(
    project: tuple[str, Path, str],
    registries: tuple[int, int],
    code: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    name, folder, tag = project
    _, auth_port = registries
    host = ("--host", str(HOST), "--engine", name)
    engine(name, "import", str(folder / "rootfs.tar"), tag)

    nobody = free_port()  # nothing listens there
    line = one_line(cli(code, "push", *host, f"127.0.0.1:{nobody}/t-kube/x", cwd=folder), 5)
    assert f"registry 127.0.0.1:{nobody} is unreachable" in line and "connection refused" in line

    line = one_line(cli(code, "push", *host, f"127.0.0.1:{auth_port}/t-kube/x", cwd=folder), 5)
    assert f"registry 127.0.0.1:{auth_port} refused the push" in line
    assert f"{name} login 127.0.0.1:{auth_port}" in line
    assert not (folder / "torchrig.images").exists()

    # The engine's own login, kept in a folder of this test's, is all push needs.
    config = tmp_path_factory.mktemp(f"t-kube-{name}-login")
    env = (
        {"DOCKER_CONFIG": str(config)}
        if name == "docker"
        else {"REGISTRY_AUTH_FILE": str(config / "auth.json")}
    )
    login = [name, "login", "--username", USER, "--password-stdin"]
    if name == "podman":
        login.insert(2, "--tls-verify=false")
    subprocess.run(
        [*login, f"127.0.0.1:{auth_port}"],
        input=PASSWORD,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    pushed = json.loads(
        ok(
            cli(
                code,
                "push",
                *host,
                "--json",
                f"127.0.0.1:{auth_port}/t-kube/x",
                cwd=folder,
                env=env,
            )
        ).stdout
    )
    assert pushed["ref"].startswith(f"127.0.0.1:{auth_port}/t-kube/x@sha256:")
    assert PASSWORD not in (folder / "torchrig.images").read_text()
