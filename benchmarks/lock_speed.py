"""How long `torchrig lock` takes for the default workbench set, cold and warm.

The set: torch (2.13.0, its PyPI CUDA 13.0 build for an H100 host) with torchvision,
JupyterLab, Transformers, NumPy, pandas, TensorBoard and the rest of the workbench stack.
Target (issue 2): warm at most 20 s. Baseline in the same run: the bare `uv pip compile` of
the same requirements, to show what torchrig adds (a second, --no-deps uv run for indexes).
Needs PyPI.

    python benchmarks/lock_speed.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from _common import summary, timed, write_result

FIXTURE = Path(__file__).parents[1] / "tests" / "fixtures" / "host" / "h100-sxm" / "host.json"
SPEC = '[project]\nname = "bench"\n[torch]\nversion = "2.13.0"\n'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from uv import find_uv_bin

    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "p"
        project.mkdir()
        (project / "torchrig.toml").write_text(SPEC)
        cache = Path(tmp) / "uv-cache"
        env = {**os.environ, "UV_CACHE_DIR": str(cache)}
        lock = [sys.executable, "-m", "torchrig.cli.main", "lock", "--host", str(FIXTURE)]
        cold = timed(lock, env=env, cwd=project)
        warm = [timed(lock, env=env, cwd=project) for _ in range(args.runs)]
        text = (project / "torchrig.lock").read_text()
        import tomllib

        target = tomllib.loads(text)["targets"][0]
        reqs = Path(tmp) / "requirements.in"
        reqs.write_text("\n".join(target["requirements"]) + "\n")
        uv = [
            find_uv_bin(),
            "pip",
            "compile",
            str(reqs),
            "--python-version",
            target["python"],
            "--python-platform",
            target["platform"],
            "--no-config",
            "--no-python-downloads",
            "--quiet",
            "--format",
            "pylock.toml",
            "-o",
            str(Path(tmp) / "pylock.toml"),
        ]
        baseline = [timed(uv, env=env) for _ in range(args.runs)]
        packages = len(target["packages"])
        size = sum(p.get("size", 0) for p in target["packages"])
    results = {
        "packages": packages,
        "download_bytes": size,
        "torch": target["torch"],
        "variant": target["variant"],
        "cold_s": round(cold, 3),
        "warm": summary(warm),
        "uv_compile_baseline_warm": summary(baseline),
    }
    verdict = results["warm"]["max_s"] <= 20.0
    path = write_result(
        "lock-speed", {"target_warm_s": 20.0, "meets_target": verdict, "results": results}
    )
    print(json.dumps(results, indent=2))
    print(f"{'meets' if verdict else 'MISSES'} the 20 s warm target; wrote {path}")


if __name__ == "__main__":
    main()
