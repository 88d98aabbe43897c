"""Build the default CUDA workbench image cold, against a naive single-layer Dockerfile (what
the PyTorch-CUDA image articles show) built in the same run, and the download floor.

The set: torch 2.13.0 cu130 from PyPI with the workbench stack, for an H100 host from its
recorded facts (no GPU needed); the naive Dockerfile pip-installs the same top-level
packages from PyPI. Both build FROM the same base (obtained first, not timed) and both
without the engine's layer cache (--no-cache); torchrig's wheel cache starts empty.
Targets: cold build < 0.8x the naive build and an image no larger (issue 18); image size
<= 1.15x the installed content; rebuild after adding one small package <= 60 s with no
re-download of torch (issue 3). Needs PyPI and a container engine.

    python benchmarks/build_image.py [--engine docker] [--skip-naive] [--warm-no-cache]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

from _common import load_average, write_result

ROOT = Path(__file__).parents[1]
H100 = ROOT / "tests" / "fixtures" / "host" / "h100-sxm" / "host.json"
SPEC = '[project]\nname = "bench-cuda"\n[torch]\nversion = "2.13.0"\n'
# The CPU set, for a host that cannot hold two 6 GB images at once: torch's CPU wheel from
# the local wheelhouse /opt/wheels (download.pytorch.org is out of reach here), the rest of
# the workbench stack from PyPI. The naive build gets the same wheelhouse over HTTP.
SPEC_CPU = (
    '[project]\nname = "bench-cpu"\n[torch]\nversion = "2.13.0"\nvariant = "cpu"\n'
    'torchvision = false\n[sources]\ntorch_index = "none"\nfind_links = ["/opt/wheels"]\n'
    '[python]\nversion = "3.11"\n'
)
CPU_ONLY = ROOT / "tests" / "fixtures" / "host" / "cpu-only.json"
NAIVE = """\
FROM {base}
RUN apt-get update && apt-get install -y --no-install-recommends python3-pip python3-venv \\
    python3-dev gcc g++ openssh-server ca-certificates && rm -rf /var/lib/apt/lists/*
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates && python3 -m venv /opt/venv && /opt/venv/bin/pip install \\
    {pip_args}{packages}
"""
NAIVE_CUDA = "torch torchvision jupyterlab transformers numpy pandas tensorboard"
NAIVE_CPU = (
    "torch==2.13.0+cpu jupyterlab ipywidgets transformers numpy pandas matplotlib tensorboard"
)


SHARED_BASES = Path("/var/cache/torchrig/bases")
WHEELHOUSE_SERVER = (sys.executable, "-u", "-m", "http.server", "-b", "127.0.0.1")


def sh(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return time.perf_counter() - start


class Results(dict[str, object]):
    """The result file's fields, each also printed when measured: a run cut short (the
    CUDA set takes most of an hour here) still leaves its numbers in the log."""

    def __setitem__(self, key: str, value: object) -> None:
        super().__setitem__(key, value)
        print(f"result {key} = {json.dumps(value)[:300]}", flush=True)


def timed_build(
    cmd: list[str], *, env: dict[str, str], cwd: Path | None = None
) -> tuple[float, str, list[list[object]]]:
    """Run a build; (seconds, stdout, [seconds from the start, step] per Dockerfile step):
    the profile of where a build's time goes. Engines print `Step n/m` or `STEP n/m` as a
    step begins: `docker build` on stdout, `torchrig build` through its progress (stderr)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    steps: list[list[object]] = []
    seen: dict[str, list[str]] = {"stdout": [], "stderr": []}

    def follow(stream: IO[str], name: str) -> None:
        for line in stream:
            seen[name].append(line)
            words = line.strip().split(" ", 2)
            if len(words) == 3 and words[0] in ("Step", "STEP") and "/" in words[1]:
                steps.append([round(time.perf_counter() - start, 1), line.strip()[:100]])

    assert proc.stderr is not None and proc.stdout is not None
    followers = [
        threading.Thread(target=follow, args=(proc.stdout, "stdout"), daemon=True),
        threading.Thread(target=follow, args=(proc.stderr, "stderr"), daemon=True),
    ]
    for follower in followers:
        follower.start()
    rc = proc.wait()
    for follower in followers:
        follower.join()
    out = "".join(seen["stdout"])
    if rc != 0:
        tail = "".join(seen["stderr"][-40:])
        raise SystemExit(f"failed: {' '.join(cmd)}\n{out[-2000:]}\n{tail}")
    return time.perf_counter() - start, out, sorted(steps, key=lambda s: float(str(s[0])))


def need_disk(engine: str, free_bytes: int, what: str) -> None:
    """Stop before a step that would fill the shared machine's disk (a full disk takes the
    engine down for everyone; the CUDA set writes ~9 GB per side)."""
    root = "/var/lib/docker" if engine == "docker" else "/var/lib/containers"
    free = shutil.disk_usage(root if Path(root).is_dir() else "/").free
    if free < free_bytes:
        raise SystemExit(
            f"stopped before {what}: {free / 1e9:.1f} GB free, {free_bytes / 1e9:.0f} GB needed"
        )


def image_size(engine: str, tag: str) -> int:
    out = subprocess.run(
        [engine, "image", "inspect", "--format", "{{.Size}}", tag],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip())


def installed_bytes(engine: str, tag: str, path: str = "/") -> int:
    """Bytes under `path` in the image (0 where it does not exist)."""
    out = subprocess.run(
        [engine, "run", "--rm", "--entrypoint", "du", tag, "-sxb", path],
        capture_output=True,
        text=True,
    )
    return int(out.stdout.split()[0]) if out.returncode == 0 else 0


def layers(engine: str, tag: str) -> list[list[object]]:
    """[bytes, the step that made it] per layer with content, oldest first: where an
    image's size is (and what each layer's commit had to write)."""
    command = [engine, "history", "--no-trunc"]
    if engine == "podman":
        # Podman 4.3's {{.Size}} is human-readable whatever --human says; its JSON is bytes.
        out = subprocess.run(
            [*command, "--format", "json", tag], capture_output=True, text=True, check=True
        )
        rows = [(int(r["size"]), str(r["CreatedBy"])) for r in json.loads(out.stdout)]
    else:
        out = subprocess.run(
            [*command, "--human=false", "--format", "{{.Size}}\t{{.CreatedBy}}", tag],
            capture_output=True,
            text=True,
            check=True,
        )
        pairs = [line.split("\t", 1) for line in out.stdout.splitlines() if "\t" in line]
        rows = [(int(size), step) for size, step in pairs]
    return [[size, step.strip()[:80]] for size, step in reversed(rows) if size > 0]


def rebuilds(
    engine: str,
    build: list[str],
    project: Path,
    env: dict[str, str],
    spec: str,
    tag: str,
    args: argparse.Namespace,
    results: Results,
) -> None:
    """Rebuild unchanged, from the layer cache, and after adding one package (issue 3:
    <= 60 s, torch not downloaded again); every image made here is removed after."""
    torchrig = build[: build.index("build")]
    host = build[build.index("--host") :]
    results["unchanged_rebuild_s"] = round(sh(build, env=env, cwd=project), 2)
    # The layer cache as a normal build leaves it (Podman does not reuse the layers of a
    # --no-cache build: the add-package rebuild below then took 163 s, 2026-12-07).
    subprocess.run([engine, "rmi", "-f", tag], capture_output=True)
    results["cached_rebuild_s"] = round(sh(build, env=env, cwd=project), 2)
    if args.warm_no_cache:
        subprocess.run([engine, "rmi", "-f", tag], capture_output=True)
        results["warm_build_no_cache_s"] = round(
            sh([*build, "--no-cache"], env=env, cwd=project), 2
        )

    # One small package more: re-lock, rebuild; torch must not be downloaded again.
    (project / "torchrig.toml").write_text(
        spec.replace("[python]\n", "") + '[python]\npackages = ["tabulate"]\n'
        if args.set == "cuda"
        else spec + 'packages = ["tabulate"]\n'
    )
    start = time.perf_counter()
    sh([*torchrig, "lock", *host], env=env, cwd=project)
    out = subprocess.run(build, env=env, cwd=project, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-4000:])
    results["add_package_relock_rebuild_s"] = round(time.perf_counter() - start, 2)
    results["add_package_downloaded_bytes"] = json.loads(out.stdout)["downloaded_bytes"]
    # Disk: the naive image needs the room (the host is shared, 2 x 6 GB is too much).
    for made in (tag, json.loads(out.stdout)["image"]):
        subprocess.run([engine, "rmi", "-f", made], capture_output=True)


def naive_build(engine: str, tmpdir: Path, base_tag: str, which: str, results: Results) -> None:
    """The naive single-layer Dockerfile on the same base, timed; its image removed after."""
    naive = tmpdir / "naive"
    (naive / "ca").mkdir(parents=True)
    for crt in Path("/usr/local/share/ca-certificates").rglob("*.crt"):
        shutil.copy(crt, naive / "ca" / crt.name)
    if which == "cuda":
        pip_args, packages = "", NAIVE_CUDA
    else:
        pip_args = "--trusted-host 127.0.0.1 --find-links http://127.0.0.1:{port}/ "
        packages = NAIVE_CPU
    wheelhouse = None
    if which == "cpu":
        wheelhouse = subprocess.Popen(
            [*WHEELHOUSE_SERVER, "-d", "/opt/wheels", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert wheelhouse.stdout is not None
        port = wheelhouse.stdout.readline().split("port ")[1].split()[0]
        pip_args = pip_args.format(port=port)
    (naive / "Dockerfile").write_text(
        NAIVE.format(base=base_tag, pip_args=pip_args, packages=packages)
    )
    naive_env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    command = [engine, "build", "--network", "host", "--no-cache"]
    try:
        seconds, _, steps = timed_build(
            [*command, "-t", "torchrig-bench/naive", str(naive)], env=naive_env
        )
    finally:
        if wheelhouse is not None:
            wheelhouse.terminate()
    results["naive_build_s"] = round(seconds, 2)
    results["naive_build_steps"] = steps
    results["naive_image_bytes"] = image_size(engine, "torchrig-bench/naive")
    results["naive_layers"] = layers(engine, "torchrig-bench/naive")
    # pip's own cache (no --no-cache-dir in the naive file): what of its size is wheels kept.
    results["naive_pip_cache_bytes"] = installed_bytes(
        engine, "torchrig-bench/naive", "/root/.cache/pip"
    )
    subprocess.run([engine, "rmi", "-f", "torchrig-bench/naive"], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engine", default="docker")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--warm-no-cache", action="store_true", help="also time a rebuild")
    parser.add_argument("--set", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument(
        "--cold-only",
        action="store_true",
        help="only the two cold builds (no rebuilds): the CUDA set on a shared disk",
    )
    args = parser.parse_args()
    engine = args.engine
    torchrig = [sys.executable, "-m", "torchrig.cli.main"]
    spec, host_file = (SPEC, H100) if args.set == "cuda" else (SPEC_CPU, CPU_ONLY)
    results = Results()
    results["engine"] = engine
    results["set"] = args.set
    results["load_average_before"] = load_average()
    results["engine_version"] = subprocess.run(
        [engine, "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True
    ).stdout.strip()
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))  # the venv's
    results["uv_version"] = subprocess.run(
        [uv, "--version"], capture_output=True, text=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="torchrig-bench-") as tmp:
        tmpdir = Path(tmp)
        project = tmpdir / "project"
        project.mkdir()
        (project / "torchrig.toml").write_text(spec)
        cache = tmpdir / "cache"
        env = {
            **os.environ,
            "TORCHRIG_CACHE": str(cache),
            # As root torchrig fills the machine's shared cache (/var/cache/torchrig): a
            # "cold" build found the last run's wheels there, and they stayed behind.
            "TORCHRIG_SHARED_CACHE": str(tmpdir / "shared"),
            "XDG_STATE_HOME": str(tmpdir / "state"),
        }
        # ... its bootstrapped bases stay readable (a base is obtained before timing).
        (tmpdir / "shared").mkdir()
        (tmpdir / "shared" / "bases").symlink_to(SHARED_BASES)
        host = ["--host", str(host_file)]
        results["lock_s"] = round(sh([*torchrig, "lock", *host], env=env, cwd=project), 2)
        lock = json.loads(
            subprocess.run(
                [*torchrig, "plan", *host, "--json"],
                env=env,
                cwd=project,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )["lock"]
        results["locked_packages"] = lock["packages"]
        results["locked_download_bytes"] = lock["download_bytes"]

        # The download floor: every locked wheel, fetched in parallel into an empty cache.
        floor_code = (
            "import sys, time; from pathlib import Path; "
            "from torchrig.lock.lockfile import read_lock; "
            "from torchrig.image.wheels import fetch_all; "
            "t = read_lock(Path('torchrig.lock')).targets[0]; s = time.perf_counter(); "
            f"fetch_all(t.packages, root=Path({str(tmpdir / 'floor')!r})); "
            "print(time.perf_counter() - s)"
        )
        floor = subprocess.run(
            [sys.executable, "-c", floor_code],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        results["download_floor_s"] = round(float(floor.stdout.strip()), 2)
        shutil.rmtree(tmpdir / "floor")

        # The base both builds start FROM: obtained (bootstrapped or loaded) before timing.
        base_code = (
            "from pathlib import Path; from torchrig.host.facts import load_host_facts; "
            "from torchrig.launch.session import open_session, engine_for, base_image; "
            f"s = open_session(Path('torchrig.toml'), load_host_facts(Path({str(host_file)!r})), "
            "host_from_file=True); "
            f"print(base_image(s, engine_for(s, {engine!r}), None)[0])"
        )
        base_tag = subprocess.run(
            [sys.executable, "-c", base_code],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[-1]
        results["base"] = base_tag

        build = [*torchrig, "build", "--engine", engine, "--json", *host]
        need_disk(engine, 3 * lock["download_bytes"] + 4_000_000_000, "the cold build")
        seconds, stdout, steps = timed_build([*build, "--no-cache"], env=env, cwd=project)
        results["cold_build_s"] = round(seconds, 2)
        results["cold_build_steps"] = steps
        tag = json.loads(stdout)["image"]
        results["cold_vs_floor"] = round(results["cold_build_s"] / results["download_floor_s"], 2)  # type: ignore[operator]
        results["image"] = tag
        size, content = image_size(engine, tag), installed_bytes(engine, tag)
        results["image_bytes"] = size
        results["installed_bytes"] = content
        results["image_vs_installed"] = round(size / content, 3)
        results["image_layers"] = layers(engine, tag)
        if args.cold_only:  # the CUDA set: a second 6 GB build each, the time and disk
            subprocess.run([engine, "rmi", "-f", tag], capture_output=True)
        else:
            rebuilds(engine, build, project, env, spec, tag, args, results)
        shutil.rmtree(cache)  # disk: the naive build needs the room (the host is shared)
        if not args.skip_naive:
            need_disk(engine, 3 * lock["download_bytes"] + 4_000_000_000, "the naive build")
            naive_build(engine, tmpdir, base_tag, args.set, results)
    results["ngc_reference_bytes"] = 20_000_000_000
    if "naive_build_s" in results:
        results["cold_vs_naive"] = round(results["cold_build_s"] / results["naive_build_s"], 3)  # type: ignore[operator]
        results["image_vs_naive"] = round(
            results["image_bytes"] / results["naive_image_bytes"],  # type: ignore[operator]
            3,
        )
    results["load_average_after"] = load_average()
    results["targets"] = {
        "cold_vs_naive_max": 0.8,
        "image_vs_naive_max": 1.0,
        "cold_vs_floor_max": 1.3,
        "image_vs_installed_max": 1.15,
        "image_bytes_max": 10_000_000_000,
        "add_package_s_max": 60,
    }
    path = write_result(f"build-image-{engine}{'-cpu-set' if args.set == 'cpu' else ''}", results)
    print(json.dumps(results, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
