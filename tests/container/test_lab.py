"""torchrig lab for real (Docker): a hub, two users, their servers, and every wall between them.

One lab for the module (one build, from the suite's cached layers plus jupyterhub): alice and
bob each start their own server with their own token. Then, black-box from outside:

- bob's token on alice's server and API routes (and alice's on bob's): 0 successes of every
  route tried, while each owner's token opens their own;
- bob cannot reach alice's files: her home is not in his container, and his container cannot
  even connect to hers (the lab network has no traffic between containers);
- processes run as each user's UID, none as root but PID 1 (tini); the limits are in
  `docker inspect`; SSH takes only the user's own key;
- a restart of the hub loses no file, and a server made again from the image finds them;
- remove-user keeps the home volume; --purge deletes it; `lab down` leaves homes in place.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.container.workbench import cpu_torch_spec, wait_until

pytestmark = pytest.mark.container

PROJECT = "t-lab-iso"
PREFIX = f"torchrig-{PROJECT}"
SECRET = "alice's notes: nobody else reads this\n"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Lab:
    project: Path
    state: Path
    url: str
    keys: dict[str, Path]
    ssh_ports: dict[str, int]
    tokens: dict[str, str]

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-P", "-m", "torchrig.cli.main", *args],
            cwd=self.project,
            capture_output=True,
            text=True,
            timeout=900,
            env={**os.environ, "XDG_STATE_HOME": str(self.state)},
        )
        if check and done.returncode != 0:
            pytest.fail(
                f"`torchrig {' '.join(args)}` exited {done.returncode}\n"
                f"stdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-4000:]}",
                pytrace=False,
            )
        return done

    @property
    def lab_dir(self) -> Path:
        return self.state / "torchrig" / PROJECT / "lab"

    def service(self) -> str:
        return (self.lab_dir / "service_token").read_text().strip()

    def call(
        self, path: str, token: str, method: str = "GET", body: object = None
    ) -> tuple[int, str]:
        from torchrig.lab.hub import request

        sent = body if isinstance(body, dict) or body is None else {"content": body}
        return request(f"{self.url}{path}", token=token, method=method, body=sent)

    def server_ready(self, user: str) -> bool:
        status, text = self.call(f"/hub/api/users/{user}", self.tokens[user])
        return status == 200 and bool(json.loads(text).get("servers", {}).get("", {}).get("ready"))

    def start(self, user: str) -> float:
        began = time.monotonic()
        status, text = self.call(f"/hub/api/users/{user}/server", self.tokens[user], "POST", {})
        assert status in (201, 202), (status, text)
        wait_until(lambda: self.server_ready(user), 120, f"{user}'s server to be ready", 0.3)
        return time.monotonic() - began

    def stop(self, user: str) -> None:
        self.call(f"/hub/api/users/{user}/server", self.tokens[user], "DELETE")
        wait_until(lambda: not self.server_ready(user) or None, 60, f"{user}'s server to stop")
        wait_until(lambda: not _container(user) or None, 60, f"{user}'s container to go")

    def ssh(self, user: str, key: str, *command: str) -> subprocess.CompletedProcess[str]:
        argv = [
            "ssh", "-p", str(self.ssh_ports[user]), "-i", str(self.keys[key]),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
            f"{user}@127.0.0.1", *command,
        ]  # fmt: skip
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def _container(user: str) -> dict[str, object] | None:
    done = subprocess.run(
        ["docker", "inspect", f"{PREFIX}-u-{user}"], capture_output=True, text=True
    )
    return json.loads(done.stdout)[0] if done.returncode == 0 else None


def _spec(hub: int, api: int, proxy: int, keys: dict[str, Path], ssh: dict[str, int]) -> str:
    users = "".join(
        f"""
