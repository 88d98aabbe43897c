"""How long `torchrig doctor` takes, Python start included.

Target (issue 4): at most 2 s wall on a host with no GPU, engines probed. Cases: the human
table and --json on this machine (live probe of Docker and Podman in parallel), saved H100
facts (no probe), and --explain on a log. Baseline: the bare interpreter start.

doctor exits 1 when a check fails (the saved H100 facts have no engine), so exit codes 0
and 1 both count as a completed run here.

    python benchmarks/doctor_speed.py [--runs 15]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import summary, write_result

ROOT = Path(__file__).parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "host" / "h100-sxm" / "host.json"
LOG = ROOT / "tests" / "fixtures" / "doctor" / "logs" / "nccl-shm.log"
TARGET_S = 2.0


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"benchmark command failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    doctor = [sys.executable, "-m", "torchrig.cli.main", "doctor"]
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / "torchrig.toml").write_text('[project]\nname = "bench"\n')
        cases = {
            "python_start_baseline": [sys.executable, "-c", "pass"],
            "doctor_probe_this_host": doctor,
            "doctor_json_probe_this_host": [*doctor, "--json"],
            "doctor_h100_host_file": [*doctor, "--host", str(FIXTURE)],
            "doctor_explain_log": [*doctor, "--explain", LOG.read_text()],
        }
        results = {}
        for name, cmd in cases.items():
            timed(cmd, project)  # warm the page cache
            results[name] = summary([timed(cmd, project) for _ in range(args.runs)])
            r = results[name]
            print(f"{name:30s} median {r['median_s']:.3f} s  max {r['max_s']:.3f} s")
    verdict = all(results[k]["max_s"] <= TARGET_S for k in results if k.startswith("doctor"))
    path = write_result(
        "doctor-speed",
        {"target_s": TARGET_S, "meets_target": verdict, "results": results},
    )
    print(f"{'meets' if verdict else 'MISSES'} the {TARGET_S} s target; wrote {path}")


if __name__ == "__main__":
    main()
