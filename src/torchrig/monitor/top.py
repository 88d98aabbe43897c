"""`torchrig top`: the GPUs (utilisation, memory, power, who holds them) and the jobs
(throughput, MFU, loss, ETA) of a workspace, refreshed every second; --once --json for
scripts.

It reads what the exporter reads (NVML here, the jobs folder and each job's run files), so
it needs no running exporter and works on the host as well as inside the workbench.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torchrig.monitor.gpu import MIB, Reader
from torchrig.monitor.holders import holders_of
from torchrig.monitor.training import as_json, read_jobs
from torchrig.train.timeline import Follower


def snapshot(
    workspace: Path,
    reader: Reader,
    *,
    local: bool,
    now: float | None = None,
    followers: dict[Path, Follower] | None = None,
    pid_ns: str | None = None,
) -> dict[str, Any]:
    """pid_ns: the workbench's PID namespace (holders.py), None where it is unknown."""
    views = read_jobs(workspace, local=local, followers=followers)
    snap = reader.read()
    holders = holders_of(
        [p.pid for g in snap.gpus for p in g.processes],
        {v.id: v.pid for v in views if v.pid is not None and v.state == "running"},
        pid_ns=pid_ns,
    )
    gpus = []
    for g in snap.gpus:
        gpus.append({
            "index": g.index, "uuid": g.uuid, "name": g.name,
            "mig": None if g.mig_instance is None else {"id": g.mig_instance,
                                                        "profile": g.mig_profile},
            "util_percent": g.util_percent, "mem_used_bytes": g.mem_used_bytes,
            "mem_total_bytes": g.mem_total_bytes, "power_w": g.power_w,
            "power_limit_w": g.power_limit_w, "temp_c": g.temp_c,
            "throttle": sorted(k for k, on in g.throttle.items() if on and k != "gpu_idle"),
            "processes": [{"pid": p.pid, "mem_bytes": p.used_bytes,
                           "job": holders.get(p.pid)} for p in g.processes],
        })  # fmt: skip
    return {
        "time": time.time() if now is None else now,
        "workspace": str(workspace),
        "gpus": gpus,
        "gpu_absent": snap.absent,
        "driver": snap.driver,
        "jobs": [as_json(v) for v in views],
    }


def _num(value: Any, fmt: str, unit: str = "") -> str:
    return "-" if value is None else format(value, fmt) + unit


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def render(snap: dict[str, Any]) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = []
    gpus = Table(title="GPUs", title_justify="left", expand=True)
    for col in ("GPU", "name", "util", "memory", "power", "temp", "held by"):
        gpus.add_column(col, justify="right" if col in ("util", "power", "temp") else "left")
    for g in snap["gpus"]:
        mig = f" MIG {g['mig']['profile']}" if g["mig"] else ""
        mem = (f"{g['mem_used_bytes'] / 1024 / MIB:.1f}/{g['mem_total_bytes'] / 1024 / MIB:.0f} GiB"
               if g["mem_used_bytes"] is not None and g["mem_total_bytes"] else "-")  # fmt: skip
        power = f"{_num(g['power_w'], '.0f')}/{_num(g['power_limit_w'], '.0f')} W"
        held = ", ".join(
            f"{p['job'] or 'pid ' + str(p['pid'])}"
            + (f" {p['mem_bytes'] / 1024 / MIB:.1f} GiB" if p["mem_bytes"] else "")
            for p in g["processes"]
        )
        # (Not in [brackets]: rich would take them for markup.)
        throttle = f"; throttled: {', '.join(g['throttle'])}" if g["throttle"] else ""
        util, temp = _num(g["util_percent"], ".0f", "%"), _num(g["temp_c"], ".0f", "°C")
        gpus.add_row(f"{g['index']}{mig}", g["name"], util, mem, power, temp,
                     (held or "-") + throttle)  # fmt: skip
    if snap["gpus"]:
        parts.append(gpus)
    else:
        parts.append(Text(f"GPUs: none ({snap['gpu_absent']})", style="dim"))
    jobs = Table(title="Jobs", title_justify="left", expand=True)
    for col in ("job", "state", "step", "loss", "throughput", "MFU", "data wait", "ETA", "ckpt"):
        jobs.add_column(col, justify="left" if col in ("job", "state") else "right")
    for j in snap["jobs"]:
        step = "-" if j["step"] is None else f"{j['step']}/{j['total_steps'] or '?'}"
        rate = "-" if j["throughput"] is None else f"{j['throughput']:,.0f} {j['unit']}/s"
        age = (
            None if j["last_checkpoint_time"] is None else snap["time"] - j["last_checkpoint_time"]
        )
        jobs.add_row(
            j["id"], j["state"], step, _num(j["loss"], ".4f"), rate,
            _num(None if j["mfu"] is None else j["mfu"] * 100, ".1f", "%"),
            _num(None if j["data_wait"] is None else j["data_wait"] * 100, ".1f", "%"),
            _duration(j["eta_seconds"]),
            "-" if age is None else f"{j['last_checkpoint_step']} ({_duration(age)} ago)",
        )  # fmt: skip
    parts.append(jobs if snap["jobs"] else Text("Jobs: none yet", style="dim"))
    return Group(*parts)


def live(take: Callable[[], dict[str, Any]], interval_s: float = 1.0) -> None:
    """Redraw every interval until Ctrl-C."""
    from rich.live import Live

    with Live(render(take()), refresh_per_second=4, screen=False) as view:
        try:
            while True:
                time.sleep(interval_s)
                view.update(render(take()))
        except KeyboardInterrupt:
            pass
