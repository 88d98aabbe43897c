"""What an env file (torchrig.env, --env-file) may set: anything but what steers root.

The env file's variables are the container's environment, so they reach every process in
it, root's too: tini (PID 1), the entrypoint's first steps, the health check's `sh -c` and
setpriv before it drops to the user. Python's `-I` makes root's Python ignore PYTHON*, but
the dynamic loader and glibc read their own variables before any of our code runs: an
`LD_PRELOAD=/workspace/x.so` would load a library the user wrote into a root process. The
names refused are glibc's own list of variables it strips for setuid programs
(UNSECURE_ENVVARS, sysdeps/generic/unsecvars.h) with every LD_* name, the shells' start-up
files, and torchrig's own TORCHRIG_* settings (the entrypoint reads them as root).
"""

from __future__ import annotations

from torchrig.errors import UsageError

# glibc sysdeps/generic/unsecvars.h, UNSECURE_ENVVARS (glibc 2.36–2.41), LD_* as a prefix.
GLIBC_UNSECURE = frozenset(
    {
        "GCONV_PATH",
        "GETCONF_DIR",
        "GLIBC_TUNABLES",
        "HOSTALIASES",
        "LOCALDOMAIN",
        "LOCPATH",
        "MALLOC_TRACE",
        "NIS_PATH",
        "NLSPATH",
        "RESOLV_HOST_CONF",
        "RES_OPTIONS",
        "TMPDIR",
        "TZDIR",
    }
)
SHELL_STARTUP = frozenset({"BASH_ENV", "ENV"})
REFUSED_PREFIXES = ("LD_", "TORCHRIG_")


def refused_reason(name: str) -> str | None:
    """Why `name` may not come from an env file, or None when it may."""
    if name.startswith("LD_"):
        return "the dynamic loader reads it in every process, root's included"
    if name.startswith("TORCHRIG_"):
        return "torchrig's own settings, read by the entrypoint as root, come from the spec"
    if name in GLIBC_UNSECURE:
        return "glibc reads it in every process, root's included (it is on glibc's unsecure list)"
    if name in SHELL_STARTUP:
        return "a shell runs that file at start, root's health check shell included"
    return None


def check_env_file(text: str, shown: str) -> None:
    """Refuse (one UsageError line) a variable that would steer root's processes.

    Docker's and Podman's format: `NAME=value` or `NAME` (taken from the caller's
    environment) per line; blank lines and lines starting with # are skipped.
    """
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip()
        if not stripped or stripped.startswith("#"):
            continue
        name = stripped.split("=", 1)[0].strip()
        why = refused_reason(name)
        if why is not None:
            raise UsageError(
                f"env file {shown}, line {number}: {name} may not be set there ({why})",
                f"remove {name} from the env file; set what your programs need in your "
                "code or shell inside the workbench",
            )
