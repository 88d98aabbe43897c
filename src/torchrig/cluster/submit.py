"""Submit an sbatch script and follow the job to its end: Slurm's own commands, nothing else.

The job's output file and exit file live in its folder on the shared folder, so following
needs no accounting database (sacct): `scontrol show job` says the state while Slurm keeps
the job (MinJobAge), and the script's exit file says how the last attempt ended.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torchrig.cluster.slurm import EXIT_FILE, LOG_FILE
from torchrig.command import run_command
from torchrig.errors import ToolError, UsageError

DONE_STATES = frozenset(
    {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
     "DEADLINE", "PREEMPTED"}
)  # fmt: skip
POLL_S = 1.0


def _slurm(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    if shutil.which(argv[0]) is None:
        raise UsageError(
            f"{argv[0]} is not on PATH: this machine is not a Slurm login node",
            "run torchrig where sbatch works, or copy the script from `torchrig export slurm`",
        )
    try:
        return run_command(argv, timeout)  # shown by --debug like every host command
    except subprocess.TimeoutExpired:
        raise ToolError(
            f"{argv[0]} did not answer within {timeout:g} s", "is slurmctld up? (`scontrol ping`)"
        ) from None


def submit(script: Path) -> int:
    done = _slurm("sbatch", "--parsable", str(script))
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no reason given"])[-1]
        raise ToolError(f"sbatch refused the job: {reason}", "fix the [cluster] section and retry")
    return int(done.stdout.strip().split(";", 1)[0])


@dataclass(frozen=True)
class SlurmState:
    state: str
    exit_code: int | None
    restarts: int


UNANSWERED = SlurmState(state="UNANSWERED", exit_code=None, restarts=0)
GIVE_UP_S = 120.0  # slurmctld not answering for this long ends following


def job_state(job_id: int) -> SlurmState | None:
    """State, exit code and restart count from `scontrol show job`; None once Slurm forgot
    it; UNANSWERED when slurmctld did not answer (a busy controller times out RPCs)."""
    done = _slurm("scontrol", "show", "job", "-o", str(job_id))
    if done.returncode != 0:
        return None if "Invalid job id" in done.stderr else UNANSWERED
    fields = dict(re.findall(r"(\w+)=(\S*)", done.stdout))
    code = fields.get("ExitCode", "")
    exit_code = int(code.split(":", 1)[0]) if re.match(r"^\d+:\d+$", code) else None
    return SlurmState(
        state=fields.get("JobState", "UNKNOWN"),
        exit_code=exit_code,
        restarts=int(fields.get("Restarts", "0") or 0),
    )


def cancel(job_id: int, *, signal: str | None = None) -> None:
    argv = ["scancel", *([f"--signal={signal}", "--full"] if signal else []), str(job_id)]
    done = _slurm(*argv)
    if done.returncode != 0:
        raise ToolError(f"scancel failed: {done.stderr.strip()}", "is the job still known?")


def follow(
    job_id: int,
    job_dir: Path,
    *,
    out: Callable[[str], None] = lambda text: print(text, end="", flush=True),
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Print the job's output as it grows until the job ends; return its exit code.

    A requeued job goes back to PENDING and runs again: following goes on through that.
    """
    log = job_dir / LOG_FILE
    offset = 0
    unanswered_since: float | None = None
    while True:
        state = job_state(job_id)
        if state is UNANSWERED:
            unanswered_since = unanswered_since or time.monotonic()
            if time.monotonic() - unanswered_since > GIVE_UP_S:
                raise ToolError(
                    f"slurmctld did not answer about job {job_id} for {GIVE_UP_S:g} s",
                    f"the job may still run: torchrig logs again, or scontrol show job {job_id}",
                )
        else:
            unanswered_since = None
        if log.exists():
            with log.open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
            offset += len(chunk)
            if chunk:
                out(chunk.decode("utf-8", errors="replace"))
        if state is None or (state is not UNANSWERED and state.state in DONE_STATES):
            return _exit_code(state, job_dir)
        sleep(POLL_S)


def _exit_code(state: SlurmState | None, job_dir: Path) -> int:
    exit_file = job_dir / EXIT_FILE
    if exit_file.exists():
        text = exit_file.read_text().strip()
        if text.isdigit():
            return int(text)
    if state is not None and state.exit_code is not None and state.state != "CANCELLED":
        return state.exit_code
    print(f"torchrig: the job ended {state.state if state else 'unknown'}", file=sys.stderr)
    return 1
