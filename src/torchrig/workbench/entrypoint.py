"""The container's entrypoint: first-start setup as root, then the supervisor as the user.

    ENTRYPOINT ["/usr/bin/tini", "-g", "--", "/opt/venv/bin/python", "-m",
                "torchrig.workbench.entrypoint"]

As root (as little as possible):
  1. check TORCHRIG_* (exit 64 with one line on a bad value) and the programs the enabled
     services need (exit 78);
  2. keep only CHOWN, SETGID, SETUID and one of DAC_READ_SEARCH/DAC_OVERRIDE (permitted),
     only CHOWN and that one in effect (privileges.py);
  3. create the user and group with the host's UID/GID (accounts.py);
  4. read the authorized keys file (it may be readable by root only);
  5. write /etc/profile.d/torchrig.sh: the image's PATH and friends for ssh login shells;
  6. last, the only step in a folder the user can write: chown the home folder itself and
     torchrig's own entries in it, by descriptor, never through a link (home.py);
  7. drop to the user for good (privileges.py).

Python runs with -I and cwd / (the Dockerfile): nothing root imports comes from a folder
the user can write, and the environment's PYTHON* variables are ignored.
As the user:
  8. folders and modes; authorized_keys from the keys read in 4; host keys and the Jupyter
     token, each made once per state volume; sshd_config, checked with `sshd -t` (exit 78);
  9. preflight notes (/dev/shm, NVIDIA driver), never fatal;
  10. exec the supervisor; or, given `-- CMD …`, exec CMD instead (a job container).

Nothing from the environment is written anywhere except the allowlisted, non-secret
variables in SESSION_ENV; the env file's values (HF_TOKEN, …) stay in memory.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from torchrig.workbench import (
    accounts,
    caches,
    hub_mode,
    jupyter,
    preflight,
    session_env,
    sshd,
)
from torchrig.workbench.env import EX_CONFIG, EX_SOFTWARE, EX_USAGE, EnvError, Settings, parse
from torchrig.workbench.home import HomeError, Layout, hand_over, lay_out, write_private
from torchrig.workbench.privileges import (
    StillPrivileged,
    drop,
    limit_capabilities,
    missing_capabilities,
)
from torchrig.workbench.supervise import VENV, WORKSPACE, prefixed, user_environment

# Variables ssh sessions get (sshd starts them with a fresh environment): the image's own,
# never secrets. An env file's values reach Jupyter, TensorBoard and `torchrig exec/shell`.
SESSION_ENV = (
    "PATH",
    "LANG",
    "LC_ALL",
    "TZ",
    "VIRTUAL_ENV",
    "CUDA_HOME",
    "LD_LIBRARY_PATH",
    "NVIDIA_VISIBLE_DEVICES",
    "NVIDIA_DRIVER_CAPABILITIES",
    "CUDA_VISIBLE_DEVICES",
    "PIP_CONSTRAINT",
    "PIP_DISABLE_PIP_VERSION_CHECK",
    "PYTHONUNBUFFERED",
    # The shared Hugging Face cache and the spec's mirrors (launch/mounts.py): not secrets.
    "HF_HUB_CACHE",
    "HF_XET_CACHE",
    "HF_DATASETS_CACHE",
    "HF_ENDPOINT",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_TRUSTED_HOST",
)
PROFILE = Path("/etc/profile.d/torchrig.sh")
MAX_KEYS_BYTES = 1 << 20


class SetupError(RuntimeError):
    def __init__(self, message: str, code: int = EX_CONFIG) -> None:
        super().__init__(message)
        self.code = code


# What root needs here: chown the home (CHOWN), become the user (SETGID, SETUID). KILL is
# tini's: as PID 1 it forwards `docker stop`'s SIGTERM to processes of another UID, which
# root may only do with CAP_KILL; without it tini dies and nothing stops gracefully.
NEEDED_CAPABILITIES = ("CHOWN", "SETGID", "SETUID")
TINI_CAPABILITY = "KILL"
# To look into a state volume made with another UID (0700 folders) and to read a keys file
# only its host owner may read: DAC_READ_SEARCH (read only) where the run plan gives it,
# else DAC_OVERRIDE (a plain `docker run`'s default set). FOWNER, KILL and every other
# capability are dropped from the entrypoint at once.
READ_CAPABILITIES = ("DAC_READ_SEARCH", "DAC_OVERRIDE")


def say(line: str) -> None:
    print(prefixed(line), flush=True)


def warn(line: str) -> None:
    print(prefixed(f"warning: {line}"), file=sys.stderr, flush=True)


def check_capabilities(status: Path = Path("/proc/self/status")) -> None:
    missing = missing_capabilities(NEEDED_CAPABILITIES, status)
    if missing:
        raise SetupError(
            f"the container lacks capabilities {', '.join(missing)}: the entrypoint needs them "
            "to create the user and drop to it (docker run --cap-add " + ",".join(missing) + ")"
        )
    if missing_capabilities((TINI_CAPABILITY,), status):
        warn(
            "the container lacks CAP_KILL: tini (PID 1) cannot pass `docker stop`'s SIGTERM "
            "on to the workbench user's processes, so a stop kills them without a graceful "
            "shutdown (docker run --cap-add KILL)"
        )


def required_programs(services: tuple[str, ...], venv: str = VENV) -> dict[str, str]:
    need = {}
    if "jupyter" in services:
        need[f"{venv}/bin/jupyter"] = "jupyter"
    if "ssh" in services:
        need[sshd.SSHD] = "ssh"
        need[sshd.SSH_KEYGEN] = "ssh"
    if "tensorboard" in services:
        need[f"{venv}/bin/tensorboard"] = "tensorboard"
    if "metrics" in services:
        need[f"{venv}/bin/python"] = "metrics"
    return need


def check_programs(services: tuple[str, ...], root: Path = Path("/")) -> None:
    for program, service in required_programs(services).items():
        path = root / program.lstrip("/")
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise SetupError(
                f"{service} is enabled (TORCHRIG_SERVICES) but {program} is not in this image; "
                f"rebuild it with `torchrig build`, or turn {service} off in torchrig.toml"
            )


def check_hub_program(root: Path = Path("/")) -> None:
    """A lab's server needs jupyterhub-singleuser, which only a lab image has."""
    program = hub_mode.singleuser_program(VENV)
    path = root / program.lstrip("/")
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise SetupError(
            f"JupyterHub spawned this workbench but {program} is not in its image: add "
            "jupyterhub to [python] packages (`torchrig lab init` does) and `torchrig lab up`"
        )


