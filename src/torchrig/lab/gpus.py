"""Which running server holds which GPU: the lab's pool, by UUID, kept in one locked file.

The hub (its spawn and stop hooks) and `torchrig lab status` read and write `gpus.json`
in the lab's state folder under an exclusive flock, so two spawns at once never take the same
card. Policies:

- exclusive: a server gets whole GPUs that nobody else holds;
- shared: a GPU takes up to `per_gpu` servers; the least-held GPUs are given first.

A user asking when too few are free is put in a queue and told their position; they get
GPUs only when nobody ahead of them is still waiting (first come, first served). A queue
entry not retried within QUEUE_TTL_S is dropped, so someone who gave up blocks nobody.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

QUEUE_TTL_S = 600.0


class NoGpuFree(Exception):
    """Too few GPUs free now; str() is the one line the user sees in the hub."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.position = position


@dataclass
class Holding:
    user: str
    since: float


@dataclass
class Pool:
    """The pool's state: holders per GPU UUID and the queue of users waiting."""

    gpus: list[str]
    holders: dict[str, list[Holding]] = field(default_factory=dict)
    queue: list[tuple[str, int, float]] = field(default_factory=list)  # user, count, last try

    def held_by(self, user: str) -> list[str]:
        return [g for g in self.gpus if any(h.user == user for h in self.holders.get(g, []))]

    def to_json(self) -> dict[str, object]:
        return {
            "gpus": self.gpus,
            "holders": {
                g: [{"user": h.user, "since": h.since} for h in hs]
                for g, hs in self.holders.items()
                if hs
            },
            "queue": [{"user": u, "count": c, "last_try": t} for u, c, t in self.queue],
        }

    @classmethod
    def from_json(cls, data: dict[str, object], gpus: list[str]) -> Pool:
        holders_raw = data.get("holders", {})
        queue_raw = data.get("queue", [])
        holders: dict[str, list[Holding]] = {}
        if isinstance(holders_raw, dict):
            for gpu, items in holders_raw.items():
                # A GPU no longer in the pool (the admin changed it) keeps no holders.
                if gpu in gpus and isinstance(items, list):
                    holders[gpu] = [Holding(str(i["user"]), float(i["since"])) for i in items]
        queue = (
            [(str(q["user"]), int(q["count"]), float(q["last_try"])) for q in queue_raw]
            if isinstance(queue_raw, list)
            else []
        )
        return cls(gpus=list(gpus), holders=holders, queue=queue)


def allocate(pool: Pool, user: str, count: int, policy: str, per_gpu: int, now: float) -> list[str]:
    """The GPUs `user` gets now (already held ones first), or NoGpuFree with a queue place."""
    if count <= 0:
        release(pool, user)
        return []
    if count > len(pool.gpus):
        raise NoGpuFree(
            f"you are allowed {count} GPUs but this server has {len(pool.gpus)}: "
            "ask the lab's admin to lower your allowance",
            0,
        )
    held = pool.held_by(user)
    if len(held) >= count:
        return held[:count]
    pool.queue = [q for q in pool.queue if now - q[2] < QUEUE_TTL_S]
    limit = 1 if policy == "exclusive" else per_gpu
    candidates = sorted(
        (g for g in pool.gpus if g not in held and len(pool.holders.get(g, [])) < limit),
        key=lambda g: (len(pool.holders.get(g, [])), pool.gpus.index(g)),
    )
    ahead = [q for q in pool.queue if q[0] != user]
    mine = next((i for i, q in enumerate(pool.queue) if q[0] == user), None)
    if mine is not None:
        ahead = pool.queue[:mine]
    if len(held) + len(candidates) < count or ahead:
        entry = (user, count, now)
        if mine is None:
            pool.queue.append(entry)
            mine = len(pool.queue) - 1
        else:
            pool.queue[mine] = entry
        free = len(candidates)
        raise NoGpuFree(
            f"no GPU free for you now ({free} free, you need {count - len(held)}; "
            f"{_holders_line(pool)}): you are number {mine + 1} in the queue; start your "
            "server again in a few minutes (the queue keeps your place for "
            f"{int(QUEUE_TTL_S // 60)} minutes)",
            mine + 1,
        )
    pool.queue = [q for q in pool.queue if q[0] != user]
    taken = candidates[: count - len(held)]
    for gpu in taken:
        pool.holders.setdefault(gpu, []).append(Holding(user, now))
    return held + taken


def release(pool: Pool, user: str) -> list[str]:
    freed = pool.held_by(user)
    for gpu in freed:
        pool.holders[gpu] = [h for h in pool.holders[gpu] if h.user != user]
    return freed


def _holders_line(pool: Pool) -> str:
    users = sorted({h.user for hs in pool.holders.values() for h in hs})
    return "held by " + ", ".join(users) if users else "none held"


@contextlib.contextmanager
def locked_pool(path: Path, gpus: list[str]) -> Iterator[Pool]:
    """The pool from `path`, written back atomically when the block ends without error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_suffix(".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            data = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            data = {}
        pool = Pool.from_json(data if isinstance(data, dict) else {}, gpus)
        yield pool
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(pool.to_json(), indent=1) + "\n")
        tmp.chmod(0o600)
        tmp.replace(path)
    finally:
        os.close(fd)


def read_pool(path: Path, gpus: list[str]) -> Pool:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        data = {}
    return Pool.from_json(data if isinstance(data, dict) else {}, gpus)


def now() -> float:
    return time.time()
