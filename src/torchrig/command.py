"""The one way torchrig runs a program on the host: engine CLIs, uv, debootstrap, tar, probes.

`--debug` (before or after the verb) promises "the commands torchrig runs". Keeping every
subprocess behind these few functions is what keeps that promise: the CLI turns the switch
on once with `set_debug`, and each command is then printed on stderr, before it runs, as
`+ ` and a line a person can paste into a shell (shlex-quoted, with the environment
variables and folder it needs). Libraries never see the parsed command line.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path
from typing import IO

_debug = False


def set_debug(on: bool) -> None:
    """Print every command from now on (the CLI calls this once per invocation)."""
    global _debug
    _debug = on


def debug_enabled() -> bool:
    return _debug


def command_line(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    *,
    unset: Sequence[str] = (),
    cwd: str | Path | None = None,
) -> str:
    """The command as one shell line, with the environment and folder it needs in front."""
    words = [f"{k}={shlex.quote(v)}" for k, v in (env or {}).items()]
    if unset:
        words = ["env", *(f"-u {shlex.quote(name)}" for name in unset), *words]
    line = " ".join([*words, shlex.join(argv)])
    return f"cd {shlex.quote(str(cwd))} && {line}" if cwd is not None else line


def _show(
    argv: Sequence[str], env: Mapping[str, str] | None, unset: Sequence[str], cwd: object
) -> None:
    if _debug:
        where = None if cwd is None else str(cwd)
        print("+ " + command_line(argv, env, unset=unset, cwd=where), file=sys.stderr, flush=True)


def _environ(env: Mapping[str, str] | None, unset: Sequence[str]) -> dict[str, str] | None:
    """None (inherit) unless the command adds or removes variables."""
    if not env and not unset:
        return None
    merged = {k: v for k, v in os.environ.items() if k not in unset}
    return {**merged, **(env or {})}


def run_command(
    argv: Sequence[str],
    timeout: float | None = None,
    *,
    env: Mapping[str, str] | None = None,
    unset: Sequence[str] = (),
    cwd: str | Path | None = None,
    input: str | None = None,
    capture: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run to completion and never raise on a non-zero exit (callers word their own errors).

    `env` adds to (and `unset` removes from) this process's environment. Captured output is
    text with undecodable bytes replaced; without `capture` the program shares this
    terminal. OSError (not installed) and TimeoutExpired propagate.
    """
    _show(argv, env, unset, cwd)
    return subprocess.run(
        list(argv),
        env=_environ(env, unset),
        cwd=cwd,
        timeout=timeout,
        input=input,
        capture_output=capture,
        text=True,
        errors="replace",
        check=False,
        # A captured command must never wait on this terminal for input it was not given.
        stdin=None if (input is not None or not capture) else subprocess.DEVNULL,
    )


def stream_command(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None
) -> Generator[str, None, int]:
    """Yield stdout and stderr merged, line by line as they come; return the exit status.

    Closing the generator early (a `logs --follow` reader that stops) ends the process.
    """
    _show(argv, env, (), None)
    proc = subprocess.Popen(
        list(argv),
        env=_environ(env, ()),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            yield line.rstrip("\n")
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
        if proc.stdout is not None:
            proc.stdout.close()
    return proc.wait()


def start_daemon(
    argv: Sequence[str],
    log: IO[bytes],
    *,
    cwd: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Start a long-running program in its own session, its output to `log`; return its pid.

    `environ` replaces this process's environment (a daemon that must not inherit it)."""
    _show(argv, None, (), cwd)
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(environ) if environ is not None else None,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    return proc.pid
