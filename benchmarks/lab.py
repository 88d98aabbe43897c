"""torchrig lab on this machine: a user's server ready (warm image), the hub's overhead per
request, and 5 users spawning at once.

Makes a throwaway lab (the CPU-torch test spec plus jupyterhub, users u1..u5), runs
`torchrig lock` and `torchrig lab up` (the image is built before anything is timed), then:

1. ready: u1 starts their server through the hub's REST API with their own token; the
   time runs to the hub reporting it ready. Stop, and again (--rounds).
2. overhead: GET /user/u1/api/status with u1's token, through the hub's proxy and straight
   to the container on the lab network (the same server, the same token check), --requests
   each, interleaved; median and p95 latencies and their difference.
3. together: u1..u5 start at once; each one's time to ready, how many got there, and that no
   server was lost (all five still running after the last one was ready).

Run it from a snapshot of the source (PYTHONPATH=SNAPSHOT/src), not a checkout others edit:
the image's tag covers torchrig's own files, and an edit mid-run would rebuild.

    python benchmarks/lab.py [--rounds 3] [--requests 200]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import load_average, summary, write_result

# The container tests' CPU-torch spec and wait, from this checkout's tests/ (as cluster.py
# takes its cluster): one text for both, so a benchmark times what the tests check.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.container.workbench import cpu_torch_spec, wait_until

from torchrig.lab.hub import HubApi, request

PROJECT = "t-lab-bench"
USERS = [f"u{i}" for i in range(1, 6)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def spec(hub: int, api: int, proxy: int) -> str:
    users = "".join(
        f'\n[[lab.users]]\nname = "{u}"\nuid = {72000 + i}\nssh_port = {free_port()}\n'
        'memory = "2g"\ncpus = 1.0\n'
        for i, u in enumerate(USERS)
    )
    lab = (
        f"\n[lab]\nhub_port = {hub}\nhub_api_port = {api}\nproxy_api_port = {proxy}\n"
        f"idle_timeout = 0\n{users}"
    )
    return cpu_torch_spec(PROJECT, packages=["jupyterhub==6.1.1"], extra=lab)


def cli(project: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-P", "-m", "torchrig.cli.main", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        raise SystemExit(f"torchrig {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


def ready(url: str, user: str, token: str) -> bool:
    status, text = request(f"{url}/hub/api/users/{user}", token=token)
    return status == 200 and bool(json.loads(text).get("servers", {}).get("", {}).get("ready"))


def start_and_wait(url: str, user: str, token: str, timeout: float = 300) -> float:
    began = time.monotonic()
    status, text = request(
        f"{url}/hub/api/users/{user}/server", token=token, method="POST", body={}
    )
    if status not in (201, 202):
        raise SystemExit(f"starting {user}'s server: {status} {text[:300]}")
    wait_until(lambda: ready(url, user, token), timeout, f"{user}'s server to be ready")
    return time.monotonic() - began


def stop_and_wait(url: str, user: str, token: str) -> None:
    request(f"{url}/hub/api/users/{user}/server", token=token, method="DELETE")
    name = f"torchrig-{PROJECT}-u-{user}"

    def stopped() -> bool:
        gone = subprocess.run(["docker", "inspect", name], capture_output=True).returncode != 0
        return gone and not ready(url, user, token)

    wait_until(stopped, 90, f"{user}'s server to stop")


def latency(url: str, token: str) -> float:
    began = time.perf_counter()
    status, _ = request(url, token=token, timeout=10)
    if status != 200:
        raise SystemExit(f"{url} answered {status}")
    return time.perf_counter() - began


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="t-lab-bench-"))
    project = root / "project"
    project.mkdir()
    env = {**os.environ, "XDG_STATE_HOME": str(root / "state")}
    hub, api, proxy = free_port(), free_port(), free_port()
    (project / "torchrig.toml").write_text(spec(hub, api, proxy))
    url = f"http://127.0.0.1:{hub}"
    try:
        cli(project, env, "lock")
        began = time.monotonic()
        cli(project, env, "lab", "up")
        up_s = time.monotonic() - began
        service = (root / "state" / "torchrig" / PROJECT / "lab" / "service_token").read_text()
        client = HubApi(url, service.strip())
        tokens = {u: client.new_token(u, "benchmark") for u in USERS}

        # 1. one user's server, warm image.
        one = []
        for _ in range(args.rounds):
            one.append(start_and_wait(url, "u1", tokens["u1"]))
            stop_and_wait(url, "u1", tokens["u1"])

        # 2. the hub's overhead per request: through the proxy vs straight to the container.
        start_and_wait(url, "u1", tokens["u1"])
        inspect = json.loads(
            subprocess.run(
                ["docker", "inspect", f"torchrig-{PROJECT}-u-u1"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )[0]
        ip = next(iter(inspect["NetworkSettings"]["Networks"].values()))["IPAddress"]
        through, direct = [], []
        for _ in range(10):  # warm both paths (token cache, connections)
            latency(f"{url}/user/u1/api/status", tokens["u1"])
            latency(f"http://{ip}:8888/user/u1/api/status", tokens["u1"])
        for _ in range(args.requests):
            through.append(latency(f"{url}/user/u1/api/status", tokens["u1"]))
            direct.append(latency(f"http://{ip}:8888/user/u1/api/status", tokens["u1"]))
        stop_and_wait(url, "u1", tokens["u1"])

        # 3. five users at once.
        began = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(len(USERS)) as pool:
            times = dict(
                zip(
                    USERS,
                    pool.map(lambda u: start_and_wait(url, u, tokens[u]), USERS),
                    strict=True,
                )
            )
        all_s = time.monotonic() - began
        still = [u for u in USERS if ready(url, u, tokens[u])]
    finally:
        subprocess.run(
            [sys.executable, "-P", "-m", "torchrig.cli.main", "lab", "down"],
            cwd=project,
            env=env,
            capture_output=True,
        )
        for user in USERS:
            subprocess.run(
                ["docker", "volume", "rm", "-f", f"torchrig-{PROJECT}-home-{user}"],
                capture_output=True,
            )
        subprocess.run(
            ["docker", "network", "rm", f"torchrig-{PROJECT}-net-lab"], capture_output=True
        )
    ms = 1000.0
    result = {
        "what": "torchrig lab: server ready (warm image), hub overhead per request, 5 at once",
        "engine": "docker",
        "first_lab_up_s_build_included": round(up_s, 2),
        "server_ready_warm_image": summary(one),
        "request_latency_ms": {
            "requests": args.requests,
            "through_hub_median": round(statistics.median(through) * ms, 2),
            "through_hub_p95": round(percentile(through, 0.95) * ms, 2),
            "direct_median": round(statistics.median(direct) * ms, 2),
            "direct_p95": round(percentile(direct, 0.95) * ms, 2),
            "hub_overhead_median": round(
                (statistics.median(through) - statistics.median(direct)) * ms, 2
            ),
        },
        "five_users_at_once": {
            "ready": len(times),
            "still_running_after": len(still),
            "lost": len(USERS) - len(still),
            "each_ready_s": {u: round(t, 2) for u, t in times.items()},
            "all_ready_s": round(all_s, 2),
        },
        "load_average_after": load_average(),
    }
    path = write_result("lab", result)
    print(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
