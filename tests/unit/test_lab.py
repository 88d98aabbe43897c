"""torchrig lab without a hub: the [lab] model, the GPU pool, the per-user container settings,
the rendered jupyterhub_config.py, the spec edits and the CLI's bad input (exit 2, nothing
changed)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.golden_util import GOLDEN, assert_golden
from torchrig.errors import SpecError, UsageError
from torchrig.lab.gpus import NoGpuFree, Pool, allocate, locked_pool, read_pool, release
from torchrig.lab.hooks import container_settings, take_gpus
from torchrig.lab.render import HubAddresses, render_config
from torchrig.lab.state import LabState, check_trusted
from torchrig.lab.users import add_user_text, init_text, read_keys, remove_user_text
from torchrig.spec.invalid import Invalid
from torchrig.spec.lab import check_public_key
from torchrig.spec.load import parse_spec
from torchrig.workbench import hub_mode

ROOT = Path(__file__).resolve().parents[2]
H100 = ROOT / "tests" / "fixtures" / "host" / "h100-sxm" / "host.json"
KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFsqaW8i1LQKNVEmfUUFeZ1lE4RYSAsq4tyyTpRcphpX alice@lab"
KEY_B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDQ5j+jiswJ2g3tWG/qYhT4fbGijqJsNkSl+COe9qcT3 bob@lab"
SPEC = f"""\
[project]
name = "t-lab-unit"

[python]
packages = ["jupyterhub==6.1.1"]

[lab]
admins = ["alice"]
gpus = 1
datasets = "/srv/datasets"

[[lab.users]]
name = "alice"
uid = 71001
ssh_port = 22001
ssh_keys = ["{KEY_A}"]
memory = "16g"
cpus = 4.0