[[lab.users]]
name = "{name}"
uid = {uid}
ssh_port = {ssh[name]}
ssh_keys = ["{keys[name].with_suffix(".pub").read_text().strip()}"]
memory = "2g"
cpus = 1.0
"""
        for name, uid in (("alice", 71101), ("bob", 71102), ("dana", 71103))
    )
    lab = (
        f"\n[lab]\nhub_port = {hub}\nhub_api_port = {api}\nproxy_api_port = {proxy}\n"
        f'admins = ["dana"]\nidle_timeout = 0\n{users}'
    )
    return cpu_torch_spec(PROJECT, packages=["jupyterhub==6.1.1"], extra=lab)


def _cleanup() -> None:
    listed = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=io.torchrig.lab={PROJECT}"],
        capture_output=True,
        text=True,
    ).stdout.split()
    if listed:
        subprocess.run(["docker", "rm", "-f", *listed], capture_output=True)
    for user in ("alice", "bob", "carol", "dana"):
        subprocess.run(
            ["docker", "volume", "rm", "-f", f"{PREFIX}-home-{user}"], capture_output=True
        )
    subprocess.run(["docker", "network", "rm", f"{PREFIX}-net-lab"], capture_output=True)


@pytest.fixture(scope="module")
def lab(
    tmp_path_factory: pytest.TempPathFactory, timings: list[tuple[str, str, float]]
) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("lab")
    project = root / "project"
    project.mkdir()
    keys = {}
    for name in ("alice", "bob", "dana"):
        keys[name] = root / name
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys[name])], check=True
        )
    hub, api, proxy = _free_port(), _free_port(), _free_port()
    ssh = {"alice": _free_port(), "bob": _free_port(), "dana": _free_port()}
    (project / "torchrig.toml").write_text(_spec(hub, api, proxy, keys, ssh))
    made = Lab(project, root / "state", f"http://127.0.0.1:{hub}", keys, ssh, {})
    _cleanup()
    try:
        began = time.monotonic()
        made.cli("lock")
        up = json.loads(made.cli("lab", "up", "--json").stdout)
        timings.append(("lab: lock, build and hub up", "docker", time.monotonic() - began))
        assert up["url"] == made.url and sorted(up["passwords"]) == ["alice", "bob", "dana"]
        from torchrig.lab.hub import HubApi

        api_client = HubApi(made.url, made.service())
        made.tokens = {u: api_client.new_token(u, "t-lab test") for u in ("alice", "bob", "dana")}
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            ready = dict(zip(("alice", "bob"), pool.map(made.start, ("alice", "bob")), strict=True))
        timings += [
            (f"lab: {u}'s server ready (both at once)", "docker", s) for u, s in ready.items()
        ]
        yield made
    finally:
        made.cli("lab", "down", check=False)
        _cleanup()


def _routes(owner: str) -> list[tuple[str, str, object]]:
    """Routes of `owner`'s server and of their hub API entry: (method, path, body)."""
    server = f"/user/{owner}"
    return [
        ("GET", f"{server}/api/contents", None),
        ("GET", f"{server}/api/contents/secret.txt", None),
        ("GET", f"{server}/files/secret.txt", None),
        ("GET", f"{server}/api/kernels", None),
        ("GET", f"{server}/api/sessions", None),
        ("GET", f"{server}/api/terminals", None),
        ("GET", f"{server}/api/kernelspecs", None),
        ("GET", f"{server}/api/config/notebook", None),
        ("GET", f"{server}/api/status", None),
        ("GET", f"{server}/api/me", None),
        ("GET", f"{server}/lab", None),
        ("GET", f"{server}/lab/tree/secret.txt", None),
        ("POST", f"{server}/api/kernels", {}),
        (
            "PUT",
            f"{server}/api/contents/pwned.txt",
            {"type": "file", "format": "text", "content": "x"},
        ),
        ("POST", f"{server}/api/terminals", {}),
        ("GET", f"/hub/api/users/{owner}", None),
        ("GET", f"/hub/api/users/{owner}/tokens", None),
        ("POST", f"/hub/api/users/{owner}/tokens", {"note": "stolen"}),
        ("POST", f"/hub/api/users/{owner}/server", {}),
        ("DELETE", f"/hub/api/users/{owner}/server", None),
    ]


def test_no_token_opens_another_users_server_or_api(lab: Lab, security_figures: object) -> None:
    alice, bob = lab.tokens["alice"], lab.tokens["bob"]
    put = {"type": "file", "format": "text", "content": SECRET}
    assert lab.call("/user/alice/api/contents/secret.txt", alice, "PUT", put)[0] in (200, 201)
    # Each owner's token opens their own server's read routes (the control).
    own = [
        (path, lab.call(path, token)[0])
        for owner, token in (("alice", alice), ("bob", bob))
        for method, path, _ in _routes(owner)
        if method == "GET" and (owner == "alice" or "secret" not in path)
    ]
    assert [(path, code) for path, code in own if code != 200] == []
    crossed: list[tuple[str, str, int]] = []
    tried = 0
    for owner, token in (("alice", bob), ("bob", alice)):
        for method, path, body in _routes(owner):
            code, _ = lab.call(path, token, method, body)
            tried += 1
            if code < 300:
                crossed.append((method, path, code))
    # A lab admin (dana) sees users and may stop servers, but opens no one's server.
    admin_in: list[tuple[str, str, int]] = []
    admin_tried = 0
    for owner in ("alice", "bob"):
        for method, path, body in _routes(owner):
            if not path.startswith("/user/") or method != "GET":
                continue
            code, _ = lab.call(path, lab.tokens["dana"], method, body)
            admin_tried += 1
            if code < 300:
                admin_in.append((method, path, code))
    assert lab.call("/hub/api/users/alice", lab.tokens["dana"])[0] == 200
    security_figures.record(  # type: ignore[attr-defined]
        "lab_cross_user_successes", len(crossed), of=tried, engine="docker"
    )
    security_figures.record(  # type: ignore[attr-defined]
        "lab_admin_server_opens", len(admin_in), of=admin_tried, engine="docker"
    )
    assert tried >= 30 and crossed == [], crossed
    assert admin_tried >= 20 and admin_in == [], admin_in
    # Nothing of the attempts landed: both servers still up, no file planted.
    assert lab.server_ready("alice") and lab.server_ready("bob")
    assert lab.call("/user/alice/api/contents/pwned.txt", alice)[0] == 404