def session_environment(environ: Mapping[str, str]) -> dict[str, str]:
    env = {k: environ[k] for k in SESSION_ENV if k in environ and "\n" not in environ[k]}
    path = env.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    if f"{VENV}/bin" not in path.split(":"):
        path = f"{VENV}/bin:{path}"
    env["PATH"] = path
    return env


def render_profile(env: Mapping[str, str]) -> str:
    lines = [
        "# Written by torchrig at each start: the image's environment for login shells",
        "# (ssh sessions; /etc/profile resets PATH). Secrets are never written here.",
        *(f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())),
        *session_env.profile_lines(),
    ]
    return "\n".join(lines) + "\n"


def read_keys(path: Path) -> str | None:
    """The authorized keys file's text, None when there is none."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_KEYS_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SetupError(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) > MAX_KEYS_BYTES:
        raise SetupError(f"{path} is larger than 1 MiB: that is not a list of public keys")
    return raw.decode("utf-8", "replace")


# --- the two phases --------------------------------------------------------------------------


def read_capability(status: Path = Path("/proc/self/status")) -> tuple[str, ...]:
    """The one capability root uses to read: DAC_READ_SEARCH if held, else DAC_OVERRIDE."""
    for name in READ_CAPABILITIES:
        if not missing_capabilities((name,), status):
            return (name,)
    return ()


def as_root(
    settings: Settings,
    environ: Mapping[str, str],
    root: Path = Path("/"),
    *,
    limit: bool = True,
) -> str | None:
    """Steps 2–6; returns the authorized keys text read in step 4.

    limit: step 2 (unit tests run this in a folder, without touching their own process).
    """
    if limit:
        reading = read_capability()
        limit_capabilities(
            permitted=(*NEEDED_CAPABILITIES, *reading), effective=("CHOWN", *reading)
        )
    for note in accounts.ensure_account(
        settings.user, settings.uid, settings.gid, root=root, home=settings.home
    ):
        say(note)
    keys = read_keys(settings.authorized_keys_file) if "ssh" in settings.services else None
    profile = root / PROFILE.relative_to("/")
    if profile.parent.is_dir():
        accounts.replace_file(profile, render_profile(session_environment(environ)))
    for note in caches.prepare(environ, settings.uid, settings.gid, root):
        say(note)
    # Last: the one folder of root's work the user can write (by descriptor, no links).
    layout = Layout(root / settings.home.relative_to("/"))
    changed = hand_over(layout, settings.uid, settings.gid)
    if changed:
        say(f"gave {changed} of torchrig's entries in {settings.home} to uid {settings.uid}")
    return keys


def as_user(
    settings: Settings,
    environ: Mapping[str, str],
    keys: str | None,
    layout: Layout,
    *,
    sshd_path: str = sshd.SSHD,
    keygen: str = sshd.SSH_KEYGEN,
) -> None:
    """Steps 7–8 (the caller is the user by now)."""
    os.umask(0o022)
    lay_out(layout)
    if "ssh" in settings.services:
        if keys is None:
            warn(
                f"no {settings.authorized_keys_file}: nobody can log in over ssh "
                "(torchrig up mounts your public keys there)"
            )
        text, problems = sshd.filter_authorized_keys(keys or "")
        for problem in problems:
            warn(problem)
        write_private(layout.authorized_keys, text)
        say(f"ssh: {sshd.count_keys(text)} authorized key(s) for {settings.user}")
        made = sshd.ensure_host_keys(layout.ssh_state, keygen)
        for kind in sshd.HOST_KEY_KINDS:
            pub = layout.host_key(kind).with_name(layout.host_key(kind).name + ".pub")
            state = "made now" if kind in made else "kept"
            say(f"ssh: host key {kind} {sshd.fingerprint(pub, keygen)} ({state})")
        version = sshd.installed_version(sshd_path)
        config = sshd.render_config(
            sshd.SshdSettings(
                user=settings.user,
                state_dir=layout.ssh_state,
                per_source_penalties=sshd.supports_penalties(version),
                environment=session_environment(environ),
                version=version,
            )
        )
        write_private(layout.sshd_config, config)
        rejected = sshd.check_config(layout.sshd_config, sshd_path)
        if rejected:
            raise SetupError(f"sshd rejects {layout.sshd_config}: {rejected}")
    if "ssh" in settings.services:
        extra = session_env.carried(environ, session_environment(environ))
        if session_env.write(extra, settings.uid) is None:
            warn(
                f"cannot write {session_env.folder(settings.uid)}: ssh login shells get the "
                "image's variables but not the env file's"
            )
        else:
            say(f"ssh: {len(extra)} more variable(s) for login shells (on the /dev/shm tmpfs)")
    if "jupyter" in settings.services:
        _token, made_token = jupyter.ensure_token(layout.token)
        where = f"~/.torchrig/jupyter/{layout.token.name}"
        say(f"jupyter: token {'made' if made_token else 'kept'} ({where}, mode 0600)")
    for note in preflight.notes():
        print(note, file=sys.stderr, flush=True)


def run(environ: Mapping[str, str], command: Sequence[str] = ()) -> int:
    """Set up, then run the supervisor; or `command` instead (a `torchrig run --fresh` job)."""
    settings = parse(environ)
    check_programs(settings.services)
    if "jupyter" in settings.services and hub_mode.spawned_by_hub(environ):
        check_hub_program()
    layout = Layout(settings.home)
    if os.geteuid() == 0:
        check_capabilities()
        keys = as_root(settings, environ)
        # SETGID and SETUID come back into effect (from the permitted set) for this only.
        limit_capabilities(permitted=NEEDED_CAPABILITIES, effective=NEEDED_CAPABILITIES)
        drop(settings.uid, settings.gid)
    elif os.getuid() == settings.uid:
        # Started as the user already (docker run --user): nothing to create or chown.
        warn("started without root: the user and its home are taken as they are")
        keys = read_keys(settings.authorized_keys_file) if "ssh" in settings.services else None
    else:
        raise SetupError(
            f"the entrypoint runs as uid {os.getuid()}: it must start as root (to create the "
            f"user) or as TORCHRIG_UID ({settings.uid})",
            EX_USAGE,
        )
    as_user(settings, environ, keys, layout)
    os.chdir(WORKSPACE if Path(WORKSPACE).is_dir() else settings.home)
    env = user_environment(settings, environ)
    if command:
        # As the user, in the workbench's environment, in place of the supervisor: the
        # command becomes tini's child and gets the stop signal tini forwards.
        try:
            os.execvpe(command[0], list(command), env)
        except OSError as exc:
            raise SetupError(f"cannot run {command[0]}: {exc.strerror}", EX_SOFTWARE) from None
    # -I: a json.py of the user's in /workspace (the cwd) must not replace the stdlib's.
    argv = [sys.executable, "-I", "-m", "torchrig.workbench.supervise"]
    os.execve(sys.executable, argv, env)
    return EX_SOFTWARE  # not reached


def job_command(argv: Sequence[str]) -> list[str]:
    """`entrypoint -- CMD …` runs CMD instead of the services (`torchrig run --fresh`).

    Only after `--`: a CMD inherited from a base image (["/bin/bash"]) must never replace
    the supervisor of a workbench.
    """
    return list(argv[1:]) if argv[:1] == ["--"] else []


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(os.environ, job_command(sys.argv[1:] if argv is None else argv))
    except EnvError as exc:
        print(f"torchrig: {exc}", file=sys.stderr, flush=True)
        return EX_USAGE
    except SetupError as exc:
        print(f"torchrig: {exc}", file=sys.stderr, flush=True)
        return exc.code
    except (HomeError, StillPrivileged) as exc:
        print(f"torchrig: {exc}", file=sys.stderr, flush=True)
        return EX_CONFIG
    except Exception as exc:
        if os.environ.get("TORCHRIG_DEBUG") == "1":
            raise
        print(
            f"torchrig: setup failed: {type(exc).__name__}: {exc} "
            "(TORCHRIG_DEBUG=1 shows the traceback)",
            file=sys.stderr,
            flush=True,
        )
        return EX_SOFTWARE


if __name__ == "__main__":
    sys.exit(main())
