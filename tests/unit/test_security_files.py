"""Issue 10, finding 2: root runs `torchrig up`/`build`/`lock` for a project uid 4242 owns.

Each test is the attack as the issue states it, through the CLI (`torchrig.cli.main`) with
the RecordingEngine: the project's owner names a root-only file (authorized_keys,
torchrig.env as a symlink, --env-file, ca_certificates, find_links, the spec itself, a
--host file). torchrig must refuse with one line (exit 2), and no byte of the secret may
reach the engine (what it reads as root: --env-file, bind-mounted files, the build
context), torchrig's state folder, or the output. The engine here reads what the real
engine CLIs read as root, at the moment they would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from torchrig.cli.main import main
from torchrig.engine import RecordingEngine
from torchrig.engine.base import RunSpec
from torchrig.host.facts import Engine, HostFacts, System
from torchrig.lock.lockfile import Target
from torchrig.workbench import sshd

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the attack is on root's torchrig")

OWNER = 4242
SECRET = "t-sec2-root-only-7f3a9c"
SHADOW = f"root:$y$j9T${SECRET}$abcdef:19700:0:99999:7:::\ndaemon:*:19700:0:99999:7:::\n"
PEM = f"-----BEGIN CERTIFICATE-----\n{SECRET}\n-----END CERTIFICATE-----\n"
IMAGE = "torchrig/tsec2:cpu-0123456789ab"
SPEC = (
    '[project]\nname = "tsec2"\n[torch]\nversion = "2.13.0"\n'
    f'[user]\nname = "ada"\nuid = {OWNER}\ngid = {OWNER}\n'
)
HOST = HostFacts(
    system=System(arch="x86_64", cpus=2, memory_bytes=8 << 30, user="root", uid=0, gid=0),
    engines=[Engine(name="docker", path="/usr/bin/docker", reachable=True)],
)


class RootEngine(RecordingEngine):
    """Reads, as root, what Docker's CLI and daemon read: --env-file and bind-mount
    sources at `run`, the whole context at `build`. `seen` is all of it."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []
        self.add_image(IMAGE)
        self.exec_handler = lambda name, cmd: subprocess.CompletedProcess(list(cmd), 0, "tok", "")

    def run(self, spec: RunSpec) -> str:
        if spec.env_file is not None:
            self.seen.append(spec.env_file.read_text(errors="replace"))
        for mount in spec.mounts:
            if mount.kind != "volume" and Path(mount.source).is_file():
                self.seen.append(Path(mount.source).read_text(errors="replace"))
        cid = super().run(spec)
        self.set_health(cid, "healthy")
        return cid

    def build(self, context: Path, dockerfile: Path, tag: str, **kwargs: object) -> str:
        for path in sorted(context.rglob("*")):
            if path.is_file() and "torchrig" not in path.relative_to(context).parts[:1]:
                self.seen.append(path.read_text(errors="replace"))
        self.add_image(tag)
        return tag


@dataclass
class Attack:
    room: Path
    project: Path
    state: Path
    host_file: Path
    engine: RootEngine

    @property
    def spec(self) -> Path:
        return self.project / "torchrig.toml"

    def root_only(self, text: str, name: str = "secret") -> Path:
        path = self.room / name
        path.write_text(text)
        path.chmod(0o600)
        return path

    def write_spec(self, extra: str = "") -> None:
        self.spec.write_text(SPEC + extra)
        os.chown(self.spec, OWNER, OWNER)

    def cli(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
        code = main([*args, "--spec", str(self.spec), "--host", str(self.host_file)])
        out, err = capsys.readouterr()
        return code, out + err

    def leaked(self, output: str) -> list[str]:
        """Every place the secret reached: output, engine, state folder, engine calls."""
        places = [f"output: {output!r}"] if SECRET in output else []
        places += [f"engine read: {s[:80]!r}" for s in self.engine.seen if SECRET in s]
        places += [f"engine call {c.method}" for c in self.engine.calls if SECRET in repr(c)]
        for path in self.state.rglob("*"):
            if path.is_file() and SECRET in path.read_text(errors="replace"):
                places.append(f"state file {path}")
        return places


@pytest.fixture
def attack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Attack]:
    room = Path(tempfile.mkdtemp(prefix="t-sec2-"))
    room.chmod(0o755)  # root's, like /root or /etc: not the owner's to write
    project = room / "project"
    project.mkdir()
    os.chown(project, OWNER, OWNER)
    host_file = room / "host.json"
    host_file.write_text(HOST.to_json())
    engine = RootEngine()
    state = room / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    monkeypatch.setattr("torchrig.launch.session.engine_for", lambda session, name: engine)
    yield Attack(room, project, state, host_file, engine)
    shutil.rmtree(room)


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> None:
    """`up` with the image already there: the attack is on the run, not the build."""

    class Built:
        tag = IMAGE
        built = False

    monkeypatch.setattr("torchrig.launch.up.build", lambda *a, **k: Built())


