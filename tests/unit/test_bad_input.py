"""Issue 12, items 6-13: bad specs, host files and command lines end in one clear line.

Black-box through `torchrig.cli.main.main`: each case checks the exit code documented in
docs/exit-codes.md, that stderr is exactly one line naming what is wrong and the fix, and
that nothing half-done is left behind.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from torchrig.cli.main import main
from torchrig.host.facts import Driver, Gpu, HostFacts, System
from torchrig.spec.load import load_spec
from torchrig.spec.model import MAX_CPUS, MAX_PIDS, MAX_SIZE_TEXT, MIN_MEMORY_TEXT

H100 = Gpu(index=0, name="NVIDIA H100 80GB HBM3", cc="9.0", uuid="GPU-0", source="fixture")


def facts(**changes: Any) -> dict[str, Any]:
    """A good host file as JSON data, with `changes` applied at dotted paths."""
    data = HostFacts(
        system=System(arch="x86_64", cpus=16, memory_bytes=64 << 30),
        driver=Driver(version="580.95.05", cuda="13.0"),
        gpus=[H100],
    ).model_dump(mode="json")
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[last] = value
    return data


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "torchrig.toml").write_text('[project]\nname = "t"\n')
    (tmp_path / "host.json").write_text(json.dumps(facts()))
    return tmp_path


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), repr(err)
    assert "Traceback" not in err and "internal error" not in err
    return err


def plan(project: Path, *extra: str) -> int:
    spec, host = project / "torchrig.toml", project / "host.json"
    return main(["plan", "--spec", str(spec), "--host", str(host), *extra])


# --- 6 and 11: host files validated as strictly as the spec ------------------------------------

BAD_HOSTS = [
    ("cc-abc", facts(**{"gpus.0.cc": "abc"}), "gpus.0.cc"),
    ("cc-9", facts(**{"gpus.0.cc": "9"}), "gpus.0.cc"),
    ("cc-9.0.1", facts(**{"gpus.0.cc": "9.0.1"}), "gpus.0.cc"),
    ("cc-number", facts(**{"gpus.0.cc": 9.0}), "gpus.0.cc"),
    ("driver-abc", facts(**{"driver.version": "abc"}), "driver.version"),
    ("driver-empty", facts(**{"driver.version": ""}), "driver.version"),
    ("driver-cuda", facts(**{"driver.cuda": "thirteen"}), "driver.cuda"),
    ("arch-empty", facts(**{"system.arch": ""}), "system.arch"),
    ("arch-spaces", facts(**{"system.arch": "x86 64"}), "system.arch"),
]


@pytest.mark.parametrize("verb", ["plan", "doctor"])
@pytest.mark.parametrize(
    ("data", "where"), [c[1:] for c in BAD_HOSTS], ids=[c[0] for c in BAD_HOSTS]
)
def test_bad_host_facts_are_exit_2_naming_the_key(
    project: Path, capsys: pytest.CaptureFixture[str], verb: str, data: Any, where: str
) -> None:
    (project / "host.json").write_text(json.dumps(data))
    argv = [verb, "--spec", str(project / "torchrig.toml"), "--host", str(project / "host.json")]
    assert main(argv) == 2
    err = one_line(capsys)
    assert f"{where}:" in err and "torchrig host --json" in err
    assert "update the NVIDIA driver" not in err


def test_a_deeply_nested_host_file_is_exit_2(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "host.json").write_text("[" * 100_000 + "]" * 100_000)
    assert plan(project) == 2
    assert "host facts file" in one_line(capsys)


# --- 7: what is read from --spec and --host is capped -----------------------------------------


def _capped_run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """torchrig in a child held to 2 GiB of address space and 60 s: a regression (reading
    /dev/zero to the end) fails this test instead of taking the machine's memory."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    return subprocess.run(
        [sys.executable, "-m", "torchrig.cli.main", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limit,
        check=False,
    )


@pytest.mark.parametrize("option", ["--spec", "--host"])
def test_dev_zero_and_huge_files_end_at_once(project: Path, option: str) -> None:
    huge = project / "huge"
    with huge.open("wb") as handle:
        handle.write(b"#" * (2 << 20))  # 2 MiB: twice the cap
    for path in ("/dev/zero", str(huge)):
        argv = ["plan", "--spec", str(project / "torchrig.toml"), "--host"]
        argv += [str(project / "host.json")]
        argv[argv.index(option) + 1] = path
        started = time.monotonic()
        done = _capped_run(argv)
        assert time.monotonic() - started < 30
        assert done.returncode == 2, done.stderr[-300:]
        assert done.stderr.count("\n") == 1 and path in done.stderr


# --- 8: a full disk is exit 4 with the path ----------------------------------------------------


def test_init_on_a_full_disk_is_exit_4_naming_the_file(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "torchrig.toml").unlink()

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    argv = ["init", "--dir", str(project), "--host", str(project / "host.json")]
    assert main(argv) == 4
    err = one_line(capsys)
    assert str(project / "torchrig.toml") in err and "No space left" in err and "df" in err
    assert sorted(p.name for p in project.iterdir()) == ["host.json"], "no temp file left"


