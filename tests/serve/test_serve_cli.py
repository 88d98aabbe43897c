"""`torchrig serve`'s refusals before anything loads: one line, a documented exit code."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

from tests.serve.conftest import free_port, torchrig


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr
    return lines[0]


def test_no_auth_off_loopback_is_refused(text_run: Path) -> None:
    done = torchrig("serve", str(text_run), "--host", "0.0.0.0", "--no-auth")
    assert done.returncode == 2 and "would let anyone" in _one_line(done.stderr)


def test_a_port_in_use_is_exit_4(text_run: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = torchrig("serve", str(text_run), "--port", str(port), "--no-auth")
    assert done.returncode == 4 and f"cannot listen on 127.0.0.1:{port}" in _one_line(done.stderr)


def test_no_model_and_a_short_token_are_exit_2(tmp_path: Path, text_run: Path) -> None:
    empty = torchrig("serve", str(tmp_path), "--no-auth")
    assert empty.returncode == 2 and "holds no trained model" in _one_line(empty.stderr)
    short = tmp_path / "token"
    short.write_text("abc\n")
    port = str(free_port())
    weak = torchrig("serve", str(text_run), "--token-file", str(short), "--port", port)
    assert weak.returncode == 2 and "shorter than 16" in _one_line(weak.stderr)


def test_a_missing_token_file_is_made_private(tmp_path: Path, text_run: Path) -> None:
    from torchrig.cli.serve import read_or_make_token

    path = tmp_path / "conf" / "serve.token"
    token = read_or_make_token(path)
    assert len(token) >= 32 and path.read_text().strip() == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_or_make_token(path) == token  # the same token next time
