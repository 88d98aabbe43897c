"""The supervisor with real child processes: prefixes, backoff, giving up, graceful stop."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from torchrig.workbench.env import EX_SOFTWARE, Settings
from torchrig.workbench.supervise import (
    MASK,
    Policy,
    Service,
    Supervisor,
    jupyter_argv,
    services_for,
)

PY = sys.executable
SRC = Path(__file__).resolve().parents[2] / "src"
FAST = Policy(first_delay_s=0.05, max_delay_s=0.2, window_s=60, max_crashes=5, poll_s=0.01)


def py(code: str) -> tuple[str, ...]:
    return (PY, "-c", textwrap.dedent(code))


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = Policy()
    assert [policy.delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert policy.max_crashes == 10 and policy.window_s == 300 and policy.stop_timeout_s == 10


def test_a_crashing_service_is_restarted_with_backoff_then_given_up() -> None:
    out = io.StringIO()
    sup = Supervisor(
        [Service("crashy", py("import sys; print('boom', flush=True); sys.exit(3)"))],
        FAST,
        out=out,
    )
    start = time.monotonic()
    assert sup.run() == EX_SOFTWARE
    took = time.monotonic() - start
    log = out.getvalue().splitlines()
    assert sum(line == "crashy      | boom" for line in log) == 5
    restarts = [ln for ln in log if "restarting in" in ln]
    assert [ln.split("restarting in ")[1].split(" s")[0] for ln in restarts] == [
        "0.05",
        "0.1",
        "0.2",
        "0.2",
    ]
    assert "exited with code 3; restarting in 0.05 s (crash 1 of 5 allowed in 1 min)" in log[2]
    assert any("5 crashes in 1 min: giving up (exit 70)" in ln for ln in log)
    assert log[-1] == "torchrig    | all services stopped; exiting 70"
    # The delays really were waited: 0.05 + 0.1 + 0.2 + 0.2, plus five interpreter starts.
    assert took >= 0.55
    assert sup.running[0].started == 5


def test_crashes_outside_the_window_are_forgotten() -> None:
    now = [0.0]
    sup = Supervisor([Service("x", ("true",))], FAST, out=io.StringIO(), clock=lambda: now[0])
    slot = sup.running[0]
    for _ in range(4):
        sup._crashed(slot, "exited")
    assert len(slot.crashes) == 4
    now[0] = 61.0
    sup._crashed(slot, "exited")
    assert len(slot.crashes) == 1 and slot.restart_at == pytest.approx(61.05)


def test_a_missing_program_counts_as_a_crash() -> None:
    out = io.StringIO()
    sup = Supervisor([Service("ghost", ("/nonexistent/program",))], FAST, out=out)
    assert sup.run() == EX_SOFTWARE
    assert "cannot start /nonexistent/program" in out.getvalue()


def test_output_is_prefixed_and_the_token_masked() -> None:
    out = io.StringIO()
    token = "ab" * 32
    code = f"""
        import sys, time
        print('line one'); print('url ?token={token}', flush=True)
        sys.stderr.write('to stderr\\n'); sys.stderr.flush()
        sys.stdout.write('no newline at the end'); sys.stdout.flush()
        time.sleep(30)
    """
    sup = Supervisor([Service("svc", py(code))], FAST, out=out, mask=[token])
    deadline = time.monotonic() + 10

    def stop_when_seen() -> None:
        while "to stderr" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        sup.request_stop("test done")

    threading.Thread(target=stop_when_seen, daemon=True).start()
    assert sup.run() == 0
    log = out.getvalue()
    assert "svc         | line one\n" in log
    assert f"svc         | url ?token={MASK}\n" in log
    assert token not in log
    assert "svc         | to stderr\n" in log
    assert "svc         | no newline at the end\n" in log
    assert "torchrig    | test done: stopping svc" in log


SUPERVISOR_SCRIPT = """
import sys
from torchrig.workbench.supervise import Policy, Service, Supervisor
services = [
    Service("polite", ({py!r}, "-c", "import time\\nprint('up', flush=True)\\ntime.sleep(60)")),
    Service("stubborn", ({py!r}, "-c", "import signal, time\\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
        "print('up', flush=True)\\ntime.sleep(60)")),
]
sup = Supervisor(services, Policy(stop_timeout_s={timeout}, poll_s=0.02))
sup.handle_signals()
sys.exit(sup.run())
"""


def start_supervisor(timeout: float) -> subprocess.Popen[str]:
    script = SUPERVISOR_SCRIPT.format(py=PY, timeout=timeout)
    return subprocess.Popen(
        [PY, "-c", script],
        env={**os.environ, "PYTHONPATH": str(SRC)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_lines(proc: subprocess.Popen[str], needle: str, count: int) -> list[str]:
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 20
    while sum(needle in s for s in seen) < count and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line.rstrip("\n"))
    return seen


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_stops_everything_gracefully_and_exits_0(signum: int) -> None:
    proc = start_supervisor(timeout=1.0)
    try:
        early = wait_for_lines(proc, "| up", 2)
        assert sum("| up" in s for s in early) == 2, early
        pids = [int(s.split("(pid ")[1].rstrip(")")) for s in early if "started" in s]
        start = time.monotonic()
        proc.send_signal(signum)
        rest, _ = proc.communicate(timeout=20)
        took = time.monotonic() - start
    finally:
        proc.kill()
    assert proc.returncode == 0, rest
    # polite went at once; stubborn ignored SIGTERM and was killed after the 1 s timeout.
    assert 0.9 <= took < 8, took
    name = signal.Signals(signum).name
    assert f"received {name}: stopping polite, stubborn" in rest
    assert "stubborn still running after 1 s: SIGKILL" in rest
    assert "polite still running" not in rest
    assert rest.rstrip().endswith("all services stopped; graceful stop complete")
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_services_of_the_workbench() -> None:
    settings = Settings("alice", 4242, 4343, ("jupyter", "ssh", "tensorboard"), Path("/k"))
    env = {"PATH": "/usr/bin:/bin", "JUPYTER_TOKEN": "from-env-file", "HF_TOKEN": "s"}
    found = {s.name: s for s in services_for(settings, env)}
    assert list(found) == ["jupyter", "ssh", "tensorboard"]
    jupyter = found["jupyter"]
    assert jupyter.env is not None
    assert jupyter.env["JUPYTER_TOKEN_FILE"] == "/home/alice/.torchrig/jupyter/token"
    assert "JUPYTER_TOKEN" not in jupyter.env  # it would win over the file
    assert jupyter.env["HF_TOKEN"] == "s"  # the env file's secrets reach the kernels
    assert jupyter.env["HOME"] == "/home/alice" and jupyter.env["USER"] == "alice"
    assert jupyter.env["PATH"] == "/opt/venv/bin:/usr/bin:/bin"
    assert jupyter.cwd == "/workspace"
    argv = jupyter.argv
    assert argv[:2] == ("/opt/venv/bin/jupyter", "lab")
    assert "--ServerApp.allow_remote_access=False" in argv
    assert "--ServerApp.ip=0.0.0.0" in argv and "--ServerApp.port=8888" in argv
    assert "--ServerApp.root_dir=/workspace" in argv
    assert not any("token" in a.lower() for a in argv)
    assert found["ssh"].argv == (
        "/usr/sbin/sshd",
        "-D",
        "-e",
        "-f",
        "/home/alice/.torchrig/ssh/sshd_config",
    )
    assert found["tensorboard"].argv == (
        "/opt/venv/bin/tensorboard",
        "--logdir",
        "/workspace/runs",
        "--host",
        "0.0.0.0",
        "--port",
        "6006",
    )
    assert jupyter_argv("/v")[0] == "/v/bin/jupyter"


def test_the_supervisor_refuses_root_or_bad_settings() -> None:
    env = {"PYTHONPATH": str(SRC), "PATH": os.environ.get("PATH", ""), "TORCHRIG_USER": "root"}
    done = subprocess.run(
        [PY, "-m", "torchrig.workbench.supervise"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 64
    assert done.stderr.startswith("torchrig: ")
