"""A real two-node Slurm cluster on this machine, for the cluster test and benchmark.

    with SlurmLab.start(root) as lab:
        subprocess.run(["sbatch", ...], env=lab.env)

Debian's slurmctld on a bridge address of the host, two slurmd (`slurmd -N node1`,
`-N node2`), each in a network namespace of its own joined to the bridge by a veth pair
(so each node has its own address and `eth0`, and the same slurmd port), munged with a key
of the lab's own, and Debian's docker-registry on the bridge address. Everything lives in
one folder and one name prefix (t-slurm-<id>); `close()` stops every daemon it started and
removes the namespaces, bridge and veths, also after a failed start.

Needs root, iproute2 and the packages .ci/install-engines.sh installs (slurmctld, slurmd,
slurm-client, munge, docker-registry).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

NODES = ("node1", "node2")
NODE_CPUS = 2
REGISTRY_PORT = 5000
SLURMCTLD_PORT = 6817
SLURMD_PORT = 6818
# Slurm holds a requeued job back for cred_expire + 1 s (default 120 + 1): its next launch
# credential must be newer than the one slurmd revoked when the last attempt was killed,
# else slurmd refuses it ("Job credential revoked") and the job ends FAILED, exit 1, before
# its script runs (man slurm.conf, AuthInfo cred_expire: "This also controls how long a
# requeued job must wait before starting again"). A shorter window, not moving the job's
# start by hand, keeps the requeue test short; 15 s still leaves a busy 2-CPU machine time
# to launch a step on a fresh credential (the minimum Slurm takes is 5).
CRED_EXPIRE_S = 15


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return done


def _wait(check: object, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} did not happen within {timeout:g} s\n{tail}")
        time.sleep(0.2)


@dataclass
class SlurmLab:
    root: Path
    tag: str
    """Unique short id: names of namespaces, links and the cluster."""
    subnet: str
    """The first three octets of the lab's /24, e.g. 10.231.17."""
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)

    @property
    def controller_addr(self) -> str:
        return f"{self.subnet}.1"

    def node_addr(self, node: str) -> str:
        return f"{self.subnet}.{11 + NODES.index(node)}"

    def netns(self, node: str) -> str:
        return f"t-slurm-{self.tag}-{node}"

    @property
    def registry(self) -> str:
        return f"{self.controller_addr}:{REGISTRY_PORT}"

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def shared(self) -> Path:
        """The folder every node sees at the same path: checkpoints and job output."""
        return self.root / "shared"

    @property
    def env(self) -> dict[str, str]:
        """The environment the Slurm clients (sbatch, squeue, scancel) need for this lab."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    # --- start ------------------------------------------------------------------------------

    @classmethod
    def start(cls, root: Path) -> SlurmLab:
        for tool in ("slurmctld", "slurmd", "sbatch", "munged", "docker-registry", "ip"):
            if shutil.which(tool) is None:
                raise RuntimeError(f"{tool} is not installed (.ci/install-engines.sh installs it)")
        tag = f"{os.getpid() % 100000}"
        lab = cls(root=root, tag=tag, subnet=f"10.231.{os.getpid() % 250}")
        root.mkdir(parents=True, exist_ok=True)
        try:
            lab._network()
            lab._munge()
            lab._registry()
            lab._slurm()
        except BaseException:
            lab.close()
            raise
        return lab

    def _network(self) -> None:
        """A switch namespace holding the bridge, with a veth to the host (the controller's
        and registry's address) and one to each node. The bridge lives outside the host's
        namespace so the host's firewall (Docker's FORWARD DROP, applied to bridged
        traffic by br_netfilter) never sees node-to-node traffic."""
        switch = f"t-slurm-{self.tag}-sw"
        _run("ip", "netns", "add", switch)
        self.namespaces.append(switch)
        in_switch = ("ip", "-n", switch)
        _run(*in_switch, "link", "add", "br0", "type", "bridge")
        _run(*in_switch, "link", "set", "br0", "up")
        ends: list[tuple[str, str, str | None]] = [("host", f"tsl{self.tag}h", None)]
        ends += [(node, f"tsl{self.tag}n{i}", self.netns(node)) for i, node in enumerate(NODES)]
        for index, (who, name, ns) in enumerate(ends):
            port = f"p{index}"
            _run("ip", "link", "add", name, "type", "veth", "peer", "name", port)
            _run("ip", "link", "set", port, "netns", switch)
            _run(*in_switch, "link", "set", port, "master", "br0", "up")
            if ns is None:
                self.links.append(name)
                _run("ip", "addr", "add", f"{self.controller_addr}/24", "dev", name)
                _run("ip", "link", "set", name, "up")
                continue
            _run("ip", "netns", "add", ns)
            self.namespaces.append(ns)
            _run("ip", "link", "set", name, "netns", ns)
            inside = ("ip", "-n", ns)
            _run(*inside, "link", "set", name, "name", "eth0")
            _run(*inside, "addr", "add", f"{self.node_addr(who)}/24", "dev", "eth0")
            _run(*inside, "link", "set", "eth0", "up")
            _run(*inside, "link", "set", "lo", "up")

    def _spawn(self, argv: list[str], log: str) -> subprocess.Popen[bytes]:
        with (self.root / log).open("ab") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.procs.append(proc)
        return proc

    def _munge(self) -> None:
        key = self.root / "munge.key"
        key.write_bytes(os.urandom(128))
        key.chmod(0o600)
        # munged checks that the folders of its socket and key are not writable by others.
        sock_dir = self.root / "munge"
        sock_dir.mkdir(mode=0o755, exist_ok=True)
        self.root.chmod(0o755)
        self._spawn(
            [
                "munged",
                "--foreground",
                "--force",
                f"--key-file={key}",
                f"--socket={self.munge_socket}",
                f"--pid-file={sock_dir / 'munged.pid'}",
                f"--seed-file={sock_dir / 'seed'}",
                f"--log-file={self.root / 'munged.log'}",
            ],
            "munged.out",
        )
        _wait(self.munge_socket.exists, 20, "munged's socket", self.root / "munged.log")

    @property
    def munge_socket(self) -> Path:
        return self.root / "munge" / "munge.socket"

    def _registry(self) -> None:
        data = self.root / "registry"
        data.mkdir(exist_ok=True)
        config = self.root / "registry.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {data}\n"
            f"http:\n  addr: {self.registry}\n"
        )
        self._spawn(["docker-registry", "serve", str(config)], "registry.log")

        def answers() -> bool:
            try:
                with urllib.request.urlopen(f"http://{self.registry}/v2/", timeout=2) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        _wait(answers, 30, "the registry answering", self.root / "registry.log")

    def _slurm(self) -> None:
        spool = self.root / "spool"
        state = self.root / "state"
        for folder in (spool, state, self.shared):
            folder.mkdir(exist_ok=True)
        self.shared.chmod(0o777)
        nodes = "\n".join(
            f"NodeName={n} NodeAddr={self.node_addr(n)} CPUs={NODE_CPUS} State=UNKNOWN"
            for n in NODES
        )
        self.conf.write_text(
            f"""# The two-node lab of tests/container/slurmlab.py
