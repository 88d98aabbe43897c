"""`--debug` before or after any verb shows tracebacks and prints every command torchrig runs
as a line a shell can run again (issue 13, item 5).

Before: `torchrig plan --debug` was refused ("unrecognized arguments"), and only `lock`
printed its (unquoted) uv line; engine commands were never shown.
"""

from __future__ import annotations

import argparse
import json
import shlex
import stat
import sys
from pathlib import Path

import pytest

from torchrig.cli.main import VERBS, build_parser, main
from torchrig.command import command_line, run_command, set_debug


def required_words(parser: argparse.ArgumentParser, verb: str) -> list[str]:
    """A value for each argument the verb requires (its first choice, else "x"), so that
    the line parses whatever verbs are added later."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    verb_parser = sub.choices[verb]
    words: list[str] = []
    for group in verb_parser._mutually_exclusive_groups:
        if group.required:  # one of them is needed: the first
            words += [group._group_actions[0].option_strings[0], "x"]
    for action in verb_parser._actions:
        if action.option_strings and not action.required:
            continue
        if not action.option_strings and action.nargs in ("?", "*"):
            continue
        value = str(next(iter(action.choices))) if action.choices else "x"
        words += [action.option_strings[0], value] if action.option_strings else [value]
    return words


@pytest.mark.parametrize("verb", list(VERBS))
def test_debug_is_accepted_before_and_after_every_verb(verb: str) -> None:
    parser = build_parser()
    rest = required_words(parser, verb)
    assert parser.parse_args(["--debug", verb, *rest]).debug is True
    assert parser.parse_args([verb, "--debug", *rest]).debug is True
    assert parser.parse_args([verb, *rest]).debug is False


def test_debug_after_the_command_separator_belongs_to_the_command() -> None:
    args = build_parser().parse_args(["exec", "--", "python", "train.py", "--debug"])
    assert args.debug is False and args.command[-1] == "--debug"


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no torchrig.toml here: a known error
    argv = ["--debug", "plan"] if where == "before" else ["plan", "--debug"]
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0 and "Traceback (most recent call last)" in err, err
    assert main(["plan"]) == code
    assert "Traceback" not in capsys.readouterr().err


def test_command_lines_paste_back_into_the_same_argv(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [sys.executable, "-c", "import sys; print(sys.argv[1:])", "a b", "it's", "$HOME", ""]
    set_debug(True)
    try:
        done = run_command(argv, env={"X": "1 2"}, unset=["UV_INDEX"], cwd="/")
    finally:
        set_debug(False)
    assert done.stdout.strip() == repr(argv[3:])
    line = capsys.readouterr().err.strip()
    assert line == "+ " + command_line(argv, {"X": "1 2"}, unset=["UV_INDEX"], cwd="/")
    words = shlex.split(line.removeprefix("+ "))
    assert words[:8] == ["cd", "/", "&&", "env", "-u", "UV_INDEX", "X=1 2", sys.executable]
    assert words[8:] == argv[1:]
    run_command(argv)
    assert capsys.readouterr().err == ""  # off: nothing printed


# A docker CLI that answers like a daemon with no workbench, and writes down each argv.
# Each call's arguments in a file of its own: calls run at once, and two appends to one
# file (arguments, then the newline) interleaved into one joined line and one empty line.
FAKE_DOCKER = """#!/bin/sh
printf '%s\\0' "$@" > "$(mktemp "$0.call.XXXXXX")"
case "$1" in
  version) echo '{"Client":{"Version":"27.0.0"},"Server":{"Version":"27.0.0"}}' ;;
  info) echo '{"ServerVersion":"27.0.0","DockerRootDir":"/var/lib/docker"}' ;;
  *) echo "Error: No such container: $3" >&2; exit 1 ;;
esac
"""
HOST = {
    "schema_version": 1,
    "system": {"arch": "x86_64", "cpus": 2, "memory_bytes": 8 << 30, "user": "ada"},
    "engines": [],
}


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_prints_each_engine_command_as_it_ran(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bin_dir = tmp_path / "bin dir"  # a space: the printed line must quote it
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(docker.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    (tmp_path / "torchrig.toml").write_text('[project]\nname = "dbg"\n[torch]\nvariant = "cpu"\n')
    (tmp_path / "host.json").write_text(json.dumps(HOST))
    monkeypatch.chdir(tmp_path)
    verb = ["status", "--host", "host.json", "--engine", "docker"]
    code = main(["--debug", *verb] if where == "before" else [*verb, "--debug"])
    out, err = capsys.readouterr()
    assert code == 0 and "not up" in out, err
    ran = [f.read_text().split("\0")[:-1] for f in bin_dir.glob("docker.call.*")]
    printed = [shlex.split(line[2:]) for line in err.splitlines() if line.startswith("+ ")]
    # As a set: independent engine calls run at once (`docker version` and `docker info`),
    # each printed as it starts, so two of them may run in the other order.
    assert sorted(printed) == sorted([str(docker), *argv] for argv in ran)
    assert ["container", "inspect", "torchrig-dbg"] in ran
    # Without --debug the same verb prints no command.
    assert main(verb) == 0
    assert "+ " not in capsys.readouterr().err


FAKE_UV = """#!/bin/sh
echo "UV_INDEX=${UV_INDEX-unset}" "UV_NATIVE_TLS=${UV_NATIVE_TLS-unset}" \\
  "SSL_CERT_FILE=${SSL_CERT_FILE-unset}"
