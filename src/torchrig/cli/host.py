"""`torchrig host`: report this machine's facts, or show facts saved on another one.

`torchrig host --json > host.json` on a GPU server, then `--host host.json` on any verb that
depends on the host plans for that server from a laptop or CI.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from torchrig.cli.common import add_host_option, add_json_option, host_facts
from torchrig.units import human_bytes

if TYPE_CHECKING:
    import argparse
    from pathlib import Path

    from rich.console import Console

    from torchrig.host.facts import Engine, HostFacts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_host_option(parser)
    add_json_option(parser)


def run(args: argparse.Namespace) -> int:
    from torchrig.cli.output import console

    facts = host_facts(args)  # probes this machine, or loads --host FILE
    if args.json:
        sys.stdout.write(facts.to_json() + "\n")
        return 0
    render(facts, console(), source=args.host)
    return 0


def render(facts: HostFacts, out: Console, source: Path | None = None) -> None:
    """A short report a person reads top to bottom; the JSON has every detail."""
    from rich.markup import escape
    from rich.table import Table

    from torchrig.host.probe import DOCKER_DEFAULT_SHM_BYTES, NO_ENGINE, NO_GPU

    s = facts.system
    when = facts.collected_at or "at an unknown time"
    where = (
        f"facts saved in {escape(str(source))}, collected {when}" if source else f"probed {when}"
    )
    out.print(f"[bold]Host {escape(facts.hostname or '?')}[/] ({where})")
    out.print(
        f"  System   {escape(s.os or 'unknown OS')}, kernel {escape(s.kernel or '?')}"
        + (f", glibc {escape(s.glibc)}" if s.glibc else "")
    )
    memory = human_bytes(s.memory_bytes, binary=True)
    out.print(f"  Hardware {escape(s.arch)}, {s.cpus} CPUs, {memory} RAM")
    out.print(f"  User     {escape(s.user or '?')} (uid {s.uid}, gid {s.gid})")

    shown_notes = {n for n in facts.notes if n.startswith((NO_GPU, NO_ENGINE))}
    if facts.driver:
        cuda = f", supports CUDA up to {facts.driver.cuda}" if facts.driver.cuda else ""
        out.print(
            f"  Driver   NVIDIA {escape(facts.driver.version)}{escape(cuda)} "
            f"(from {facts.driver.source})"
        )
    if facts.gpus:
        table = Table(box=None, pad_edge=False, padding=(0, 1))
        for column in ("#", "GPU", "Memory", "CC", "MIG", "PCI bus"):
            table.add_column(column, justify="right" if column in ("#", "Memory") else "left")
        for gpu in facts.gpus:
            table.add_row(
                str(gpu.index),
                escape(gpu.name),
                human_bytes(gpu.memory_mib * 2**20, binary=True)
                if gpu.memory_mib is not None
                else "?",
                gpu.cc or "?",
                {True: "on", False: "off", None: "?"}[gpu.mig],
                escape(gpu.pci_bus_id),
            )
        out.print()
        out.print(table)
    else:
        reason = next((n for n in facts.notes if n.startswith(NO_GPU)), None)
        out.print(f"[yellow]{escape(reason or NO_GPU + ' (no reason recorded)')}[/]")

    out.print()
    out.print("[bold]Container engines[/]")
    if not facts.engines:
        out.print("  not probed")
    for engine in facts.engines:
        out.print(f"  {engine.name:<7} {escape(_engine_line(engine))}")
        if engine.reachable:
            out.print(f"          {escape(_engine_gpu_line(engine))}")
    if any(n.startswith(NO_ENGINE) for n in facts.notes):
        out.print(f"  [yellow]{NO_ENGINE}: torchrig needs Docker or Podman to build and run[/]")

    out.print()
    out.print("[bold]Limits[/]")
    shm = human_bytes(s.shm_bytes, binary=True) if s.shm_bytes is not None else "unknown"
    memlock = {None: "unknown", -1: "unlimited"}.get(s.memlock_bytes) or human_bytes(
        s.memlock_bytes, binary=True
    )
    out.print(f"  /dev/shm {shm}, memlock {memlock} (soft limit)")
    if s.shm_bytes is not None and s.shm_bytes <= DOCKER_DEFAULT_SHM_BYTES:
        out.print(
            f"[yellow]warning:[/] /dev/shm is only {shm} (Docker's default): PyTorch DataLoader "
            "workers die with 'Bus error' and NCCL fails; run containers with --shm-size=8g"
        )

    other = [n for n in facts.notes if n not in shown_notes]
    if other:
        out.print()
        out.print("[bold]Notes[/]")
        for note in other:
            out.print(f"  - {escape(note)}")


def _engine_line(engine: Engine) -> str:
    if not engine.path:
        return engine.error or "not installed"
    client = f"client {engine.client_version}" if engine.client_version else "client ?"
    if not engine.reachable:
        return f"{engine.path}, {client}, not reachable: {engine.error or 'no answer'}"
    server = ""
    if engine.server_version and engine.server_version != engine.client_version:
        server = f", server {engine.server_version}"
    mode = {True: "rootless", False: "rootful", None: "rootless unknown"}[engine.rootless]
    return f"{engine.path}, {client}{server}, answers, {mode}"


def _engine_gpu_line(engine: Engine) -> str:
    parts = []
    if engine.name == "docker":
        parts.append(f"NVIDIA runtime {'yes' if engine.nvidia_runtime else 'no'}")
    parts.append(f"CDI devices {', '.join(engine.cdi_devices) or 'none'}")
    if engine.storage_path:
        free = engine.storage_free_bytes
        parts.append(
            f"storage {engine.storage_path}"
            + (
                f" ({human_bytes(free, binary=True)} free)"
                if free is not None
                else " (free space unknown)"
            )
        )
    return "; ".join(parts)
