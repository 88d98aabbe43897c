"""Start, stop and list jobs: where a job runs, and the engine calls that reach it.

A job runs in the running workbench (a detached exec of the runner as the workbench user)
or, with --fresh, in a container of its own made from the same run plan as the workbench
(GPUs, shm, ulimits, mounts, user, no-new-privileges) without ports or services, removed
when the job ends. Either way the runner writes the job's records into the workspace,
which the host reads directly.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from torchrig.engine.base import Engine, Progress, RunSpec
from torchrig.errors import ToolError, UsageError
from torchrig.jobs.state import (
    Job,
    check_name,
    in_container,
    job_state,
    jobs_root,
    list_jobs,
    new_job_id,
)
from torchrig.launch.local import local_facts
from torchrig.launch.running import container_user
from torchrig.launch.session import Addressed, Session
from torchrig.launch.up import ensure_network, run_with_fallback, stage_env_file
from torchrig.plan.names import container_name
from torchrig.plan.run import gpu_selector, identity

RUNNER = ("python", "-m", "torchrig.jobs.runner")
START_TIMEOUT_S = 60.0  # a --fresh container runs the entrypoint's first-start setup first
KILL_GRACE_S = 15.0  # after SIGKILL, for the runner to write the exit record
SLOW_STOP_SHARE = 0.5  # warn when a stop used more than this share of its timeout
Clock = Callable[[], float]
Sleep = Callable[[float], None]


@dataclass(frozen=True)
class JobRequest:
    command: tuple[str, ...]
    name: str
    """The job's name: its id without the timestamp (recipe or program), or --name's id."""
    explicit_id: bool = False
    """--name: the name is the whole id, and must be free."""
    gpus: int | None = None
    fresh: bool = False
    recipe: str | None = None
    resume: bool = False


@dataclass(frozen=True)
class Started:
    job: Job
    container: str
    fresh: bool


@dataclass(frozen=True)
class Stopped:
    job: Job
    state: str
    seconds: float
    timeout_s: float
    forced: bool
    """SIGKILL was needed: the job did not end within the timeout."""
    notes: list[str] = field(default_factory=list)


# --- where jobs live -------------------------------------------------------------------------


def workspace_of(session: Addressed, engine: Engine) -> Path:
    """The folder mounted at /workspace: the workbench's (up --workspace), else the project."""
    info = engine.inspect(container_name(session.spec))
    for mount in (info or {}).get("Mounts") or []:
        if mount.get("Destination") == "/workspace" and mount.get("Source"):
            return Path(str(mount["Source"]))
    label = ((info or {}).get("Config") or {}).get("Labels") or {}
    if label.get("io.torchrig.workspace"):
        return Path(str(label["io.torchrig.workspace"]))
    return session.project_dir


def is_running(info: dict[str, Any] | None) -> bool:
    return bool(info and (info.get("State") or {}).get("Running"))


def gpus_available(session: Session) -> int:
    """How many GPUs a job can ask for: what the spec gives the workbench on this host."""
    selector = gpu_selector(session.spec, session.resolution, session.host)
    if selector is None:
        return 0
    if selector == "all":
        return len(session.host.gpus)
    if isinstance(selector, int):
        return min(selector, len(session.host.gpus))
    return len(selector)


def check_gpu_request(session: Session, gpus: int | None) -> None:
    if gpus is None:
        return
    if gpus < 0:
        raise UsageError(f"--gpus {gpus} is negative", "give a count: --gpus 2")
    have = gpus_available(session)
    if gpus > have:
        given = session.spec.resources.gpus
        raise UsageError(
            f"--gpus {gpus} asks for more GPUs than the workbench has ({have}; "
            f"resources.gpus = {json.dumps(given)}, {len(session.host.gpus)} on this host)",
            f"ask for at most {have}" if have else "run it without --gpus (CPU)",
        )


# --- starting --------------------------------------------------------------------------------


def runner_argv(job_id: str, request: JobRequest, container: str) -> list[str]:
    meta = {
        "id": job_id,
        "container": container,
        "fresh": request.fresh,
        "recipe": request.recipe,
        "resume": request.resume,
    }
    argv = [*RUNNER, "--job-dir", in_container(job_id)]
    if request.gpus is not None:
        argv += ["--gpus", str(request.gpus)]
    return [*argv, "--meta", json.dumps(meta, separators=(",", ":")), "--", *request.command]