def test_a_disk_error_escaping_anywhere_is_exit_4(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(target: Path, text: str) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO), str(target))

    monkeypatch.setattr("torchrig.cli.init.write_atomically", broken)
    (project / "torchrig.toml").unlink()
    assert main(["init", "--dir", str(project), "--host", str(project / "host.json")]) == 4
    assert str(project / "torchrig.toml") in one_line(capsys)


# --- 9 and 10: absurd spec values are bounded; errors carry a fix ------------------------------

BOUNDS = [
    ("pids", "[resources]\npids = 1000000000000000000000000000000\n", str(MAX_PIDS)),
    ("shm", '[resources]\nshm = "99999999999999999999t"\n', MAX_SIZE_TEXT),
    ("shm-digits", '[resources]\nshm = "' + "9" * 400 + 't"\n', MAX_SIZE_TEXT),
    ("cpus", "[resources]\ncpus = 1000000\n", str(MAX_CPUS)),
    ("memory", '[resources]\nmemory = "1k"\n', MIN_MEMORY_TEXT),
]


@pytest.mark.parametrize(("body", "bound"), [b[1:] for b in BOUNDS], ids=[b[0] for b in BOUNDS])
def test_absurd_values_are_refused_with_the_bound(
    project: Path, capsys: pytest.CaptureFixture[str], body: str, bound: str
) -> None:
    (project / "torchrig.toml").write_text('[project]\nname = "t"\n' + body)
    assert plan(project) == 2
    message, _, fix = one_line(capsys).partition(" — ")
    assert bound in message and bound in fix


def test_a_missing_authorized_keys_file_is_named_relative_to_the_project(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = project / "torchrig.toml"
    spec.write_text('[project]\nname = "t"\n[user]\nauthorized_keys = ["keys/me.pub"]\n')
    monkeypatch.chdir(project.parent)  # relative to the project, not the current folder
    assert plan(project) == 2
    err = one_line(capsys)
    assert "user.authorized_keys[0]" in err and str(project / "keys" / "me.pub") in err
    (project / "keys").mkdir()
    (project / "keys" / "me.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI me\n")
    assert load_spec(spec).user.authorized_keys == ["keys/me.pub"]


@pytest.mark.parametrize(
    ("body", "fix"),
    [
        ("[services.jupyter]\nport = 8888.0\n", "port = 8888"),
        ("[torch]\nversion = 2024-01-01\n", 'version = "latest"'),
        ("[torch]\nversion = 2024-01-01T10:00:00Z\n", 'version = "latest"'),
    ],
    ids=["float-port", "date-version", "datetime-version"],
)
def test_type_errors_carry_a_fix(
    project: Path, capsys: pytest.CaptureFixture[str], body: str, fix: str
) -> None:
    (project / "torchrig.toml").write_text('[project]\nname = "t"\n' + body)
    assert plan(project) == 2
    assert one_line(capsys).rstrip("\n").endswith(fix)


# --- 12: strings from the host are cleaned before printing or writing --------------------------

HOSTILE = "NVIDIA H100\x1b[2J\x1b[31m\nforged = true\r\u202eevil\x07"


def test_hostile_gpu_names_are_printed_and_written_clean(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "host.json").write_text(
        json.dumps(facts(**{"gpus.0.name": HOSTILE, "hostname": "h\x1b]0;x\x07"}))
    )
    (project / "torchrig.toml").unlink()
    argv = ["init", "--dir", str(project), "--host", str(project / "host.json")]
    assert main(argv) == 0
    written = (project / "torchrig.toml").read_text()
    load_spec(project / "torchrig.toml")
    assert "NVIDIA H100?[2J?[31m?forged = true??evil?" in written
    for verb in (["plan"], ["host"], ["plan", "--json"]):
        capsys.readouterr()
        argv = [*verb, "--host", str(project / "host.json")]
        if verb[0] == "plan":
            argv += ["--spec", str(project / "torchrig.toml")]
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert not any(c in out for c in "\x1b\r\x07\u202e"), verb
        assert "\nforged" not in out


# --- 13: command-line overrides go through the spec's model ------------------------------------


@pytest.mark.parametrize("verb", ["plan", "lock"])
@pytest.mark.parametrize("variant", ["cu999", "cu130;id", ""])
def test_variant_overrides_are_validated_like_the_spec(
    project: Path, capsys: pytest.CaptureFixture[str], verb: str, variant: str
) -> None:
    argv = [verb, "--spec", str(project / "torchrig.toml"), "--host", str(project / "host.json")]
    assert main([*argv, "--variant", variant]) == 2
    err = one_line(capsys)
    assert err.startswith(f"error: --variant: {json.dumps(variant)} is not a build variant")
    assert not (project / "torchrig.lock").exists()
