"""Runs one job and records it. Stdlib only: it runs inside the image, in a bare interpreter.

    python -m torchrig.jobs.runner --job-dir DIR [--gpus N] [--meta JSON] -- CMD ...
    python -m torchrig.jobs.runner --job-dir DIR --signal TERM|INT|KILL
    python -m torchrig.jobs.runner --probe DIR [DIR ...]

Start (the first form; `torchrig run` starts it with a detached exec, so the engine holds it
and it outlives the client, its terminal and its SSH session):
  - creates DIR (it must not exist: job ids are unique) and appends the job's stdout and
    stderr to DIR/output.log;
  - starts CMD in its own session, hence its own process group, so a signal meant for the
    runner (tini forwarding `docker stop` in a --fresh container, a Ctrl-C on a runner
    started by hand) never reaches the job twice, and the job can be signalled as a whole;
  - with --gpus N > 1 runs it under `torchrun --standalone --nproc_per_node N`; with any
    --gpus N it shows the job the first N GPUs only (CUDA_VISIBLE_DEVICES);
  - writes DIR/job.json (pid, pgid and start time of the job in the container), forwards
    SIGTERM and SIGINT to the job, waits, then writes DIR/exit.json atomically and marks
    job.json ended. It exits with the job's status (128 + N when killed by signal N).

--signal sends a signal the way a stop should reach the job: to its process group; for a
torchrun job, SIGTERM and SIGINT go to each worker's group instead of torchrun's, because
torchrun answers SIGTERM by killing its workers 30 s later, too soon for a large final
checkpoint. SIGKILL goes to every process the job started, whatever its group. Exit 0: sent;
3: the job is not running (ended, or never started).

--probe prints, as JSON, whether each job's runner and job processes are still alive (a job
with no exit record and neither process alive was lost: its runner was killed).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torchrig.jobs.files import EXIT_FILE, JOB_FILE, LOG_FILE, read_json, write_json

EX_USAGE = 64
EX_CANTCREAT = 73
NOT_RUNNING = 3
FORWARDED = (signal.SIGTERM, signal.SIGINT)
SIGNALS = {"TERM": signal.SIGTERM, "INT": signal.SIGINT, "KILL": signal.SIGKILL}


def now() -> str:
    return datetime.datetime.now(datetime.UTC).astimezone().isoformat("T", "seconds")


# --- what runs -------------------------------------------------------------------------------


def job_argv(command: Sequence[str], gpus: int | None) -> list[str]:
    """The command as it runs: under torchrun for more than one GPU on this node.

    --no-python runs the command as given (`python -u train.py`, `python -m pkg`, a shell
    script) rather than torchrun's own `python SCRIPT`, so every form works the same way.
    """
    if gpus is not None and gpus > 1:
        return ["torchrun", "--standalone", f"--nproc_per_node={gpus}", "--no-python", *command]
    return list(command)


def job_env(
    environ: Mapping[str, str], *, job_id: str, job_dir: Path, gpus: int | None
) -> dict[str, str]:
    env = dict(environ)
    env.setdefault("PYTHONUNBUFFERED", "1")  # lines reach output.log as they are printed
    env["TORCHRIG_JOB_ID"] = job_id
    env["TORCHRIG_JOB_DIR"] = str(job_dir)
    if gpus is not None:
        # The first N of the GPUs this container sees (inside it they are numbered from 0).
        visible = [d for d in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        chosen = visible[:gpus] if visible else [str(i) for i in range(gpus)]
        env["CUDA_VISIBLE_DEVICES"] = ",".join(chosen)
    return env


# --- processes, from /proc -------------------------------------------------------------------


def proc_stat(pid: int, proc: Path = Path("/proc")) -> tuple[int, int, int] | None:
    """(ppid, pgrp, start time in clock ticks) of a live process, or None."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = text.rsplit(")", 1)[-1].split()
    if len(fields) < 20 or fields[0] == "Z":  # a zombie has ended; only its parent is late
        return None
    return int(fields[1]), int(fields[2]), int(fields[19])


