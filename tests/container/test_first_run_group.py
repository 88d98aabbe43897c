"""The first run of a normal user in the docker group (issue 11): no root, from a clean cache.

A throwaway user (uid 4321, group docker, nothing else) runs the real CLI with the system
Python. The base comes from a registry on 127.0.0.1 (Debian's docker-registry, its own
config and storage in a temporary folder; no Docker Hub) that holds the suite's
bootstrapped bookworm base, pushed by the test and then untagged here, so the user's engine
must pull it and torchrig must build on it by digest. Observed from outside: `up` succeeds
as that user, the workbench is healthy, the image records the pushed digest, the user's own
cache holds no bootstrapped base, and no process in the workbench runs as root but PID 1.

Before issue 11 the same user got "bootstrapping a base image needs root".
Reproduce: sudo .venv/bin/python -m pytest tests/container/test_first_run_group.py -m container
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.container.workbench import cpu_spec, throwaway_user, wait_until
from torchrig.engine.docker import DockerEngine
from torchrig.freeport import free_port
from torchrig.image.base import Bootstrapper, default_cache_dir

pytestmark = pytest.mark.container

REPO = Path(__file__).resolve().parents[2]
USER, UID = "t-grp-user", 4321
PROJECT = "t-grp-bench"
DISTRIBUTION = "debian:bookworm"
MIRROR = os.environ.get("TORCHRIG_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SYSTEM_PYTHON = "/usr/bin/python3"
NETWORK_ENV = {"SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "http_proxy", "https_proxy"}


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """Debian's docker-registry on a free 127.0.0.1 port; yields (port, its log)."""
    found = shutil.which("docker-registry")
    if found is None:
        pytest.fail("docker-registry is not installed (.ci/install-engines.sh installs it)")
    folder = tmp_path_factory.mktemp("t-grp-registry")
    port = free_port()
    config = folder / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: info\n"
        f"storage:\n  filesystem:\n    rootdirectory: {folder / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = folder / "registry.log"
    with log.open("w") as out:
        server = subprocess.Popen([found, "serve", str(config)], stdout=out, stderr=out)
    try:

        def answers() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_until(answers, 30, "the registry answering on /v2/")
        yield port, log
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def pushed(registry: tuple[int, Path]) -> Iterator[tuple[str, str]]:
    """The suite's bootstrapped bookworm in the registry as library/debian:bookworm; yields
    (the tag a mirror serves, the pushed manifest's digest). Untagged locally afterwards, so
    only a pull brings it back under that name."""
    port, _ = registry
    base = Bootstrapper().bootstrap(
        DISTRIBUTION, MIRROR, "x86_64", default_cache_dir(), DockerEngine()
    )
    ref = f"127.0.0.1:{port}/library/debian:bookworm"
    docker("tag", base.tag, ref)
    docker("push", "--quiet", ref)
    digests = json.loads(
        docker("image", "inspect", "--format", "{{json .RepoDigests}}", ref).stdout
    )
    digest = next(d.split("@", 1)[1] for d in digests if d.startswith(f"127.0.0.1:{port}/"))
    docker("image", "rm", ref)  # untag only: the base's own tag keeps the layers
    yield ref, digest
    docker("image", "rm", f"127.0.0.1:{port}/library/debian@{digest}", check=False)
    docker("image", "rm", ref, check=False)


@pytest.fixture
def docker_user() -> Iterator[pwd.struct_passwd]:
    """A normal user whose only privilege is the docker group."""
    with throwaway_user(USER, UID) as user:
        yield user


def as_user(user: pwd.struct_passwd, shared: Path, *args: str) -> list[str]:
    """The CLI as `user`, with the system Python and this checkout's code and dependencies
    (the test venv's interpreter lives under /root, which the user cannot read)."""
    site = sysconfig.get_paths()["purelib"]
    env = [
        f"HOME={user.pw_dir}",
        f"USER={user.pw_name}",
        f"PATH={Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        f"PYTHONPATH={REPO / 'src'}:{site}",
        f"TORCHRIG_SHARED_CACHE={shared}",
        "TORCHRIG_PODMAN_RUNTIME=runc",
        # The machine's network settings (CA bundle, proxies), as a login shell has them.
        *(f"{k}={v}" for k, v in os.environ.items() if k in NETWORK_ENV or k.endswith("_PROXY")),
    ]
    python = [SYSTEM_PYTHON, "-P", "-m", "torchrig.cli.main", *args]
    return ["runuser", "-u", user.pw_name, "--", "env", "-i", *env, *python]


