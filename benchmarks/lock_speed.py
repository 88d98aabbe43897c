"""How long `torchrig lock` takes for the default workbench set, against raw uv in the same run.

The set: torch (2.13.0, its PyPI CUDA 13.0 build for an H100 host) with torchvision,
JupyterLab, Transformers, NumPy, pandas, TensorBoard and the rest of the workbench stack.
Targets: warm at most 20 s (issue 2) and at most 1.5x a raw `uv pip compile --generate-hashes`
of the same requirements with the same index and platform (issue 18). The two are timed
alternately, sharing one warm uv cache, so the shared machine's load falls on both alike.
Needs PyPI.

    python benchmarks/lock_speed.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import tomllib
from pathlib import Path

from _common import load_average, summary, timed, write_result

FIXTURE = Path(__file__).parents[1] / "tests" / "fixtures" / "host" / "h100-sxm" / "host.json"
SPEC = '[project]\nname = "bench"\n[torch]\nversion = "2.13.0"\n'
TARGET_RATIO = 1.5


def raw_uv(target: dict[str, object], tmp: Path) -> list[str]:
    """What a person would type: uv's own hashed requirements for the lock's inputs."""
    from uv import find_uv_bin

    reqs = tmp / "requirements.in"
    reqs.write_text("\n".join(str(r) for r in target["requirements"]) + "\n")  # type: ignore[attr-defined]
    return [
        find_uv_bin(),
        "pip",
        "compile",
        str(reqs),
        "--generate-hashes",
        "--python-version",
        str(target["python"]),
        "--python-platform",
        str(target["platform"]),
        "--no-config",
        "--no-python-downloads",
        "--quiet",
        "--default-index",
        "https://pypi.org/simple",
        "-o",
        str(tmp / "requirements.txt"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    load_before = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "p"
        project.mkdir()
        (project / "torchrig.toml").write_text(SPEC)
        cache = Path(tmp) / "uv-cache"
        env = {**os.environ, "UV_CACHE_DIR": str(cache)}
        lock = [sys.executable, "-m", "torchrig.cli.main", "lock", "--host", str(FIXTURE)]
        cold = timed(lock, env=env, cwd=project)
        target = tomllib.loads((project / "torchrig.lock").read_text())["targets"][0]
        uv = raw_uv(target, Path(tmp))
        timed(uv, env=env)  # warms uv's cache for the hashes of every file, as lock's did
        warm, baseline = [], []
        for _ in range(args.runs):
            warm.append(timed(lock, env=env, cwd=project))
            baseline.append(timed(uv, env=env))
        packages = len(target["packages"])
        size = sum(p.get("size", 0) for p in target["packages"])
    ratio = statistics.median(warm) / statistics.median(baseline)
    results = {
        "packages": packages,
        "download_bytes": size,
        "torch": target["torch"],
        "variant": target["variant"],
        "cold_s": round(cold, 3),
        "warm": summary(warm),
        "raw_uv_generate_hashes_warm": summary(baseline),
        "warm_ratio_to_raw_uv": round(ratio, 3),
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }
    verdict = results["warm"]["max_s"] <= 20.0 and ratio <= TARGET_RATIO
    path = write_result(
        "lock-speed",
        {
            "target_warm_s": 20.0,
            "target_ratio_to_raw_uv": TARGET_RATIO,
            "meets_target": verdict,
            "results": results,
        },
    )
    print(json.dumps(results, indent=2))
    print(f"{'meets' if verdict else 'MISSES'} the targets (20 s, {TARGET_RATIO}x); wrote {path}")


if __name__ == "__main__":
    main()