def processes(proc: Path = Path("/proc")) -> dict[int, tuple[int, int]]:
    """pid → (ppid, pgrp) of every live process."""
    found: dict[int, tuple[int, int]] = {}
    for entry in proc.iterdir():
        if entry.name.isdigit():
            stat = proc_stat(int(entry.name), proc)
            if stat is not None:
                found[int(entry.name)] = (stat[0], stat[1])
    return found


def descendants(root: int, procs: Mapping[int, tuple[int, int]]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _pgrp) in procs.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, ())
    return sorted(found)


def alive(pid: object, start: object, proc: Path = Path("/proc")) -> bool:
    """Is `pid` still the process that was recorded (not a later one with a reused pid)?"""
    if not isinstance(pid, int) or pid <= 0:
        return False
    stat = proc_stat(pid, proc)
    return stat is not None and (start is None or stat[2] == start)


def signal_targets(
    job: Mapping[str, Any], signum: int, procs: Mapping[int, tuple[int, int]]
) -> list[int]:
    """The process groups a signal for this job goes to (see the module's docstring)."""
    pid, pgid = int(job["pid"]), int(job["pgid"])
    if signum == signal.SIGKILL:
        return sorted({pgid} | {procs[p][1] for p in descendants(pid, procs) if p in procs})
    if job.get("torchrun"):
        workers = {procs[p][1] for p, (ppid, _) in procs.items() if ppid == pid}
        if workers:
            return sorted(workers)
    return [pgid]


def send(groups: Sequence[int], signum: int) -> list[int]:
    reached = []
    for group in groups:
        try:
            os.killpg(group, signum)
        except ProcessLookupError:
            continue
        reached.append(group)
    return reached


# --- the three modes -------------------------------------------------------------------------