def test_bob_cannot_reach_alices_files_or_server(lab: Lab) -> None:
    alice_ip = _container("alice")["NetworkSettings"]["Networks"][f"{PREFIX}-net-lab"]["IPAddress"]  # type: ignore[index]
    assert lab.ssh("alice", "alice", "cat", "secret.txt").stdout == SECRET
    homes = lab.ssh("bob", "bob", "ls", "/home").stdout.split()
    assert homes == ["bob"], homes
    probe = (
        "import socket; s = socket.socket(); s.settimeout(3); "
        f"print('connected' if s.connect_ex(('{alice_ip}', 8888)) == 0 else 'refused')"
    )
    reach = lab.ssh("bob", "bob", "python", "-c", shlex.quote(probe))
    assert reach.stdout.startswith("refused"), reach.stdout + reach.stderr


def test_users_run_as_their_own_uid_with_their_limits(lab: Lab) -> None:
    for user, uid in (("alice", 71101), ("bob", 71102)):
        top = subprocess.run(
            ["docker", "top", f"{PREFIX}-u-{user}", "-eo", "pid,uid,args"],
            capture_output=True, text=True, check=True,
        ).stdout.splitlines()[1:]  # fmt: skip
        uids = [int(line.split()[1]) for line in top]
        assert uids.count(0) == 1 and set(uids) == {0, uid}, top  # only tini is root
        info = _container(user)
        host = info["HostConfig"]  # type: ignore[index]
        assert host["Memory"] == 2 << 30
        assert host["CpuQuota"] == 100_000 and host["CpuPeriod"] == 100_000
        assert host["PidsLimit"] > 0 and host["CapDrop"] == ["ALL"]
        assert "no-new-privileges:true" in host["SecurityOpt"]
        assert host["PortBindings"] == {
            "2222/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(lab.ssh_ports[user])}]
        }
        assert info["Config"]["Env"].count(f"TORCHRIG_UID={uid}") == 1  # type: ignore[index]
    # Key-only SSH, each key for its own user.
    assert lab.ssh("alice", "alice", "id", "-u").stdout.strip() == "71101"
    refused = lab.ssh("alice", "bob", "id")
    assert refused.returncode != 0 and "Permission denied (publickey)" in refused.stderr


def test_a_hub_restart_loses_no_file(lab: Lab) -> None:
    before = _container("alice")["Id"]  # type: ignore[index]
    lab.cli("lab", "up")  # the same config: the hub restarts, servers keep running
    assert _container("alice")["Id"] == before  # type: ignore[index]
    wait_until(lambda: lab.server_ready("alice"), 60, "alice's server to be known again")
    code, text = lab.call("/user/alice/api/contents/secret.txt", lab.tokens["alice"])
    assert code == 200 and json.loads(text)["content"] == SECRET
    # A new container from the image finds the same home.
    lab.stop("alice")
    lab.start("alice")
    code, text = lab.call("/user/alice/api/contents/secret.txt", lab.tokens["alice"])
    assert code == 200 and json.loads(text)["content"] == SECRET
    status = json.loads(lab.cli("lab", "status", "--json").stdout)
    assert status["hub"] == "running"
    assert {u["name"]: u["server"] for u in status["users"]} == {
        "alice": "running",
        "bob": "running",
        "dana": "stopped",
    }


def test_remove_user_keeps_the_home_and_purge_deletes_it(lab: Lab) -> None:
    def volume_exists(user: str) -> bool:
        return (
            subprocess.run(
                ["docker", "volume", "inspect", f"{PREFIX}-home-{user}"], capture_output=True
            ).returncode
            == 0
        )

    lab.cli("lab", "remove-user", "bob")  # the hub is up: it restarts without bob
    assert _container("bob") is None and volume_exists("bob")
    spawn = lab.call("/hub/api/users/bob/server", lab.tokens["bob"], "POST", {})
    assert spawn[0] == 403 and "bob is not a user of this lab" in spawn[1], spawn
    down = json.loads(lab.cli("lab", "down", "--json").stdout)
    assert down["hub_was_running"] and _container("alice") is None
    # With the hub down, the same verbs only edit torchrig.toml and the volumes.
    lab.cli("lab", "add-user", "bob", "--key", str(lab.keys["bob"]) + ".pub")
    assert volume_exists("bob")  # bob's files were waiting for him
    lab.cli("lab", "remove-user", "bob", "--purge")
    assert not volume_exists("bob")
    assert volume_exists("alice")
