"""`torchrig lab init|up|down|status|add-user|remove-user`: a GPU server for many people."""

from __future__ import annotations

import argparse
from pathlib import Path

from torchrig.cli.common import add_workbench_options, progress_printer

VERBS = {
    "init": "Add a [lab] section to torchrig.toml and jupyterhub to the image's packages.",
    "up": "Build the lab image if needed and (re)start JupyterHub with the [lab] settings.",
    "down": "Stop the hub and every user's server; homes, keys and passwords stay.",
    "status": "The hub, each user's server, and who holds which GPU since when.",
    "add-user": "Add a user (a [[lab.users]] table): name, SSH keys, GPUs, memory, CPUs.",
    "remove-user": "Remove a user and stop their server; their home volume stays unless --purge.",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="lab_verb", metavar="LAB_VERB", parser_class=type(parser))
    sub.required = True
    for verb, text in VERBS.items():
        verb_parser = sub.add_parser(verb, help=text, description=text)
        add_workbench_options(verb_parser)
        if verb == "add-user":
            verb_parser.add_argument("name", help="login name (lower case, digits, _ and -)")
            verb_parser.add_argument(
                "--key",
                action="append",
                default=[],
                metavar="KEY",
                help="a .pub file or a public key line (repeat for several)",
            )
            verb_parser.add_argument("--gpus", type=int, help="whole GPUs (default: lab.gpus)")
            verb_parser.add_argument(
                "--memory", help='memory limit like "16g" (default: lab.memory)'
            )
            verb_parser.add_argument("--cpus", type=float, help="CPU limit (default: lab.cpus)")
        if verb == "remove-user":
            verb_parser.add_argument("name")
            verb_parser.add_argument(
                "--purge", action="store_true", help="also delete their home volume (their files)"
            )


def run(args: argparse.Namespace) -> int:
    verb = args.lab_verb
    if verb == "init":
        return _init(args)
    if verb == "up":
        return _up(args)
    if verb == "down":
        return _down(args)
    if verb == "status":
        return _status(args)
    if verb == "add-user":
        return _add_user(args)
    return _remove_user(args)


def _write(path: Path, text: str) -> None:
    from torchrig.fsutil import write_atomically

    mode = path.stat().st_mode & 0o7777
    write_atomically(path, text)
    path.chmod(mode)


def _init(args: argparse.Namespace) -> int:
    from torchrig.lab.users import init_text

    path = Path(args.spec)
    text, changed = init_text(path.read_text(), path)
    if changed:
        _write(path, text)
    print("; ".join(changed) + f" in {path}" if changed else f"{path} has a [lab] section already")
    if changed:
        print(
            "next: torchrig lab add-user NAME --key NAME.pub, then torchrig lock && torchrig lab up"
        )
    return 0


def _up(args: argparse.Namespace) -> int:
    from torchrig.cli.common import session_from
    from torchrig.cli.output import print_json
    from torchrig.lab.lab import lab_up

    session = session_from(args)
    done = lab_up(session, args.engine, progress_printer(args))
    if args.json:
        print_json(done.__dict__)
        return 0
    print(
        f"lab {session.spec.project.name} is up: {done.url} ({len(done.users)} users, {done.image})"
    )
    for user, password in done.passwords.items():
        print(
            f"  first password of {user}: {password} (shown once; "
            "they change it at /hub/change-password)"
        )
    return 0


def _down(args: argparse.Namespace) -> int:
    from torchrig.cli.common import load_spec_from
    from torchrig.cli.output import print_json
    from torchrig.lab.lab import lab_down

    spec, _ = load_spec_from(args)
    done = lab_down(spec, progress_printer(args))
    if args.json:
        print_json(done)
    else:
        stopped = len(done["servers_stopped"])
        hub = "hub stopped" if done["hub_was_running"] else "the hub was not running"
        print(f"{hub}; {stopped} user server(s) stopped; homes kept")
    return 0


def _status(args: argparse.Namespace) -> int:
    from torchrig.cli.common import host_facts, load_spec_from
    from torchrig.cli.output import print_json
    from torchrig.lab.lab import lab_status

    spec, _ = load_spec_from(args)
    found = lab_status(spec, host_facts(args, engines=False))
    if args.json:
        print_json(found)
        return 0
    print(f"lab {found['lab']}: hub {found['hub']} at {found['url']} ({found['gpu_policy']} GPUs)")
    for user in found["users"]:
        since = f" since {user['since']}" if user["since"] else ""
        print(f"  {user['name']:<16} {user['server']}{since}  {user['ssh']}")
    for gpu in found["gpus"]:
        holders = ", ".join(f"{h['user']} since {h['since']}" for h in gpu["holders"]) or "free"
        util = gpu["utilisation_pct"]
        print(f"  {gpu['gpu']}: {holders}" + (f" ({util}% busy)" if util is not None else ""))
    for place, waiting in enumerate(found["queue"], 1):
        print(f"  queue {place}: {waiting['user']} wants {waiting['gpus']} GPU(s)")
    return 0


def _apply_if_up(args: argparse.Namespace) -> None:
    """A running hub learns the change now (it restarts; users' servers keep running)."""
    from torchrig.cli.common import session_from
    from torchrig.lab import hub
    from torchrig.lab.lab import lab_up
    from torchrig.lab.state import lab_state

    session = session_from(args)
    if hub.hub_pid(lab_state(session.spec.project.name)) is None:
        return
    lab_up(session, args.engine, progress_printer(args))


def _add_user(args: argparse.Namespace) -> int:
    from torchrig.cli.common import host_facts
    from torchrig.cli.output import print_json
    from torchrig.lab.lab import gpu_pool
    from torchrig.lab.users import add_user_text, read_keys

    path = Path(args.spec)
    keys = read_keys(args.key)
    pool = gpu_pool(host_facts(args, engines=False))
    text, user = add_user_text(
        path.read_text(),
        path,
        args.name,
        keys=keys,
        gpus=args.gpus,
        memory=args.memory,
        cpus=args.cpus,
        gpus_on_host=len(pool),
    )
    _write(path, text)
    _apply_if_up(args)
    if args.json:
        print_json({"user": user.name, "uid": user.uid, "ssh_port": user.ssh_port})
    else:
        print(f"added {user.name} (uid {user.uid}, ssh port {user.ssh_port}) to {path}")
    return 0


def _remove_user(args: argparse.Namespace) -> int:
    from torchrig.cli.common import session_from
    from torchrig.cli.output import print_json
    from torchrig.lab.lab import remove_user

    session = session_from(args)
    done = remove_user(session, args.name, purge=args.purge, progress=progress_printer(args))
    path = Path(args.spec)
    _write(path, done.pop("text"))
    _apply_if_up(args)
    if args.json:
        print_json(done)
    else:
        kept = "deleted" if args.purge else "kept (--purge deletes it)"
        print(f"removed {args.name}; their home volume {done['volume']} is {kept}")
    return 0