@pytest.fixture
def no_lock_no_wheels(monkeypatch: pytest.MonkeyPatch) -> None:
    """`build` without uv and downloads: the lock and base are given, no wheels."""
    target = Target(
        variant="cpu",
        torch="2.13.0",
        cuda="",
        python="3.12",
        platform="x86_64-manylinux_2_28",
        torch_index="",
        inputs_digest="sha256:0",
        requirements=[],
        packages=[],
    )
    monkeypatch.setattr("torchrig.launch.up.ensure_lock", lambda *a, **k: None)
    monkeypatch.setattr("torchrig.launch.up.locked_target", lambda *a, **k: target)
    monkeypatch.setattr("torchrig.launch.up.base_image", lambda *a, **k: ("base:1", ("main",)))
    monkeypatch.setattr("torchrig.image.build.fetch_all", lambda *a, **k: ({}, 0))


def refused(code: int, output: str, *words: str) -> bool:
    """Exit 2 and one error line naming what was refused."""
    errors = [ln for ln in output.splitlines() if ln.startswith("error")]
    return code == 2 and len(errors) == 1 and all(w in errors[0] for w in words)


def test_authorized_keys_naming_a_root_only_file(
    attack: Attack, built: None, capsys: pytest.CaptureFixture[str]
) -> None:
    shadow = attack.root_only(SHADOW)
    attack.write_spec(f'authorized_keys = ["{shadow}"]\n')
    code, output = attack.cli(capsys, "up")
    assert attack.leaked(output) == []
    assert refused(code, output, "user.authorized_keys", str(shadow), "uid 4242"), output


def test_torchrig_env_as_a_symlink_to_a_root_only_file(
    attack: Attack, built: None, capsys: pytest.CaptureFixture[str]
) -> None:
    attack.write_spec()
    (attack.project / "torchrig.env").symlink_to(attack.root_only(f"HF_TOKEN={SECRET}\n"))
    code, output = attack.cli(capsys, "up")
    assert attack.leaked(output) == []
    assert refused(code, output, "env file", "symlink out of the project"), output


def test_env_file_flag_naming_a_root_only_file(
    attack: Attack, built: None, capsys: pytest.CaptureFixture[str]
) -> None:
    attack.write_spec()
    secret = attack.root_only(f"HF_TOKEN={SECRET}\n")
    code, output = attack.cli(capsys, "up", "--env-file", str(secret))
    assert attack.leaked(output) == []
    assert refused(code, output, "env file", "uid 4242"), output


def test_the_owners_own_env_file_still_reaches_the_engine_privately(
    attack: Attack, built: None, capsys: pytest.CaptureFixture[str]
) -> None:
    attack.write_spec()
    env = attack.project / "torchrig.env"
    env.write_text("HF_TOKEN=mine\n")
    env.chmod(0o600)
    os.chown(env, OWNER, OWNER)
    code, output = attack.cli(capsys, "up")
    assert code == 0, output
    (run,) = attack.engine.called("run")
    given = run.args[0].env_file
    assert given != env and given.read_text() == "HF_TOKEN=mine\n"
    assert given.stat().st_mode & 0o777 == 0o600 and given.is_relative_to(attack.state)


