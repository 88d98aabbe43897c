"""`torchrig verify --nodes`: does every node of the allocation join, and does an all-reduce
across them give the right answer? Runs once per node (srun, one task each) in the image.

    python -m torchrig.cluster.nodecheck [SECONDS]   (env: SLURM_NODEID, SLURMD_NODENAME,
                                        SLURM_JOB_NUM_NODES, TORCHRIG_RDZV_ENDPOINT)

Node 0 hosts a TCP store at the rendezvous endpoint; every node writes its name there. A
node missing after the timeout is named, with the likely causes, before any collective
could hang on it. Then one process per node runs init_process_group (NCCL with GPUs, else
gloo) and an all-reduce of each rank's number: the sum must be 1 + 2 + … + N.
Exit 0: all joined and the sum is right; 1: a node missing or a wrong sum; 2: bad input.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import timedelta

JOIN_TIMEOUT_S = 60.0
CAUSES = (
    "a firewall between the nodes (the rendezvous port and the ephemeral ports must be open)",
    "the wrong network interface (set [cluster] socket_ifname: NCCL_SOCKET_IFNAME / "
    "GLOO_SOCKET_IFNAME)",
    "no InfiniBand/RDMA where NCCL expects it (NCCL_IB_DISABLE=1 to test over TCP)",
    "a memlock limit too low for RDMA (ulimit -l unlimited in slurmd's service)",
)


def _env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        print(
            f"error: {name} is not set — run this through `torchrig verify --nodes`",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return value


def missing_nodes(expected: list[str], joined: list[str]) -> list[str]:
    return [n for n in expected if n not in joined]


def explain(missing: list[str], endpoint: str, waited: float) -> str:
    names = ", ".join(missing)
    return (
        f"node(s) {names} did not join the rendezvous at {endpoint} within {waited:g} s; "
        "likely causes: " + "; ".join(CAUSES)
    )


def main(argv: list[str] | None = None) -> int:
    import torch
    import torch.distributed as dist

    words = sys.argv[1:] if argv is None else argv
    join_s = float(words[0]) if words else JOIN_TIMEOUT_S

    rank = int(_env("SLURM_NODEID"))
    world = int(_env("SLURM_JOB_NUM_NODES"))
    me = _env("SLURMD_NODENAME")
    endpoint = _env("TORCHRIG_RDZV_ENDPOINT")
    expected = [p.split("=", 1)[0] for p in os.environ.get("TORCHRIG_NODE_ADDRS", "").split()]
    host, _, port = endpoint.rpartition(":")
    # The others give up later than node 0, so node 0 is the one that names who is missing.
    store = dist.TCPStore(
        host, int(port) + 1, world_size=None, is_master=rank == 0,
        timeout=timedelta(seconds=join_s + (0 if rank == 0 else 5)), wait_for_workers=False,
    )  # fmt: skip
    store.set(f"joined/{rank}", me)
    if rank == 0:
        began = time.monotonic()
        while time.monotonic() - began < join_s:
            if store.add("joined-count", 0) >= world - 1:
                break
            time.sleep(0.2)
        joined = [me] + [
            store.get(f"joined/{r}").decode()
            for r in range(1, world)
            if store.check([f"joined/{r}"])
        ]
        missing = missing_nodes(expected or joined, joined)
        if len(joined) < world:
            store.set("verdict", "missing")
            print(f"torchrig verify: {explain(missing or ['?'], endpoint, join_s)}", flush=True)
            return 1
        store.set("verdict", "ok")
    else:
        store.add("joined-count", 1)
        store.wait(["verdict"], timedelta(seconds=join_s + 5))
        if store.get("verdict") != b"ok":
            return 1
    use_cuda = torch.cuda.is_available()
    dist.init_process_group(
        "nccl" if use_cuda else "gloo", store=dist.PrefixStore("pg", store), rank=rank,
        world_size=world, timeout=timedelta(seconds=join_s),
    )  # fmt: skip
    value = torch.tensor([float(rank + 1)], device="cuda" if use_cuda else "cpu")
    began = time.monotonic()
    dist.all_reduce(value)
    seconds = time.monotonic() - began
    want = world * (world + 1) / 2
    ok = float(value.item()) == want
    if rank == 0:
        verdict = "ok" if ok else f"WRONG: got {value.item():g}, want {want:g}"
        backend = "nccl" if use_cuda else "gloo"
        print(
            f"torchrig verify: {world} node(s) joined ({', '.join(joined)}); "
            f"all-reduce over {backend}: {verdict} ({seconds * 1000:.1f} ms)"
        )
    dist.destroy_process_group()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