class Runner:
    def __init__(
        self, job_dir: Path, command: Sequence[str], gpus: int | None, meta: dict[str, Any]
    ):
        self.job_dir = job_dir
        self.command = list(command)
        self.gpus = gpus
        self.job: dict[str, Any] = {
            **meta,
            "id": str(meta.get("id") or job_dir.name),
            "command": list(command),
            "argv": job_argv(command, gpus),
            "gpus": gpus,
            "torchrun": gpus is not None and gpus > 1,
            "cwd": str(Path.cwd()),
            "status": "starting",
        }
        self.received: list[str] = []
        self.pending: list[int] = []

    def on_signal(self, signum: int, _frame: object) -> None:
        if signum == signal.SIGHUP:
            return  # a closing terminal is no reason to stop a detached job
        self.received.append(signal.Signals(signum).name)
        if "pid" in self.job:
            send(signal_targets(self.job, signum, processes()), signum)
        else:
            self.pending.append(signum)  # delivered as soon as the job exists

    def run(self) -> int:
        try:
            self.job_dir.parent.mkdir(parents=True, exist_ok=True)
            self.job_dir.mkdir()
        except FileExistsError:
            print(f"torchrig: job folder {self.job_dir} exists already", file=sys.stderr)
            return EX_CANTCREAT
        for signum in (*FORWARDED, signal.SIGHUP):
            signal.signal(signum, self.on_signal)
        log_fd = os.open(self.job_dir / LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        started = time.monotonic()
        self.job.update(started=now(), runner_pid=os.getpid(), runner_start=_start_of(os.getpid()))
        env = job_env(os.environ, job_id=self.job["id"], job_dir=self.job_dir, gpus=self.gpus)
        try:
            child = subprocess.Popen(
                self.job["argv"],
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=log_fd,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            # As a shell does: 127 when the command is found nowhere, 126 when it is found but
            # cannot run. exec says "permission denied" for a name found nowhere when a folder
            # on PATH is not searchable (a normal user's PATH that names a root-only folder).
            name = self.job["argv"][0]
            found = "/" in name or shutil.which(name, path=env.get("PATH")) is not None
            reason = exc.strerror if found else "command not found"
            os.write(log_fd, f"torchrig: cannot start {name}: {reason}\n".encode())
            os.close(log_fd)
            return self.finish(126 if isinstance(exc, PermissionError) and found else 127, started)
        os.close(log_fd)
        pid = child.pid
        self.job.update(pgid=pid, pid_start=_start_of(pid), status="running")
        self.job["pid"] = pid  # last: from here on the signal handler forwards at once
        write_json(self.job_dir / JOB_FILE, self.job)
        while self.pending:
            early = self.pending.pop(0)
            send(signal_targets(self.job, early, processes()), early)
        return self.finish(child.wait(), started)

    def finish(self, returncode: int, started: float) -> int:
        killed = returncode < 0
        record = {
            "returncode": None if killed else returncode,
            "signal": signal.Signals(-returncode).name if killed else None,
            "ended": now(),
            "seconds": round(time.monotonic() - started, 3),
            "signals_received": self.received,
        }
        write_json(self.job_dir / EXIT_FILE, record)
        self.job["status"] = "killed" if killed else "exited"
        write_json(self.job_dir / JOB_FILE, self.job)
        return 128 - returncode if killed else returncode


def _start_of(pid: int) -> int | None:
    stat = proc_stat(pid)
    return stat[2] if stat else None


def signal_job(job_dir: Path, name: str) -> int:
    job = read_json(job_dir / JOB_FILE)
    if (job_dir / EXIT_FILE).exists() or job is None or "pid" not in job:
        state = "has ended" if (job_dir / EXIT_FILE).exists() else "has not started"
        print(f"torchrig: job {job_dir.name} {state}", file=sys.stderr)
        return NOT_RUNNING
    if not alive(job["pid"], job.get("pid_start")):
        print(f"torchrig: job {job_dir.name} is not running", file=sys.stderr)
        return NOT_RUNNING
    signum = SIGNALS[name]
    reached = send(signal_targets(job, signum, processes()), signum)
    print(json.dumps({"signal": f"SIG{name}", "groups": reached}))
    return 0 if reached else NOT_RUNNING


def probe(job_dirs: Sequence[Path]) -> dict[str, dict[str, bool]]:
    found = {}
    for job_dir in job_dirs:
        job = read_json(job_dir / JOB_FILE) or {}
        found[job_dir.name] = {
            "runner": alive(job.get("runner_pid"), job.get("runner_start")),
            "job": alive(job.get("pid"), job.get("pid_start")),
        }
    return found


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    args = list(argv)
    command = args[args.index("--") + 1 :] if "--" in args else []
    options = args[: args.index("--")] if "--" in args else args
    parser = argparse.ArgumentParser(prog="python -m torchrig.jobs.runner")
    parser.add_argument("--job-dir", type=Path)
    parser.add_argument("--gpus", type=int)
    parser.add_argument("--meta", default="{}", help="a JSON object added to job.json")
    parser.add_argument("--signal", choices=sorted(SIGNALS))
    parser.add_argument("--probe", nargs="+", type=Path, metavar="DIR")
    return parser.parse_args(options), command


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args, command = parse(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:
        return EX_USAGE if exc.code else 0
    if args.probe:
        print(json.dumps(probe(args.probe)))
        return 0
    if args.job_dir is None:
        print("torchrig: --job-dir DIR is needed", file=sys.stderr)
        return EX_USAGE
    if args.signal:
        return signal_job(args.job_dir, args.signal)
    try:
        meta = json.loads(args.meta)
    except ValueError:
        meta = None
    if not command or not isinstance(meta, dict) or (args.gpus is not None and args.gpus < 0):
        print("torchrig: give the command after --, --meta as a JSON object", file=sys.stderr)
        return EX_USAGE
    return Runner(args.job_dir, command, args.gpus, meta).run()


if __name__ == "__main__":
    sys.exit(main())