def run_as(
    user: pwd.struct_passwd, shared: Path, *args: str, cwd: Path, check: bool = True
) -> subprocess.CompletedProcess[str]:
    argv = as_user(user, shared, *args)
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=1800)
    if check and done.returncode != 0:
        pytest.fail(
            f"`torchrig {' '.join(args)}` as {user.pw_name} exited {done.returncode}\n"
            f"reproduce: cd {cwd} && {' '.join(argv)}\n"
            f"stdout: {done.stdout[-3000:]}\nstderr: {done.stderr[-5000:]}",
            pytrace=False,
        )
    return done


def test_a_docker_group_user_gets_a_healthy_workbench_without_root(
    registry: tuple[int, Path],
    pushed: tuple[str, str],
    docker_user: pwd.struct_passwd,
    tmp_path: Path,
) -> None:
    port, registry_log = registry
    ref, digest = pushed
    user = docker_user
    home = Path(user.pw_dir)
    project = home / PROJECT
    project.mkdir()
    spec = cpu_spec(PROJECT, jupyter_port=free_port(), extra=f'registry = "127.0.0.1:{port}"\n')
    spec = spec.replace("uid = 4242", f"uid = {UID}").replace("gid = 4343", f"gid = {user.pw_gid}")
    (project / "torchrig.toml").write_text(spec)
    for path in (project, project / "torchrig.toml"):
        os.chown(path, UID, user.pw_gid)
    shared = tmp_path / "no-shared-cache"  # clean: nothing prepared, only the registry
    started = time.monotonic()
    try:
        done = run_as(user, shared, "up", "--engine", "docker", "--json", cwd=project)
        seconds = time.monotonic() - started
        info = json.loads(done.stdout)
        # The base was pulled from the registry and built on by digest.
        assert f"pinned as 127.0.0.1:{port}/library/debian@{digest}" in done.stderr
        labels = json.loads(
            docker("image", "inspect", "--format", "{{json .Config.Labels}}", info["image"]).stdout
        )
        assert labels["io.torchrig.base.image"] == f"127.0.0.1:{port}/library/debian@{digest}"
        assert "/v2/library/debian/manifests/" in registry_log.read_text()
        # Nothing needed root: no bootstrap in the user's cache, no shared cache made.
        assert not (home / ".cache" / "torchrig" / "bases").exists()
        assert not shared.exists()
        # `up` returns once the workbench's own check passes, before the engine's first run
        # of it (5 s after the start): status asks the same way.
        status = run_as(user, shared, "status", "--engine", "docker", "--json", cwd=project)
        assert json.loads(status.stdout)["health"] == "healthy"
        assert info["uid"] == UID
        ps = run_as(
            user, shared, "exec", "--engine", "docker", "--", "ps", "-eo", "uid=,pid=", cwd=project
        )
        rows = [line.split() for line in ps.stdout.splitlines() if line.strip()]
        assert [pid for uid, pid in rows if uid == "0"] == ["1"], ps.stdout
        print(f"docker-group first run: healthy in {seconds:.0f} s ({ref} by digest)")
        run_as(user, shared, "down", "--engine", "docker", "--purge", cwd=project)
        assert docker("inspect", info["name"], check=False).returncode != 0
    finally:
        # Whatever happened above: no container, volume or image of this test stays.
        run_as(user, shared, "down", "--engine", "docker", "--purge", cwd=project, check=False)
        images = docker("images", "--format", "{{.Repository}}:{{.Tag}}", f"torchrig/{PROJECT}")
        for tag in images.stdout.split():
            docker("image", "rm", "--force", tag, check=False)
