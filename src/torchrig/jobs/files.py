"""The on-disk format of a job, shared by the in-image runner and the host (stdlib only).

    <workspace>/.torchrig/jobs/<job-id>/
        job.json      what runs: id, command, started, pid/pgid in the container, gpus,
                      container, status ("running" until the runner writes the end)
        output.log    the job's stdout and stderr, as written
        exit.json     how it ended (returncode or signal, ended, seconds); written once,
                      atomically, when it ends: its presence is what "ended" means

The workspace is bind-mounted at /workspace, so the host reads these files directly: logs,
states and exit codes need no engine call, and survive the container.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

JOBS_DIR = ".torchrig/jobs"
JOB_FILE = "job.json"
EXIT_FILE = "exit.json"
LOG_FILE = "output.log"
WORKSPACE = "/workspace"


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Whole or absent: a temp file beside it, fsync, rename (readers never see half)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).chmod(0o644)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict[str, Any] | None:
    """The record, or None when it is not there (yet) or is not a JSON object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
