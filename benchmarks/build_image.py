"""Build the default CUDA workbench image cold and warm, against the download floor and a
naive single-layer Dockerfile (what the PyTorch-CUDA image articles show).

Targets (issue 3): cold build <= 1.3x the time to download the locked wheels; image size
<= 1.15x the installed content and under half of NGC's ~20 GB; rebuild after adding one
small package <= 60 s with no re-download of torch. Needs PyPI and a container engine; no
GPU (the image is built for an H100 host from its recorded facts).

    python benchmarks/build_image.py [--engine docker] [--skip-naive]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import write_result

ROOT = Path(__file__).parents[1]
H100 = ROOT / "tests" / "fixtures" / "host" / "h100-sxm" / "host.json"
SPEC = '[project]\nname = "bench-cuda"\n[torch]\nversion = "2.13.0"\n'
NAIVE = """\
FROM {base}
RUN apt-get update && apt-get install -y --no-install-recommends python3-pip python3-venv \\
    python3-dev gcc g++ openssh-server ca-certificates && rm -rf /var/lib/apt/lists/*
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates && python3 -m venv /opt/venv && /opt/venv/bin/pip install \\
    torch torchvision jupyterlab transformers numpy pandas tensorboard
"""


def sh(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return time.perf_counter() - start


def image_size(engine: str, tag: str) -> int:
    out = subprocess.run(
        [engine, "image", "inspect", "--format", "{{.Size}}", tag],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip())


def installed_bytes(engine: str, tag: str) -> int:
    out = subprocess.run(
        [engine, "run", "--rm", "--entrypoint", "du", tag, "-sxb", "/"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engine", default="docker")
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args()
    engine = args.engine
    torchrig = [sys.executable, "-m", "torchrig.cli.main"]
    results: dict[str, object] = {"engine": engine}
    with tempfile.TemporaryDirectory(prefix="torchrig-bench-") as tmp:
        tmpdir = Path(tmp)
        project = tmpdir / "project"
        project.mkdir()
        (project / "torchrig.toml").write_text(SPEC)
        cache = tmpdir / "cache"
        env = {**os.environ, "TORCHRIG_CACHE": str(cache), "XDG_STATE_HOME": str(tmpdir / "state")}
        host = ["--host", str(H100)]
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

        build = [*torchrig, "build", "--engine", engine, "--json", *host]
        start = time.perf_counter()
        out = subprocess.run(build, env=env, cwd=project, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(out.stderr[-4000:])
        results["cold_build_s"] = round(time.perf_counter() - start, 2)
        tag = json.loads(out.stdout)["image"]
        results["cold_vs_floor"] = round(results["cold_build_s"] / results["download_floor_s"], 2)  # type: ignore[operator]
        results["image"] = tag
        results["image_bytes"] = image_size(engine, tag)
        results["installed_bytes"] = installed_bytes(engine, tag)
        results["image_vs_installed"] = round(
            results["image_bytes"] / results["installed_bytes"], 3
        )  # type: ignore[operator]
        results["unchanged_rebuild_s"] = round(sh(build, env=env, cwd=project), 2)
        subprocess.run([engine, "rmi", "-f", tag], capture_output=True)
        results["warm_build_no_cache_s"] = round(
            sh([*build, "--no-cache"], env=env, cwd=project), 2
        )

        # One small package more: re-lock, rebuild; torch must not be downloaded again.
        (project / "torchrig.toml").write_text(SPEC + '[python]\npackages = ["tabulate"]\n')
        start = time.perf_counter()
        sh([*torchrig, "lock", *host], env=env, cwd=project)
        out = subprocess.run(build, env=env, cwd=project, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(out.stderr[-4000:])
        results["add_package_relock_rebuild_s"] = round(time.perf_counter() - start, 2)
        results["add_package_downloaded_bytes"] = json.loads(out.stdout)["downloaded_bytes"]

        if not args.skip_naive:
            bases = subprocess.run(
                [engine, "images", "--format", "{{.Repository}}:{{.Tag}}", "torchrig-base/ubuntu"],
                capture_output=True,
                text=True,
            )
            base_tag = bases.stdout.split()[0]
            naive = tmpdir / "naive"
            (naive / "ca").mkdir(parents=True)
            for crt in Path("/usr/local/share/ca-certificates").rglob("*.crt"):
                shutil.copy(crt, naive / "ca" / crt.name)
            (naive / "Dockerfile").write_text(NAIVE.format(base=base_tag))
            naive_env = {**os.environ, "DOCKER_BUILDKIT": "0"}
            results["naive_build_s"] = round(
                sh(
                    [
                        engine,
                        "build",
                        "--network",
                        "host",
                        "-t",
                        "torchrig-bench/naive",
                        str(naive),
                    ],
                    env=naive_env,
                ),
                2,
            )
            results["naive_image_bytes"] = image_size(engine, "torchrig-bench/naive")
            subprocess.run([engine, "rmi", "-f", "torchrig-bench/naive"], capture_output=True)
    results["ngc_reference_bytes"] = 20_000_000_000
    results["targets"] = {
        "cold_vs_floor_max": 1.3,
        "image_vs_installed_max": 1.15,
        "image_bytes_max": 10_000_000_000,
        "add_package_s_max": 60,
    }
    path = write_result(f"build-image-{engine}", results)
    print(json.dumps(results, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