def job_env(request: JobRequest) -> dict[str, str]:
    # --resume reaches a recipe as its option; any other script can read this.
    return {"TORCHRIG_RESUME": "1"} if request.resume else {}


def choose_id(root: Path, request: JobRequest, now: datetime.datetime) -> str:
    if request.explicit_id:
        job_id = check_name(request.name)
        if (root / job_id).exists():
            raise UsageError(
                f"a job named {job_id!r} exists already",
                "pick another --name, or leave --name out for a timestamped id",
            )
        return job_id
    return new_job_id(request.name, now, lambda i: (root / i).exists())


def fresh_container_name(session: Session, job_id: str) -> str:
    return f"{container_name(session.spec)}-job-{job_id}"[:128]


def start_job(
    session: Session,
    engine: Engine,
    request: JobRequest,
    *,
    image: Callable[[], str],
    now: datetime.datetime | None = None,
    progress: Progress | None = None,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
    start_timeout_s: float = START_TIMEOUT_S,
) -> Started:
    """Start the runner detached and wait until it has written job.json.

    image: gives the workbench image for --fresh (building it if needed); unused otherwise.
    """
    if not request.command:
        raise UsageError("no command to run", "write it after --: torchrig run -- python train.py")
    check_gpu_request(session, request.gpus)
    name = container_name(session.spec)
    info = engine.inspect(name)
    if not request.fresh and not is_running(info):
        raise UsageError(
            f"the workbench {name} is not running",
            "start it with `torchrig up`, or pass --fresh to run the job in a container of its own",
        )
    workspace = workspace_of(session, engine)
    root = jobs_root(workspace)
    job_id = choose_id(root, request, now or datetime.datetime.now())
    who = identity(session.spec, session.host)
    if request.fresh:
        container = fresh_container_name(session, job_id)
        argv = runner_argv(job_id, request, container)
        plan = fresh_run(session, image(), workspace, container, argv, request, job_id)
        say = progress or (lambda _line: None)
        say(f"starting {container}")
        # On the workbench's own network (made here when the workbench is not up).
        ensure_network(engine, plan)
        # Like `up`: where this host forbids raising rlimits, run without them (and say so).
        run_with_fallback(engine, plan, say)
    else:
        container = name
        argv = runner_argv(job_id, request, container)
        done = engine.exec(
            container,
            argv,
            user=f"{who.uid}:{who.gid}",
            env=job_env(request),
            workdir="/workspace",
            detach=True,
        )
        if done.returncode != 0:
            raise ToolError(
                f"{engine.name} could not start the job in {container}: "
                f"{(done.stderr or done.stdout or '').strip()[-300:]}",
                f"reproduce with: {engine.commands[-1] if engine.commands else ''}",
            )
    job = wait_started(engine, root / job_id, container, clock, sleep, start_timeout_s)
    return Started(job=job, container=container, fresh=request.fresh)


def fresh_run(
    session: Session,
    image: str,
    workspace: Path,
    container: str,
    argv: list[str],
    request: JobRequest,
    job_id: str,
) -> RunSpec:
    """The workbench's run spec from its plan, for one job: no ports, no services, no keys,
    removed at the end. `image`: the plan's tag, as the build just made it."""
    local = local_facts(
        session,
        workspace=workspace,
        ports={},
        # As `up` does: read with the project owner's rights, a private copy for the engine.
        env_file=stage_env_file(session, None),
        with_keys=False,
        image_files=False,
        mounts_here=True,
    )
    plan = session.plan(local).run
    return replace(
        plan,
        image=image,
        name=container,
        hostname=f"{session.spec.project.name}-job"[:63],
        command=("--", *argv),  # the entrypoint sets the user up, then runs this
        remove=True,
        ports=(),
        env={**plan.env, "TORCHRIG_SERVICES": "", **job_env(request)},
        labels={**plan.labels, "io.torchrig.job": job_id},
        no_healthcheck=True,
    )