"""


@pytest.mark.parametrize("native_tls", [None, "0"])
def test_debug_prints_the_uv_command_with_the_environment_it_runs_in(
    native_tls: str | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from torchrig.lock import uv

    fake = tmp_path / "uv"
    fake.write_text(FAKE_UV)
    fake.chmod(0o755)
    monkeypatch.setattr(uv, "uv_binary", lambda: str(fake))
    monkeypatch.setenv("UV_INDEX", "https://elsewhere.example/simple")  # must not reach uv
    if native_tls is None:
        monkeypatch.delenv("UV_NATIVE_TLS", raising=False)
    else:
        monkeypatch.setenv("UV_NATIVE_TLS", native_tls)  # the user's own choice is kept
    request = uv.UvRequest(
        requirements=["torch"],
        python="3.12",
        platform="x86_64-manylinux_2_28",
        default_index="https://pypi.org/simple",
        indexes=[],
        find_links=[],
        ca_bundle="/etc/ca.pem",
    )
    set_debug(True)
    try:
        out = uv._run(["pip", "compile", "requirements.in"], request, tmp_path)
    finally:
        set_debug(False)
    tls = native_tls or "1"
    assert out.split() == ["UV_INDEX=unset", f"UV_NATIVE_TLS={tls}", "SSL_CERT_FILE=/etc/ca.pem"]
    [line] = capsys.readouterr().err.splitlines()
    words = shlex.split(line.removeprefix("+ "))
    tls_words = [] if native_tls else ["UV_NATIVE_TLS=1"]
    assert words[: 6 + len(tls_words)] == [
        "cd",
        str(tmp_path),
        "&&",
        "env",
        "-u",
        "UV_INDEX",
        *tls_words,
    ]
    assert words[6 + len(tls_words) :][:5] == [
        "SSL_CERT_FILE=/etc/ca.pem",
        str(fake),
        "pip",
        "compile",
        "requirements.in",
    ]


def test_debug_prints_streamed_commands_too(capsys: pytest.CaptureFixture[str]) -> None:
    # Builds, debootstrap and `logs -f` stream their output line by line.
    from torchrig.engine.cli import Runner

    set_debug(True)
    try:
        lines = list(Runner().lines(["sh", "-c", "echo one; echo two"]))
    finally:
        set_debug(False)
    assert lines == ["one", "two"]
    assert capsys.readouterr().err == "+ sh -c 'echo one; echo two'\n"


# Slurm's clients answering for job 41, each writing down its argv.
FAKE_SLURM = """#!/bin/sh
printf '%s\\0' "${0##*/}" "$@" >> "${0%/*}/calls"; printf '\\n' >> "${0%/*}/calls"
case "${0##*/}" in
  scontrol) echo "JobId=41 JobState=COMPLETED Restarts=0 ExitCode=0:0" ;;
esac
"""
SLURM_TOOLS = ("sbatch", "scontrol", "scancel")


def test_debug_prints_the_slurm_commands_of_logs_and_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: submit.py ran sbatch, scontrol and scancel with subprocess.run, and `--debug`
    printed none of them."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in SLURM_TOOLS:
        (bin_dir / tool).write_text(FAKE_SLURM)
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))  # Slurm's clients only: no engine to probe
    job_dir = tmp_path / "shared" / "jobs" / "j1"
    job_dir.mkdir(parents=True)
    (job_dir / "output.log").write_text("trained\n")
    (job_dir / "exit").write_text("0\n")
    records = tmp_path / ".torchrig" / "slurm"
    records.mkdir(parents=True)
    (records / "j1.json").write_text(
        json.dumps({"id": "j1", "slurm_id": 41, "job_dir": str(job_dir), "command": []})
    )
    (tmp_path / "torchrig.toml").write_text('[project]\nname = "dbg"\n[torch]\nvariant = "cpu"\n')
    monkeypatch.chdir(tmp_path)
    assert main(["--debug", "logs", "j1", "-f"]) == 0
    assert main(["stop", "j1", "--debug"]) == 0
    out, err = capsys.readouterr()
    assert "trained" in out
    ran = [line.split("\0")[:-1] for line in (bin_dir / "calls").read_text().splitlines()]
    printed = [shlex.split(line[2:]) for line in err.splitlines() if line.startswith("+ ")]
    assert printed == ran
    assert ran == [
        ["scontrol", "show", "job", "-o", "41"],
        ["scancel", "--signal=TERM", "--full", "41"],
        ["scancel", "41"],
    ]
    assert main(["stop", "j1"]) == 0  # without --debug: no command shown
    assert "+ " not in capsys.readouterr().err
