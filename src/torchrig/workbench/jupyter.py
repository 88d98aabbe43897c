"""JupyterLab's token: made once per state volume, kept in a 0600 file, never on a command line.

JupyterLab reads it through JUPYTER_TOKEN_FILE. It reads the file as it is (no strip), so the
file has no trailing newline. Given a token this way, jupyter_server does not print it: the
URL it logs shows `?token=...`.
"""

from __future__ import annotations

import re
import secrets
import stat
from pathlib import Path

from torchrig.workbench.home import write_private

TOKEN_BYTES = 32  # 256 bits; SECURITY asks for >= 192
MIN_HEX = 48
TOKEN_RE = re.compile(rf"[0-9a-f]{{{MIN_HEX},}}")


def new_token() -> str:
    return secrets.token_hex(TOKEN_BYTES)


def ensure_token(path: Path) -> tuple[str, bool]:
    """(token, made now). A missing, weak or garbled token file is replaced."""
    try:
        current = path.read_text(encoding="ascii").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        current = ""
    if TOKEN_RE.fullmatch(current):
        if path.read_bytes() != current.encode() or stat.S_IMODE(path.stat().st_mode) != 0o600:
            write_private(path, current)
        return current, False
    token = new_token()
    write_private(path, token)
    return token, True
