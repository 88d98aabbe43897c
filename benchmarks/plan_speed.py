"""How long `torchrig plan` takes for the default spec, Python start included.

Target (issue 2): at most 1 s wall on a 2-core machine. Baseline measured in the same run:
the bare interpreter start (`python -c pass`), which no CLI can beat.

    python benchmarks/plan_speed.py [--runs 15]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _common import summary, timed, write_result

FIXTURE = Path(__file__).parents[1] / "tests" / "fixtures" / "host" / "h100-sxm" / "host.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / "torchrig.toml").write_text('[project]\nname = "bench"\n')
        plan = [sys.executable, "-m", "torchrig.cli.main", "plan"]
        cases = {
            "python_start_baseline": [sys.executable, "-c", "pass"],
            "plan_probe_this_host": plan,
            "plan_h100_host_file": [*plan, "--host", str(FIXTURE)],
            "plan_json_probe_this_host": [*plan, "--json"],
        }
        results = {}
        for name, cmd in cases.items():
            timed(cmd, cwd=project)  # warm the page cache
            results[name] = summary([timed(cmd, cwd=project) for _ in range(args.runs)])
            r = results[name]
            print(f"{name:28s} median {r['median_s']:.3f} s  max {r['max_s']:.3f} s")
    target = 1.0
    verdict = all(results[k]["max_s"] <= target for k in results if k.startswith("plan"))
    path = write_result(
        "plan-speed",
        {"target_s": target, "meets_target": verdict, "results": results},
    )
    print(f"{'meets' if verdict else 'MISSES'} the {target} s target; wrote {path}")


if __name__ == "__main__":
    main()