def wait_started(
    engine: Engine, job_dir: Path, container: str, clock: Clock, sleep: Sleep, timeout_s: float
) -> Job:
    from torchrig.jobs.state import read_job

    deadline = clock() + timeout_s
    checked = clock()
    while True:
        job = read_job(job_dir)
        if job.record is not None or job.exit is not None:
            return job
        if clock() >= deadline:
            break
        if clock() - checked > 2.0:  # a container that died will never write job.json
            checked = clock()
            if not is_running(engine.inspect(container)):
                raise ToolError(
                    f"{container} ended before the job started",
                    f"see what it printed: {engine.name} logs {container} (--fresh containers "
                    "are removed: run it without --fresh to see the runner's error)",
                )
        sleep(0.1)
    raise ToolError(
        f"the job runner in {container} did not write {job_dir}/job.json within {timeout_s:.0f} s",
        "check that the workspace is writable by the workbench user; "
        "`torchrig exec -- python -m torchrig.jobs.runner --job-dir /tmp/check -- true` "
        "shows the runner's own error",
    )


# --- stopping and listing --------------------------------------------------------------------


def runner_signal(engine: Engine, job: Job, name: str) -> int:
    """Signal the job from inside its container (the runner knows its process groups), as
    the user the container runs with."""
    info = engine.inspect(job.container) or {}
    argv = [*RUNNER, "--job-dir", in_container(job.id), "--signal", name]
    done = engine.exec(job.container, argv, user=container_user(info), timeout_s=60)
    return int(done.returncode)


def stop_job(
    session: Addressed,
    engine: Engine,
    job: Job,
    timeout_s: float,
    *,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
) -> Stopped:
    """SIGTERM, wait up to timeout_s for the exit record, then SIGKILL; say how it ended."""
    if job.ended:
        raise UsageError(
            f"job {job.id} has already ended ({job_state(job, container_up=None)})",
            f"its output: torchrig logs {job.id}",
        )
    if not is_running(engine.inspect(job.container)):
        raise UsageError(
            f"job {job.id} was lost: its container {job.container or '?'} is gone",
            f"its output so far: torchrig logs {job.id}",
        )
    start = clock()
    notes: list[str] = []
    if runner_signal(engine, job, "TERM") != 0:
        notes.append("its processes were gone already")
    ended = wait_for_exit(job, clock, sleep, start + timeout_s)
    forced = ended is None
    if ended is None:
        notes.append(f"it did not end within {timeout_s:g} s: sent SIGKILL")
        runner_signal(engine, job, "KILL")
        ended = wait_for_exit(job, clock, sleep, clock() + KILL_GRACE_S)
    seconds = round(clock() - start, 2)
    if ended is None:
        return Stopped(job.reload(), "lost", seconds, timeout_s, forced, notes)
    if not forced and seconds > SLOW_STOP_SHARE * timeout_s:
        notes.append(
            f"its final save took {seconds:g} s of the {timeout_s:g} s stop timeout: raise "
            "resources.stop_timeout before the checkpoint outgrows it"
        )
    return Stopped(ended, job_state(ended, container_up=None), seconds, timeout_s, forced, notes)


def wait_for_exit(job: Job, clock: Clock, sleep: Sleep, deadline: float) -> Job | None:
    while True:
        current = job.reload()
        if current.ended:
            return current
        if clock() >= deadline:
            return None
        sleep(0.1)


def job_states(session: Addressed, engine: Engine, jobs: list[Job]) -> dict[str, str]:
    """Each job's state; one inspect per container and one probe per running container."""
    up: dict[str, bool] = {}
    alive: dict[str, bool] = {}
    open_jobs = [j for j in jobs if not j.ended and j.record is not None]
    for container in sorted({j.container for j in open_jobs}):
        info = engine.inspect(container)
        up[container] = is_running(info)
        if not info or not up[container]:
            continue
        dirs = [in_container(j.id) for j in open_jobs if j.container == container]
        done = engine.exec(
            container, [*RUNNER, "--probe", *dirs], user=container_user(info), timeout_s=60
        )
        try:
            found = json.loads(done.stdout or "{}") if done.returncode == 0 else {}
        except ValueError:
            found = {}
        for job_id, probe in found.items():
            alive[job_id] = bool(probe.get("runner") or probe.get("job"))
    return {
        j.id: job_state(j, container_up=up.get(j.container), alive=alive.get(j.id)) for j in jobs
    }


def all_jobs(session: Addressed, engine: Engine) -> list[Job]:
    return list_jobs(jobs_root(workspace_of(session, engine)))