[[lab.users]]
name = "bob"
uid = 71002
ssh_port = 22002
ssh_keys = ["{KEY_B}"]
gpus = 0
"""


# --- the [lab] model ------------------------------------------------------------------------


def test_public_keys_are_checked_to_their_blob() -> None:
    assert check_public_key(KEY_A + "\n") == KEY_A
    bad = {
        "-----BEGIN OPENSSH PRIVATE KEY-----": "private key",
        "SHA256:2tCDWbI0pNE9e8bIkL9Gq0+Jc2p5EFeGm6NdpXXV0V4": "not an SSH public key line",
        "ssh-ed25519 not*base64": "base64",
        "ssh-rsa " + KEY_A.split()[1]: "another kind or truncated",
        "ssh-ed25519 AAAA": "truncated",
        "/home/alice/.ssh/id_ed25519.pub": "not an SSH public key line",
    }
    for text, said in bad.items():
        with pytest.raises(Invalid, match=said):
            check_public_key(text)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (('name = "bob"', 'name = "Bob"'), '"Bob" is not a valid user name'),
        (('name = "bob"', 'name = "root"'), "reserved name"),
        (('name = "bob"', 'name = "alice"'), "listed twice"),
        (("uid = 71002", "uid = 71001"), "uid 71001 is also alice's"),
        (("uid = 71002", "uid = 0"), "out of range"),
        (("ssh_port = 22002", "ssh_port = 22001"), "ssh_port 22001 is also alice's"),
        ((f'ssh_keys = ["{KEY_B}"]', 'ssh_keys = ["ssh-ed25519 AAAA"]'), "truncated"),
        (('admins = ["alice"]', 'admins = ["carol"]'), "not one of the lab's users"),
        (('memory = "16g"', 'memory = "16 GB"'), "not a memory size"),
    ],
)
def test_bad_lab_sections_name_the_key(change: tuple[str, str], said: str) -> None:
    with pytest.raises(SpecError, match=said) as caught:
        parse_spec(SPEC.replace(*change, 1))
    assert "\n" not in str(caught.value)
    assert "lab" in caught.value.one_line()


def test_the_lab_section_is_not_in_the_spec_digest() -> None:
    from torchrig.spec.load import spec_digest

    without = SPEC.split("[lab]")[0]
    assert spec_digest(parse_spec(SPEC)) == spec_digest(parse_spec(without))


# --- the GPU pool ---------------------------------------------------------------------------


def test_exclusive_pool_queues_and_serves_in_order() -> None:
    pool = Pool(gpus=["GPU-a", "GPU-b"])
    assert allocate(pool, "alice", 1, "exclusive", 1, now=0) == ["GPU-a"]
    assert allocate(pool, "bob", 1, "exclusive", 1, now=1) == ["GPU-b"]
    # Asking again keeps what you hold.
    assert allocate(pool, "alice", 1, "exclusive", 1, now=2) == ["GPU-a"]
    with pytest.raises(NoGpuFree, match="number 1 in the queue") as carol:
        allocate(pool, "carol", 1, "exclusive", 1, now=3)
    assert carol.value.position == 1 and "held by alice, bob" in str(carol.value)
    with pytest.raises(NoGpuFree, match="number 2 in the queue"):
        allocate(pool, "dave", 1, "exclusive", 1, now=4)
    assert release(pool, "bob") == ["GPU-b"]
    # A free card goes to the head of the queue, not to whoever asks first.
    with pytest.raises(NoGpuFree, match="number 2 in the queue"):
        allocate(pool, "dave", 1, "exclusive", 1, now=5)
    assert allocate(pool, "carol", 1, "exclusive", 1, now=6) == ["GPU-b"]
    assert [q[0] for q in pool.queue] == ["dave"]


def test_a_queue_place_not_retried_expires() -> None:
    pool = Pool(gpus=["GPU-a"])
    allocate(pool, "alice", 1, "exclusive", 1, now=0)
    with pytest.raises(NoGpuFree):
        allocate(pool, "carol", 1, "exclusive", 1, now=1)
    release(pool, "alice")
    assert allocate(pool, "dave", 1, "exclusive", 1, now=10_000) == ["GPU-a"]


def test_shared_pool_spreads_users_and_caps_each_gpu() -> None:
    pool = Pool(gpus=["GPU-a", "GPU-b"])
    got = [allocate(pool, u, 1, "shared", 2, now=i)[0] for i, u in enumerate("pqrs")]
    assert got == ["GPU-a", "GPU-b", "GPU-a", "GPU-b"]
    with pytest.raises(NoGpuFree):
        allocate(pool, "t", 1, "shared", 2, now=9)


def test_more_gpus_than_the_host_has_is_refused_without_a_queue() -> None:
    pool = Pool(gpus=["GPU-a"])
    with pytest.raises(NoGpuFree, match="allowed 2 GPUs but this server has 1") as caught:
        allocate(pool, "alice", 2, "exclusive", 1, now=0)
    assert caught.value.position == 0 and pool.queue == []


def test_the_pool_file_keeps_holders_and_the_queue(tmp_path: Path) -> None:
    lab = {
        "gpu_state": str(tmp_path / "gpus.json"),
        "gpu_pool": ["GPU-a"],
        "gpu_policy": "exclusive",
        "users_per_gpu": 1,
        "users": {"alice": {"gpus": 1}, "bob": {"gpus": 1}},
    }
    assert take_gpus(lab, "alice") == ["GPU-a"]
    with pytest.raises(NoGpuFree, match="number 1"):
        take_gpus(lab, "bob")
    saved = read_pool(tmp_path / "gpus.json", ["GPU-a"])
    assert saved.held_by("alice") == ["GPU-a"] and saved.queue[0][0] == "bob"
    assert oct((tmp_path / "gpus.json").stat().st_mode & 0o777) == "0o600"
    with locked_pool(tmp_path / "gpus.json", ["GPU-a"]) as pool:
        release(pool, "alice")
    assert take_gpus(lab, "bob") == ["GPU-a"]


# --- the per-user container and the rendered config ------------------------------------------


def _runtime(tmp: Path) -> dict[str, object]:
    return {
        "name": "t-lab-unit",
        "image": "torchrig/t-lab-unit:cpu-0123456789ab",
        "network": "torchrig-t-lab-unit-net-lab",
        "container_prefix": "torchrig-t-lab-unit-u-",
        "env": {"PIP_INDEX_URL": "https://pypi.example/simple"},
        "host_config": {
            "cap_drop": ["ALL"],
            "cap_add": ["CHOWN", "DAC_READ_SEARCH", "KILL", "SETGID", "SETUID"],
            "security_opt": ["no-new-privileges:true"],
            "pids_limit": 8192,
            "shm_size": "4g",
            "ulimits": [{"name": "memlock", "soft": -1, "hard": -1}],
            "init": False,
        },
        "stop_timeout": 120,
        "ssh_ip": "127.0.0.1",
        "datasets": "/srv/datasets",
        "keys_in_container": "/run/torchrig/authorized_keys",
        "gpu_state": str(tmp / "gpus.json"),
        "gpu_pool": ["GPU-a"],
        "gpu_policy": "exclusive",
        "users_per_gpu": 2,
        "users": {
            "alice": {
                "uid": 71001,
                "gpus": 1,
                "memory": "16g",
                "memory_bytes": 16 << 30,
                "cpus": 4.0,
                "ssh_port": 22001,
                "keys_file": "/state/keys/alice",
                "volume": "torchrig-t-lab-unit-home-alice",
                "healthcheck": {"test": ["CMD-SHELL", "setpriv --reuid=71001 …"], "retries": 3},
            },
            "bob": {
                "uid": 71002,
                "gpus": 0,
                "memory": "8g",
                "memory_bytes": 8 << 30,
                "cpus": 2.0,
                "ssh_port": 22002,
                "keys_file": "",
                "volume": "torchrig-t-lab-unit-home-bob",
                "healthcheck": None,
            },
        },
    }


def test_each_user_gets_their_uid_home_keys_port_and_gpus(tmp_path: Path) -> None:
    lab = _runtime(tmp_path)
    alice = container_settings(lab, "alice", ["GPU-a"])
    assert alice["environment"]["TORCHRIG_UID"] == "71001"
    assert alice["environment"]["TORCHRIG_USER"] == "alice"
    assert alice["environment"]["TORCHRIG_SERVICES"] == "jupyter,ssh"
    assert alice["environment"]["PIP_INDEX_URL"] == "https://pypi.example/simple"
    assert alice["volumes"] == {
        "torchrig-t-lab-unit-home-alice": {"bind": "/home/alice", "mode": "rw"},
        "/state/keys/alice": {"bind": "/run/torchrig/authorized_keys", "mode": "ro"},
        "/srv/datasets": {"bind": "/datasets", "mode": "ro"},
    }
    assert alice["mem_limit"] == 16 << 30 and alice["cpu_limit"] == 4.0
    config = alice["extra_host_config"]
    assert config["port_bindings"] == {2222: ("127.0.0.1", 22001)}
    assert config["device_requests"] == [
        {"driver": "nvidia", "device_ids": ["GPU-a"], "capabilities": [["gpu"]]}
    ]
    assert config["cap_drop"] == ["ALL"] and "no-new-privileges:true" in config["security_opt"]
    # The health check runs as the user, not as the Plan's default identity.
    assert "--reuid=71001" in alice["extra_create_kwargs"]["healthcheck"]["test"][1]
    bob = container_settings(lab, "bob", [])
    # No GPUs, no keys: no card is visible and sshd is not started.
    assert bob["environment"]["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert bob["environment"]["TORCHRIG_SERVICES"] == "jupyter"
    assert "device_requests" not in bob["extra_host_config"]
    with pytest.raises(Exception, match="not a user of this lab"):
        container_settings(lab, "mallory", [])


def test_jupyterhub_config_is_golden(tmp_path: Path) -> None:
    spec = parse_spec(SPEC)
    assert spec.lab is not None
    state = LabState(Path("/root/.local/state/torchrig/t-lab-unit/lab"))
    runtime = _runtime(Path("/root/.local/state/torchrig/t-lab-unit/lab"))
    at = HubAddresses(
        gateway="172.30.0.1",
        python="/opt/torchrig/venv/bin/python",
        proxy="/usr/local/bin/configurable-http-proxy",
    )
    text = render_config(spec.lab, runtime, state, at)
    assert_golden(GOLDEN / "lab" / "jupyterhub_config.py", text)
    compile(text, "jupyterhub_config.py", "exec")
    assert "c.NativeAuthenticator.enable_signup = False" in text
    # Lab admins are never JupyterHub admins (that role may open every server).
    assert "c.Authenticator.admin_users = set()" in text
    admin_role = text.rsplit("lab-admin", 1)[1]
    assert "'access:servers" not in admin_role and "'tokens'" not in admin_role
    assert 'bind_url = "http://127.0.0.1:8000"' in text


# --- the root hub's files -------------------------------------------------------------------


def test_files_others_can_change_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "lab"
    folder.mkdir()
    spec = folder / "torchrig.toml"
    spec.write_text("x")
    check_trusted(spec, "torchrig.toml")  # pytest's tmp folders sit under the sticky /tmp
    spec.chmod(0o664)
    with pytest.raises(UsageError, match="is writable by its group"):
        check_trusted(spec, "torchrig.toml")
    spec.chmod(0o644)
    folder.chmod(0o777)
    with pytest.raises(UsageError, match=r"the folder .* above it is writable by others"):
        check_trusted(spec, "torchrig.toml")
    folder.chmod(0o755)
    if os.geteuid() == 0:
        os.chown(spec, 4242, 4242)
        with pytest.raises(UsageError, match="belongs to uid 4242"):
            check_trusted(spec, "torchrig.toml")


# --- the spec edits -------------------------------------------------------------------------


def test_init_adds_the_hub_package_and_a_lab_section() -> None:
    text, changed = init_text('[project]\nname = "x"\n', Path("torchrig.toml"))
    spec = parse_spec(text)
    assert spec.lab is not None and "jupyterhub==6.1.1" in spec.python.packages
    assert len(changed) == 2
    again, changed_again = init_text(text, Path("torchrig.toml"))
    assert again == text and changed_again == []
    listed = init_text('[project]\nname = "x"\n[python]\npackages = ["rich"]\n', Path("t"))[0]
    assert parse_spec(listed).python.packages == ["jupyterhub==6.1.1", "rich"]


def test_add_then_remove_a_user_round_trips() -> None:
    text, carol = add_user_text(
        SPEC, Path("t"), "carol", keys=[KEY_B], gpus=1, memory="4g", cpus=1.5, gpus_on_host=1
    )
    spec = parse_spec(text)
    assert spec.lab is not None
    assert (carol.uid, carol.ssh_port) == (71003, 22003)
    assert spec.lab.user("carol") == carol
    back = remove_user_text(text, Path("t"), "carol")
    assert back == SPEC
    without_bob = remove_user_text(SPEC, Path("t"), "bob")
    assert parse_spec(without_bob).lab.user("bob") is None  # type: ignore[union-attr]
    assert 'name = "alice"' in without_bob


@pytest.mark.parametrize(
    ("name", "kwargs", "said"),
    [
        ("Bad!", {}, '"Bad!" is not a valid user name'),
        ("alice", {}, "alice is already a user of this lab"),
        ("carol", {"gpus": 2}, "carol would get 2 GPUs but this host has 1"),
        ("carol", {"memory": "lots"}, '--memory "lots" is not a memory size'),
    ],
)
def test_add_user_refuses_bad_input(name: str, kwargs: dict[str, object], said: str) -> None:
    args: dict[str, object] = {"keys": [], "gpus": None, "memory": None, "cpus": None}
    args.update(kwargs)
    with pytest.raises(UsageError, match=said):
        add_user_text(SPEC, Path("t"), name, gpus_on_host=1, **args)  # type: ignore[arg-type]


def test_keys_come_from_pub_files_and_never_from_private_ones(tmp_path: Path) -> None:
    pub = tmp_path / "a.pub"
    pub.write_text(KEY_A + "\n")
    assert read_keys([str(pub), KEY_B]) == [KEY_A, KEY_B]
    private = tmp_path / "a"
    private.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn...\n")
    with pytest.raises(UsageError, match="this is a private key"):
        read_keys([str(private)])


# --- the workbench side ---------------------------------------------------------------------


def test_a_hub_spawned_workbench_serves_under_its_prefix() -> None:
    environ = {
        "JUPYTERHUB_SERVICE_URL": "http://0.0.0.0:8888/user/alice/",
        "JUPYTERHUB_SERVICE_PREFIX": "/user/alice/",
    }
    assert hub_mode.spawned_by_hub(environ) and not hub_mode.spawned_by_hub({})
    assert hub_mode.service_prefix(environ) == "/user/alice/"
    assert hub_mode.service_prefix({}) == "/"
    from torchrig.workbench.env import parse
    from torchrig.workbench.supervise import services_for

    env = {"TORCHRIG_USER": "alice", "TORCHRIG_UID": "71001", "TORCHRIG_GID": "71001", **environ}
    jupyter = next(s for s in services_for(parse(env), env) if s.name == "jupyter")
    assert jupyter.argv[0].endswith("/bin/jupyterhub-singleuser")
    assert "--ServerApp.root_dir=/home/alice" in jupyter.argv
    assert "JUPYTER_TOKEN_FILE" not in jupyter.env


# --- the CLI: one line, exit 2, nothing changed ------------------------------------------------


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_STATE_HOME": str(cwd / "state")}
    return subprocess.run(
        [sys.executable, "-P", "-m", "torchrig.cli.main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["bad name"], "is not a valid user name"),
        (["alice"], "alice is already a user of this lab"),
        (["carol", "--gpus", "5"], "carol would get 5 GPUs but this host has 1"),
        (["carol", "--key", "a"], "this is a private key"),
        (["carol", "--key", "ssh-ed25519 AAAA"], "truncated"),
    ],
)
def test_add_user_bad_input_is_one_line_and_changes_nothing(
    tmp_path: Path, argv: list[str], said: str
) -> None:
    spec = tmp_path / "torchrig.toml"
    spec.write_text(SPEC)
    (tmp_path / "a").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    done = _cli("lab", "add-user", *argv, "--host", str(H100), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and said in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert spec.read_text() == SPEC


def test_lab_up_with_the_hub_port_taken_is_exit_2_and_makes_nothing(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        spec = tmp_path / "torchrig.toml"
        spec.write_text(SPEC.replace("[lab]\n", f"[lab]\nhub_port = {port}\n"))
        done = _cli("lab", "up", "--host", str(H100), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"port {port} on 127.0.0.1 is taken" in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert not (tmp_path / "state").exists()


def test_lab_up_refuses_more_gpus_than_the_host_has(tmp_path: Path) -> None:
    spec = tmp_path / "torchrig.toml"
    spec.write_text(SPEC.replace("gpus = 1\n", "gpus = 3\n", 1))
    done = _cli("lab", "up", "--host", str(H100), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "lab user alice is allowed 3 GPUs but this host has 1" in done.stderr
    assert not (tmp_path / "state").exists()


def test_lab_status_without_a_hub(tmp_path: Path) -> None:
    (tmp_path / "torchrig.toml").write_text(SPEC)
    done = _cli("lab", "status", "--json", "--host", str(H100), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["hub"] == "stopped"
    assert [u["name"] for u in found["users"]] == ["alice", "bob"]
    assert found["gpus"] == [
        {"gpu": "GPU-0f42dc1e-75c5-2bda-54ca-2a62d2c91151", "holders": [], "utilisation_pct": None}
    ]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_tls_makes_the_hub_serve_https_and_its_key_must_be_roots(tmp_path: Path) -> None:
    cert, key = tmp_path / "hub.crt", tmp_path / "hub.key"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    key.chmod(0o664)  # a group that may write the key could swap in its own
    ports = f"hub_port = {_free_port()}\nproxy_api_port = {_free_port()}\n"
    tls = f'tls_cert = "{cert}"\ntls_key = "{key}"\nhub_ip = "0.0.0.0"\n'
    text = SPEC.replace("[lab]\n", f"[lab]\n{ports}{tls}")
    spec = parse_spec(text)
    assert spec.lab is not None
    state = LabState(tmp_path / "state")
    at = HubAddresses(gateway="172.30.0.1", python="/p", proxy="/chp")
    rendered = render_config(spec.lab, _runtime(tmp_path), state, at)
    assert 'c.JupyterHub.bind_url = "https://0.0.0.0:' in rendered
    assert f'c.JupyterHub.ssl_key = "{key}"' in rendered
    (tmp_path / "torchrig.toml").write_text(text)
    done = _cli("lab", "up", "--host", str(H100), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"lab.tls_key {key} is writable by its group" in done.stderr
    assert not (tmp_path / "state").exists()
    with pytest.raises(SpecError, match="tls_cert and tls_key go together"):
        parse_spec(SPEC.replace("[lab]\n", f'[lab]\ntls_cert = "{cert}"\n'))


def test_the_spawn_hook_tells_the_user_their_queue_place(tmp_path: Path) -> None:
    """What the hub shows: a 503 with the queue line, never "Internal Server Error"; the
    GPUs a spawn took go back when it stops."""
    import logging
    from types import SimpleNamespace

    from tornado import web

    from torchrig.lab.hooks import post_stop, pre_spawn

    lab = _runtime(tmp_path)
    lab["users"]["bob"]["gpus"] = 1  # type: ignore[index]

    def spawner(name: str) -> SimpleNamespace:
        return SimpleNamespace(user=SimpleNamespace(name=name), log=logging.getLogger("t"))

    alice = spawner("alice")
    pre_spawn(lab, alice)
    assert alice.extra_host_config["device_requests"][0]["device_ids"] == ["GPU-a"]
    with pytest.raises(web.HTTPError) as refused:
        pre_spawn(lab, spawner("bob"))
    assert refused.value.status_code == 503
    assert "you are number 1 in the queue" in refused.value.jupyterhub_message  # type: ignore[attr-defined]
    with pytest.raises(web.HTTPError, match="mallory is not a user of this lab"):
        pre_spawn(lab, spawner("mallory"))
    post_stop(lab, alice)
    bob = spawner("bob")
    pre_spawn(lab, bob)
    assert bob.extra_host_config["device_requests"][0]["device_ids"] == ["GPU-a"]
