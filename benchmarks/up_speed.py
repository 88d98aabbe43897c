"""`torchrig up` to JupyterLab answering, with the image built (issue 18: at most 3 s median).

Each round: `torchrig down` (state kept), then `torchrig up` and poll JupyterLab's /api
with the token until it answers 200; the time runs from launching `up` to that answer.
Baseline in the same run: the engine alone starting the same (stopped) container and
JupyterLab answering, so the number shows what torchrig adds on top of the engine.

Uses the CPU-torch test spec (the CUDA image starts the same way; only its size differs).
`--before SRC` also times, in the same rounds, `up` from another torchrig source folder (e.g.
`git archive` of an older commit), so a change is measured against what it replaces.
Run it from a snapshot of the source (PYTHONPATH=SNAPSHOT), not a checkout others edit:
the image's tag covers torchrig's own files, and an edit mid-run would rebuild.

    python benchmarks/up_speed.py [--engine docker] [--rounds 7] [--before SRC]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from _common import load_average, summary, write_result

# The container tests' CPU-torch spec and wait, from this checkout's tests/ (as cluster.py
# takes its cluster): one text for both, so a benchmark times what the tests check.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.container.workbench import cpu_torch_spec, jupyter_only, wait_until

# JupyterLab off the usual 8888, so another workbench cannot move it between rounds.
SPEC = cpu_torch_spec("bench-up", sections=jupyter_only(18931))


def with_source(src: str | None) -> dict[str, str] | None:
    return None if src is None else {**os.environ, "PYTHONPATH": src}


def torchrig(project: Path, *args: str, src: str | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "torchrig.cli.main", *args],
        cwd=project,
        env=with_source(src),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"torchrig {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def answered(url: str, token: str) -> bool:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def wait_for_jupyter(url: str, token: str, started: float, limit: float = 60) -> float:
    """Seconds from `started` to JupyterLab answering 200 (polled every 50 ms)."""
    wait_until(lambda: answered(url, token), limit, f"JupyterLab answering at {url}", 0.05)
    return time.perf_counter() - started


def follow_phases(stream: IO[str], started: float, marks: dict[str, float]) -> None:
    """Where `up`'s time goes, from its `--debug` lines (each engine command, printed as it
    starts): its own start (Python, imports, spec and lock) until the first engine command,
    and everything before the engine is told to run the container (probe, plan, build
    check, lookups); the engine's run and JupyterLab's start follow."""
    for line in stream:
        now = time.perf_counter() - started
        if line.startswith("+ "):
            marks.setdefault("first_engine_call_s", now)
            words = line.split()
            if len(words) > 2 and words[2] == "run" and Path(words[1]).name in ENGINES:
                marks.setdefault("run_call_s", now)


ENGINES = ("docker", "podman")
TORCHRIG = (sys.executable, "-m", "torchrig.cli.main")


def phase_medians(rounds: list[dict[str, float]]) -> dict[str, float]:
    keys = ("first_engine_call_s", "run_call_s", "jupyter_answering_s")
    return {
        key: round(statistics.median(r[key] for r in rounds if key in r), 2)
        for key in keys
        if any(key in r for r in rounds)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="docker")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--before", help="a torchrig source folder to time alongside")
    args = parser.parse_args()
    engine = args.engine
    load_before = load_average()

    with tempfile.TemporaryDirectory(prefix="torchrig-up-bench-") as tmp:
        project = Path(tmp)
        (project / "torchrig.toml").write_text(SPEC)
        # As root torchrig gives the workbench user (uid 70000) the root-owned folder itself;
        # 0755 as a project folder usually is (as root, torchrig reads the spec with the
        # folder owner's rights, and root's 0700 temp folder let `down` read nothing).
        project.chmod(0o755)
        if args.before:  # its image first, so no round of it includes a build
            torchrig(project, "up", "--engine", engine, src=args.before)
            torchrig(project, "down", "--engine", engine, src=args.before)
        start = time.perf_counter()
        info = json.loads(torchrig(project, "up", "--engine", engine, "--json"))
        first_up_s = time.perf_counter() - start
        token = str(info["jupyter_url"]).split("token=", 1)[1]
        url = f"http://127.0.0.1:{info['ports']['jupyter']}/api/contents"
        name = str(info["name"])
        try:
            up_samples, engine_samples, returned = [], [], []
            before_samples, before_returned = [], []
            sources = [(None, up_samples, returned)]
            phases: dict[str | None, list[dict[str, float]]] = {None: [], args.before: []}
            if args.before:
                sources.append((args.before, before_samples, before_returned))
            for _ in range(args.rounds):
                for src, samples, returns in sources:
                    torchrig(project, "down", "--engine", engine, src=src)
                    started = time.perf_counter()
                    client = subprocess.Popen(
                        [*TORCHRIG, "--debug", "up", "--engine", engine],
                        cwd=project,
                        env=with_source(src),
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                        text=True,
                    )
                    marks: dict[str, float] = {}
                    assert client.stderr is not None
                    reader = threading.Thread(
                        target=follow_phases, args=(client.stderr, started, marks), daemon=True
                    )
                    reader.start()
                    samples.append(wait_for_jupyter(url, token, started))
                    marks["jupyter_answering_s"] = samples[-1]
                    phases[src].append(marks)
                    label = "before" if src else "up"
                    print(f"{label} → JupyterLab answering: {samples[-1]:.2f} s", flush=True)
                    # `up` goes on to wait for the health check; a stop before it returns
                    # would look like a failed start to it (and it would clean up).
                    if client.wait(timeout=120) != 0:
                        raise SystemExit("torchrig up failed during the benchmark")
                    reader.join(timeout=10)
                    returns.append(time.perf_counter() - started)
                subprocess.run([engine, "stop", "-t", "30", name], check=True, capture_output=True)
                started = time.perf_counter()
                subprocess.run([engine, "start", name], check=True, capture_output=True)
                engine_samples.append(wait_for_jupyter(url, token, started))
                print(f"{engine} start → answering: {engine_samples[-1]:.2f} s", flush=True)
                # The next round starts from `down`, as a person would.
        finally:
            torchrig(project, "down", "--purge", "--engine", engine)

    up = summary(up_samples)
    baseline = summary(engine_samples)
    result = {
        "benchmark": "up_to_jupyter",
        "engine": engine,
        "first_up_including_build_check_s": round(first_up_s, 2),
        "up_to_jupyter_answering": up,
        "baseline_engine_start_to_jupyter_answering": baseline,
        "overhead_median_s": round(up["median_s"] - baseline["median_s"], 3),
        # When `up` prints the URL: after the image's health check first passes.
        "up_returns": summary(returned),
        "target_median_s": 3.0,
        "meets_target": up["median_s"] <= 3.0,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        # Seconds from launching `up`, medians over the rounds (follow_phases).
        "up_phases_median_s": phase_medians(phases[None]),
    }
    if args.before:
        result["before_phases_median_s"] = phase_medians(phases[args.before])
        result["before_source"] = args.before
        result["before_up_to_jupyter_answering"] = summary(before_samples)
        result["before_up_returns"] = summary(before_returned)
    path = write_result(f"up-speed-{engine}", result)
    print(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