def test_ca_certificates_naming_a_root_only_file(
    attack: Attack, no_lock_no_wheels: None, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = attack.root_only(PEM, "proxy-ca.crt")
    attack.write_spec(f'[sources]\nca_certificates = ["{ca}"]\n')
    code, output = attack.cli(capsys, "build")
    assert attack.leaked(output) == []
    assert refused(code, output, "sources.ca_certificates", "uid 4242"), output


def test_ca_certificates_symlinked_out_of_the_project(
    attack: Attack, no_lock_no_wheels: None, capsys: pytest.CaptureFixture[str]
) -> None:
    (attack.project / "ca.crt").symlink_to(attack.root_only(PEM, "proxy-ca.crt"))
    attack.write_spec(f'[sources]\nca_certificates = ["{attack.project / "ca.crt"}"]\n')
    code, output = attack.cli(capsys, "build")
    assert attack.leaked(output) == []
    assert refused(code, output, "sources.ca_certificates", "symlink out of the project")


def test_the_spec_itself_symlinked_to_a_root_only_spec(
    attack: Attack, built: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # A root-only spec elsewhere (an admin's), its project name the secret.
    other = attack.root_only(SPEC.replace('"tsec2"', f'"{SECRET}"'), "admin.toml")
    attack.spec.symlink_to(other)
    code, output = attack.cli(capsys, "up")
    assert attack.leaked(output) == []
    assert refused(code, output, "torchrig.toml", "symlink out of the project"), output


def test_a_host_file_in_the_project_symlinked_to_a_root_only_file(
    attack: Attack, built: None, capsys: pytest.CaptureFixture[str]
) -> None:
    attack.write_spec()
    attack.host_file = attack.project / "host.json"
    attack.host_file.symlink_to(attack.root_only(HOST.to_json().replace('"root"', f'"{SECRET}"')))
    code, output = attack.cli(capsys, "up")
    assert attack.leaked(output) == []
    assert refused(code, output, "host facts file", "symlink out of the project"), output


def test_a_wheelhouse_holding_a_root_only_file(
    attack: Attack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    house = attack.room / "wheels"
    house.mkdir()
    (house / "secret-1.0-py3-none-any.whl").write_text(SECRET)
    (house / "secret-1.0-py3-none-any.whl").chmod(0o600)
    attack.write_spec(f'[sources]\nfind_links = ["{house}"]\n')
    uv_calls: list[object] = []

    def uv(request: object, **_: object) -> list[object]:
        uv_calls.append(request)
        return []

    monkeypatch.setattr("torchrig.lock.make.compile_lock", uv)
    code, output = attack.cli(capsys, "lock")
    assert uv_calls == []  # uv (run as root) never sees the folder
    assert refused(code, output, "sources.find_links", "uid 4242"), output


def test_key_file_warnings_never_quote_the_file() -> None:
    # The entrypoint logs one warning per skipped line: line number and reason only.
    text = SHADOW + f"ssh-nope {SECRET}\nfrom={SECRET} garbage\n{SECRET}\n"
    kept, warnings = sshd.filter_authorized_keys(text)
    assert kept == ""
    assert len(warnings) == 5
    assert not any(SECRET in w or "root:" in w or "daemon" in w for w in warnings), warnings


def test_a_mount_of_a_folder_only_root_may_open(
    attack: Attack, built: None, capsys: pytest.CaptureFixture[str]
) -> None:
    private = attack.room / "private"
    private.mkdir(mode=0o700)
    (private / "notes.txt").write_text(SECRET)
    attack.write_spec(f'[[mounts]]\nsource = "{private}"\ntarget = "/data"\n')
    code, output = attack.cli(capsys, "up")
    assert attack.engine.called("run") == []  # nothing mounted it
    assert attack.leaked(output) == []
    assert refused(code, output, "mounts[0].source", "uid 4242"), output


def test_a_mount_the_owner_may_open_is_mounted(
    attack: Attack, built: None, capsys: pytest.CaptureFixture[str]
) -> None:
    shared = attack.room / "datasets"
    shared.mkdir(mode=0o755)
    attack.write_spec(f'[[mounts]]\nsource = "{shared}"\ntarget = "/data"\n')
    code, output = attack.cli(capsys, "up")
    assert code == 0, output
    mounts = attack.engine.called("run")[-1].args[0].mounts
    assert any(m.source == str(shared) and m.read_only for m in mounts), mounts


@pytest.mark.parametrize(
    "line",
    [
        "LD_PRELOAD=/workspace/evil.so",
        "LD_LIBRARY_PATH=/workspace/lib",
        "  LD_AUDIT=/workspace/a.so",
        "GCONV_PATH=/workspace/gconv",
        "GLIBC_TUNABLES=glibc.malloc.check=3",
        "BASH_ENV=/workspace/rc",
        "TORCHRIG_AUTHORIZED_KEYS_FILE=/etc/shadow",
        "LD_PRELOAD",  # taken from the caller's environment: refused all the same
    ],
)
def test_an_env_file_that_would_steer_roots_processes(
    attack: Attack, built: None, capsys: pytest.CaptureFixture[str], line: str
) -> None:
    # The env file is the container's environment: tini, the entrypoint and the health
    # check's shell run as root with it, and the loader reads LD_PRELOAD before any code.
    attack.write_spec()
    env = attack.project / "torchrig.env"
    env.write_text(f"HF_TOKEN=hf_fine\n{line}\n")
    os.chown(env, OWNER, OWNER)
    code, output = attack.cli(capsys, "up")
    name = line.strip().split("=", 1)[0]
    assert refused(code, output, "line 2", name), output
    assert attack.engine.called("run") == []
    assert not any(p.name == "env" for p in attack.state.rglob("*")), "a copy was left"


def test_an_env_file_of_ordinary_variables_passes(
    attack: Attack, built: None, capsys: pytest.CaptureFixture[str]
) -> None:
    attack.write_spec()
    env = attack.project / "torchrig.env"
    env.write_text("# secrets\nHF_TOKEN=hf_x\nWANDB_API_KEY=w\nPYTHONPATH=/workspace/src\n")
    os.chown(env, OWNER, OWNER)
    code, output = attack.cli(capsys, "up")
    assert code == 0, output
