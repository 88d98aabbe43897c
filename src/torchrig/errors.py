"""Every error torchrig reports to a person, and the exit code each one maps to.

    TorchrigError                    exit 1   base: one line of what is wrong and how to fix it
    ├── CheckFailed                  exit 1   a check ran and found a problem (lock --check, doctor)
    ├── UsageError                   exit 2   the command line or an input file is wrong
    │   └── SpecError                exit 2   torchrig.toml is broken, mistyped or impossible
    ├── ResolutionError              exit 3   no PyTorch build fits this spec on this host
    ├── HostError                    exit 4   the machine lacks something (engine, driver, disk)
    │   └── DiskError                exit 4   a write or read failed: disk full, quota, I/O error
    └── ToolError                    exit 5   an external tool (uv, the engine) failed

Exit 130 means interrupted (Ctrl-C). An OSError escaping with a disk errno (ENOSPC, EDQUOT,
EIO, EROFS) is mapped to exit 4 like DiskError. Anything else escaping is a bug: exit 70 with
a traceback hint. The CLI's error boundary (`torchrig.cli.main`) is the only place that
turns these into exit codes; the library raises, it never exits.
"""

from __future__ import annotations

import errno


class TorchrigError(Exception):
    """Base class: `message` is one line saying what is wrong; `fix` says what to do."""

    exit_code = 1

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def one_line(self) -> str:
        return f"{self.message} — {self.fix}" if self.fix else self.message


class CheckFailed(TorchrigError):
    exit_code = 1


class UsageError(TorchrigError):
    exit_code = 2


class SpecError(UsageError):
    """A problem in torchrig.toml, located by key path and, where known, line."""

    def __init__(
        self,
        message: str,
        fix: str | None = None,
        *,
        path: str | None = None,
        key: str | None = None,
        line: int | None = None,
    ) -> None:
        where = path or "torchrig.toml"
        if line is not None:
            where += f":{line}"
        if key:
            where += f": {key}"
        super().__init__(f"{where}: {message}", fix)
        self.path = path
        self.key = key
        self.line = line


class ResolutionError(TorchrigError):
    exit_code = 3


class HostError(TorchrigError):
    exit_code = 4


class DiskError(HostError):
    """The disk refused: full, over quota, read-only or failing. Names the path."""

    exit_code = 4


# errno values that mean "the disk", not "torchrig": the boundary maps them to exit 4.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS})


def disk_error(exc: OSError, path: object) -> DiskError:
    """One line for a disk failure at `path`, with what to do about it."""
    reason = exc.strerror or type(exc).__name__
    fixes = {
        errno.ENOSPC: "free space on that disk (see `df -h`) and run again",
        errno.EDQUOT: "free space within your quota (see `quota -s`) and run again",
        errno.EROFS: "that file system is read-only: write somewhere else",
    }
    return DiskError(
        f"cannot write {path}: {reason}",
        fixes.get(exc.errno or 0, "check the disk (dmesg shows I/O errors) and run again"),
    )


class ToolError(TorchrigError):
    exit_code = 5


EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "a check found a problem (lock --check, doctor)",
    2: "bad input: command line or torchrig.toml",
    3: "no PyTorch build fits the spec on this host",
    4: "the host lacks something needed (engine, driver, port), or a disk or I/O error",
    5: "an external tool failed (uv, the container engine)",
    70: "internal error (a bug): rerun with --debug and report it",
    130: "interrupted",
}
