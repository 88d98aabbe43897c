"""The sbatch script: the pinned image on N nodes, torchrun with c10d rendezvous on the first.

One Slurm task per node; on each, the runtime starts the image and torchrun starts one
process per GPU (one CPU process with gloo when gpus_per_node is 0). The rendezvous
endpoint is the first host of `scontrol show hostnames $SLURM_JOB_NODELIST` (by its
NodeAddr), and that node hosts torchrun's store (is_host=1): a node's own hostname may not
resolve to the address the others reach it on. Checkpoints and the job's output live in the
shared folder. `--requeue` lets Slurm requeue a preempted job; a recipe run that fails
(a node died) requeues itself up to max_requeues times, and the recipe's --resume continues
from the last complete checkpoint.

Runtimes: pyxis (`srun --container-image`, enroot's REGISTRY#NAME@DIGEST form), apptainer
(`apptainer exec` of the .sif `torchrig export apptainer` makes), podman and docker.
"""

from __future__ import annotations

import shlex

from torchrig.cluster.target import ClusterJob, torchrun_command

EXIT_FILE = "exit"
LOG_FILE = "output.log"


def _q(text: str) -> str:
    return shlex.quote(text)


def enroot_ref(image: str) -> str:
    """docker-style REGISTRY/NAME@DIGEST → enroot's REGISTRY#NAME@DIGEST (pyxis)."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return f"{first}#{rest}"
    return image


def sif_path(job: ClusterJob) -> str:
    if job.cluster.slurm.sif:
        return job.cluster.slurm.sif
    name = job.image.split("@", 1)[0].rsplit("/", 1)[-1]
    digest = job.image.rsplit(":", 1)[-1][:12]
    return f"{job.cluster.shared_dir}/images/{name}-{digest}.sif"


def _header(job: ClusterJob) -> list[str]:
    slurm = job.cluster.slurm
    lines = [
        "#!/bin/bash",
        f"# Written by torchrig for {job.project}: {job.image}",
        f"# on {job.nodes} node(s) x {job.gpus_per_node or 'no'} GPU(s), runtime {job.runtime}.",
        "# Submit with `sbatch THIS_FILE` (torchrig run --on slurm submits and follows it).",
        f"#SBATCH --job-name={job.name}",
        f"#SBATCH --nodes={job.nodes}",
        "#SBATCH --ntasks-per-node=1",
    ]
    if job.gpus_per_node:
        lines.append(f"#SBATCH --gpus-per-node={job.gpus_per_node}")
    if job.cluster.time_limit:
        lines.append(f"#SBATCH --time={job.cluster.time_limit}")
    for option in ("partition", "account", "qos"):
        if value := getattr(slurm, option):
            lines.append(f"#SBATCH --{option}={value}")
    lines += [
        "#SBATCH --requeue",
        "#SBATCH --open-mode=append",
        f"#SBATCH --output={job.job_dir}/{LOG_FILE}",
    ]
    lines += [f"#SBATCH {option}" for option in slurm.extra]
    return lines


def _environment(job: ClusterJob) -> dict[str, str]:
    env: dict[str, str] = {}
    if job.cluster.socket_ifname:
        env["NCCL_SOCKET_IFNAME"] = job.cluster.socket_ifname
        env["GLOO_SOCKET_IFNAME"] = job.cluster.socket_ifname
    env.update(job.cluster.env)
    env.update(job.env)
    return dict(sorted(env.items()))


def _launch(job: ClusterJob) -> str:
    """What runs in the image on each node: shell words, "$…" expanded by the node's shell
    (the Slurm variables and is_host are not in the container's environment)."""
    inner = torchrun_command(job.command) if job.torchrun else None
    if inner is None:
        return shlex.join(job.command)
    per_node = job.gpus_per_node or 1
    words = [
        "torchrun",
        '--nnodes="$SLURM_JOB_NUM_NODES"',
        f"--nproc-per-node={per_node}",
        "--rdzv-backend=c10d",
        '--rdzv-endpoint="$TORCHRIG_RDZV_ENDPOINT"',
        '--rdzv-id="$SLURM_JOB_ID"',
        '--rdzv-conf=is_host="$is_host"',
        '--local-addr="$local_addr"',
        "--max-restarts=0",
    ]
    return " ".join(words) + " " + shlex.join(inner)


def _node_function(job: ClusterJob) -> list[str]:
    env = _environment(job)
    launch = _launch(job)
    lines = []
    if job.runtime in ("podman", "docker"):
        lines += [
            "# Unique per cluster, job, attempt and node: job ids start again on another",
            "# cluster, and a requeued attempt may start before the last one's container is gone.",
            "container_name() {",
            '    echo "torchrig-${SLURM_CLUSTER_NAME:-slurm}-$SLURM_JOB_ID-'
            '${SLURM_RESTART_COUNT:-0}-$SLURM_NODEID"',
            "}",
            "export -f container_name",
            "",
        ]
    lines += [
        "# One task per node: start the image and, in it, torchrun.",
        "torchrig_node() {",
        "    local is_host=0 local_addr=$SLURMD_NODENAME pair",
        '    if [ "$SLURM_NODEID" = 0 ]; then is_host=1; fi',
        "    # This node's address as Slurm knows it: torchrun hands it to the workers as the",
        "    # store's address (its default, the host name, may resolve where others can't reach).",
        "    for pair in $TORCHRIG_NODE_ADDRS; do",
        '        if [ "${pair%%=*}" = "$SLURMD_NODENAME" ]; then local_addr=${pair#*=}; fi',
        "    done",
    ]
    if job.runtime in ("podman", "docker"):
        engine = job.runtime
        # --init: the command is not PID 1, so Slurm's SIGTERM (a cancel, a time limit)
        # reaches it through the engine's signal proxy instead of being ignored.
        args = [
            f"    {engine} run --rm --init --network=host --ipc=host",
            '--name "$(container_name)"',
            '--user "$(id -u):$(id -g)" --entrypoint=',
            '--volume "$TORCHRIG_SHARED:$TORCHRIG_SHARED" --workdir "$TORCHRIG_JOB_DIR"',
            '--env HOME="$TORCHRIG_JOB_DIR" --env SLURM_JOB_ID --env SLURM_NODEID',
            "--env SLURM_JOB_NUM_NODES --env SLURMD_NODENAME",
            "--env TORCHRIG_RDZV_ENDPOINT --env TORCHRIG_NODE_ADDRS",
        ]
        args += [f"--env {_q(f'{k}={v}')}" for k, v in env.items()]
        if job.gpus_per_node:
            args.append("--device nvidia.com/gpu=all" if engine == "podman" else "--gpus all")
        args.append('"$TORCHRIG_IMAGE"')
        args.append(launch + " &")
        lines.append(" \\\n        ".join(args))
        lines += [
            "    local client=$! status",
            "    # srun ends a cancelled step with SIGKILL at once, so the trap below may never",
            "    # run and the engine would keep the container. A watcher outside the step",
            "    # (reparented away from it) stops the container once this shell is gone.",
            '    ( setsid bash -c \'while kill -0 "$1" 2>/dev/null; do sleep 1; done; '
            f'{engine} stop --time 20 "$2" >/dev/null 2>&1\' watcher "$$" "$(container_name)" '
            "</dev/null >/dev/null 2>&1 & )",
            "    # Slurm signals the step's processes, then kills them after KillWait; a killed",
            "    # client would leave its container running. So the container itself is stopped.",
            f"    trap '{engine} stop --time 20 \"$(container_name)\" >/dev/null 2>&1' TERM INT",
            '    wait "$client"; status=$?',
            '    while kill -0 "$client" 2>/dev/null; do wait "$client"; status=$?; done',
            '    return "$status"',
        ]
    elif job.runtime == "apptainer":
        lines += [f"    export APPTAINERENV_{k}={_q(v)}" for k, v in env.items()]
        nv = " --nv" if job.gpus_per_node else ""
        lines.append(
            f"    exec apptainer exec{nv} --cleanenv --env TORCHRIG_RDZV_ENDPOINT"
            '="$TORCHRIG_RDZV_ENDPOINT",SLURM_JOB_ID="$SLURM_JOB_ID",SLURM_NODEID'
            '="$SLURM_NODEID",SLURM_JOB_NUM_NODES="$SLURM_JOB_NUM_NODES",SLURMD_NODENAME'
            '="$SLURMD_NODENAME",TORCHRIG_NODE_ADDRS="$TORCHRIG_NODE_ADDRS" '
            '--bind "$TORCHRIG_SHARED" --pwd "$TORCHRIG_JOB_DIR" '
            f'"$TORCHRIG_SIF" {launch}'
        )
    else:  # pyxis: srun itself started the container; this runs inside it
        lines += [f"    export {k}={_q(v)}" for k, v in env.items()]
        lines += ['    cd "$TORCHRIG_JOB_DIR"', f"    exec {launch}"]
    lines.append("}")
    return lines


def render_sbatch(job: ClusterJob) -> str:
    lines = _header(job)
    lines += [
        "set -uo pipefail",
        "",
        f"export TORCHRIG_IMAGE={_q(job.image)}",
        f"export TORCHRIG_SHARED={_q(job.cluster.shared_dir)}",
        f"export TORCHRIG_JOB_DIR={_q(job.job_dir)}",
    ]
    if job.runtime == "apptainer":
        lines.append(f"export TORCHRIG_SIF={_q(sif_path(job))}")
    lines += [
        'mkdir -p "$TORCHRIG_JOB_DIR"',
        "",
        "# Rendezvous on the first node of the allocation, at the address Slurm reaches it on.",
        'TORCHRIG_NODE_ADDRS=$(scontrol show node "$SLURM_JOB_NODELIST" -o '
        "| sed -n 's/^NodeName=\\([^ ]*\\) .*NodeAddr=\\([^ ]*\\).*/\\1=\\2/p')",
        "export TORCHRIG_NODE_ADDRS",
        'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        "head_addr=$(printf '%s\\n' $TORCHRIG_NODE_ADDRS | sed -n \"s/^$head_node=//p\")",
        f'export TORCHRIG_RDZV_ENDPOINT="${{head_addr:-$head_node}}:{job.cluster.rdzv_port}"',
        'echo "torchrig: job $SLURM_JOB_ID attempt $((${SLURM_RESTART_COUNT:-0} + 1)) on '
        '$SLURM_JOB_NODELIST, rendezvous $TORCHRIG_RDZV_ENDPOINT"',
        "",
    ]
    lines += _node_function(job)
    lines += ["export -f torchrig_node", ""]
    # A torchrun process whose peer died waits on it: end every node when one fails. A plain
    # command runs on each node alone, and srun's exit code is the highest of its tasks', so
    # killing the others would replace the command's own code with theirs (137).
    uses_torchrun = job.torchrun and torchrun_command(job.command) is not None
    srun = "srun --ntasks-per-node=1" + (" --kill-on-bad-exit=1" if uses_torchrun else "")
    if job.runtime in ("podman", "docker"):
        lines += [
            "# Every node pulls the image by digest (a no-op where it is already there).",
            f'srun --ntasks-per-node=1 {job.runtime} pull --quiet "$TORCHRIG_IMAGE" >/dev/null '
            '|| { echo "torchrig: a node could not pull $TORCHRIG_IMAGE"; exit 1; }',
        ]
    elif job.runtime == "pyxis":
        srun += (
            f" --container-image={_q(enroot_ref(job.image))}"
            ' --container-mounts="$TORCHRIG_SHARED:$TORCHRIG_SHARED"'
            " --no-container-entrypoint"
        )
    lines += [
        "# A cancel or time limit signals this script too: pass it on to the nodes and wait",
        "# for them to stop. Ending here at once would end the job, and Slurm would then",
        "# SIGKILL the nodes' tasks at once (their containers would outlive them).",
        "signalled=0",
        f"{srun} bash -c torchrig_node &",
        "srun_pid=$!",
        "trap 'signalled=1; kill -TERM \"$srun_pid\" 2>/dev/null' TERM INT",
        'wait "$srun_pid"; status=$?',
        'while kill -0 "$srun_pid" 2>/dev/null; do wait "$srun_pid"; status=$?; done',
        "",
    ]
    if job.resume_flag:
        lines += [
            "# A failed run (a node died, a process was killed) requeues itself and resumes",
            "# from its last complete checkpoint (the recipe runs with --resume). Slurm holds",
            "# the requeued job back (AuthInfo cred_expire + 1 s): an attempt launched within",
            "# the second slurmd revoked this one's credential would be refused, so never",
            "# release it early with `scontrol update StartTime=now`.",
            "# A signalled run (stopped, cancelled, out of time) is not requeued here; a",
            "# preempted one is requeued by Slurm itself (#SBATCH --requeue).",
            'if [ "$status" -ne 0 ] && [ "$signalled" = 0 ] '
            f'&& [ "${{SLURM_RESTART_COUNT:-0}}" -lt '
            f"{job.cluster.slurm.max_requeues} ]; then",
            '    echo "torchrig: the run failed (exit $status); requeueing to resume (Slurm starts'
            ' the next attempt after its requeue hold: cred_expire + 1 s, 121 s by default)"',
            '    scontrol requeue "$SLURM_JOB_ID" && exit 0',
            "fi",
        ]
    lines += [f'echo "$status" > "$TORCHRIG_JOB_DIR/{EXIT_FILE}"', 'exit "$status"']
    return "\n".join(lines) + "\n"
