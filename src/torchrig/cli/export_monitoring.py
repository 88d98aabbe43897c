"""`torchrig export prometheus|grafana`: the scrape config for the workbench's metrics
endpoint, and the Grafana dashboard with its provisioning files.

The endpoint's address is the Plan's (`plan.up.ports["metrics"]`, the 127.0.0.1 port `up`
publishes); no image needs to exist, since nothing here runs it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from torchrig.errors import UsageError

FORMATS = ("prometheus", "grafana")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `export prometheus|grafana` (written after the format, like the others)."""
    parser.add_argument(
        "--interval", type=int, default=5, metavar="S", help="prometheus: seconds between scrapes"
    )
    parser.add_argument(
        "--target",
        action="append",
        metavar="HOST:PORT",
        help="prometheus: one more metrics endpoint to scrape (repeatable)",
    )
    parser.add_argument(
        "--prometheus-url",
        default="http://localhost:9090",
        metavar="URL",
        help="grafana: where Grafana reaches Prometheus (default: http://localhost:9090)",
    )


def metrics_address(args: argparse.Namespace) -> str:
    from torchrig.cli.common import session_from
    from torchrig.launch.local import local_facts

    session = session_from(args)
    plan = session.plan(local_facts(session, base=None, with_keys=False, image_files=False))
    address = plan.up.ports.get("metrics")
    if not address:
        raise UsageError(
            "the metrics service is off in this spec: there is nothing to scrape",
            "set [services.metrics] enabled = true in torchrig.toml",
        )
    if not address.rsplit(":", 1)[-1].isdigit():
        raise UsageError(
            "services.metrics.port is 0 (a free port at every `up`): Prometheus needs a fixed one",
            "set [services.metrics] port = 9400 (or another free port) in torchrig.toml",
        )
    return address


def run(args: argparse.Namespace) -> int:
    from torchrig.fsutil import write_atomically
    from torchrig.monitor.targets import Target, grafana_files, prometheus_config

    if args.job:
        raise UsageError(
            f"export {args.format} takes no command ({' '.join(args.job)})",
            "drop it: the files describe the metrics endpoint, not a job",
        )
    if args.interval < 1:
        raise UsageError(f"--interval {args.interval} is not a number of seconds", "give 1 or more")
    for address in args.target or []:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise UsageError(
                f"--target {address!r} is not HOST:PORT", "e.g. --target 10.0.0.7:9400"
            )
    if args.format == "prometheus":
        extra = [Target(a) for a in args.target or []]
        text = prometheus_config(
            [Target(metrics_address(args), (("workbench", args.spec.resolve().parent.name),)),
             *extra],
            interval_s=args.interval,
        )  # fmt: skip
        if args.stdout:
            print(text, end="")
            return 0
        target = args.output or Path("prometheus.yml")
        write_atomically(target, text)
        print(f"wrote {target} (prometheus --config.file={target})")
        return 0
    files = grafana_files(args.prometheus_url)
    if args.stdout:
        print(files["grafana/dashboards/torchrig.json"], end="")
        return 0
    root = args.output or Path()
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, text)
        print(f"wrote {path}")
    return 0