ClusterName=tslurm{self.tag}
SlurmctldHost={socket.gethostname().split(".")[0]}({self.controller_addr})
MailProg=/bin/true
SlurmctldPort={SLURMCTLD_PORT}
SlurmdPort={SLURMD_PORT}
AuthType=auth/munge
AuthInfo=socket={self.munge_socket},cred_expire={CRED_EXPIRE_S}
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={state}
SlurmdSpoolDir={spool}/%n
SlurmctldPidFile={self.root}/slurmctld.pid
SlurmdPidFile={self.root}/slurmd-%n.pid
SlurmctldLogFile={self.root}/slurmctld.log
SlurmdLogFile={self.root}/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/linear
MpiDefault=none
SlurmdParameters=config_overrides
ReturnToService=2
SlurmdTimeout=30
SlurmdDebug=verbose
SlurmctldDebug=verbose
KillWait=10
MinJobAge=600
JobRequeue=1
{nodes}
PartitionName=debug Nodes={",".join(NODES)} Default=YES MaxTime=INFINITE State=UP
"""
        )
        self._spawn(["slurmctld", "-D", "-i", "-f", str(self.conf)], "slurmctld.out")
        _wait(self._controller_answers, 30, "slurmctld answering", self.root / "slurmctld.log")
        for node in NODES:
            self.start_node(node)
        _wait(self._nodes_idle, 60, "both nodes idle", self.root / "slurmctld.log")

    def start_node(self, node: str) -> None:
        (self.root / "spool" / node).mkdir(exist_ok=True)
        self._spawn(
            [*self.enter(node), "slurmd", "-D", "-N", node, "-f", str(self.conf)],
            f"slurmd-{node}.out",
        )  # fmt: skip

    def enter(self, node: str) -> list[str]:
        """The prefix that runs a command in a node's network namespace. Not `ip netns exec`:
        it remounts /sys, hiding the cgroup tree that slurmd and Podman need."""
        return ["nsenter", f"--net=/run/netns/{self.netns(node)}", "--"]

    def _controller_answers(self) -> bool:
        with socket.socket() as s:
            s.settimeout(1)
            return s.connect_ex((self.controller_addr, SLURMCTLD_PORT)) == 0

    def _nodes_idle(self) -> bool:
        done = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%N %t"], env=self.env, capture_output=True, text=True
        )
        states = dict(line.split() for line in done.stdout.splitlines() if line.strip())
        return all(states.get(n) == "idle" for n in NODES)

    # --- what happened -------------------------------------------------------------------

    def daemon_logs(self, lines: int = 60) -> str:
        """The last lines of every daemon's log: slurmctld, each slurmd, munged (a failing
        test shows them, since the lab's folder is gone once the test ends)."""
        parts = []
        for name in ("slurmctld.log", *(f"slurmd-{n}.log" for n in NODES), "munged.log"):
            path = self.root / name
            text = path.read_text(errors="replace") if path.exists() else "(no such file)\n"
            parts.append(
                f"--- {name} (last {lines} lines)\n"
                + "".join(text.splitlines(keepends=True)[-lines:])
            )
        return "\n".join(parts)

    # --- stop -------------------------------------------------------------------------------

    def close(self) -> None:
        # Job containers the nodes started (named torchrig-CLUSTER-…): their conmon dies
        # with the namespaces below, which would leave the container records behind.
        listed = _run(
            "podman", "ps", "-a", "--format", "{{.Names}}",
            "--filter", f"name=^torchrig-tslurm{self.tag}-", check=False,
        )  # fmt: skip
        for name in listed.stdout.split():
            _run("podman", "rm", "--force", "--time", "0", name, check=False)
        for proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)
        self._kill_job_steps()
        for ns in self.namespaces:
            _run("ip", "netns", "del", ns, check=False)
        for link in self.links:
            _run("ip", "link", "del", link, check=False)

    def _kill_job_steps(self) -> None:
        """slurmstepd and the job's processes outlive slurmd by design: end every process
        left in the lab's namespaces (nothing else runs there)."""
        for ns in self.namespaces:
            pids = _run("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)

    def __enter__(self) -> SlurmLab:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
