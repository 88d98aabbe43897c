"""Files for Prometheus and Grafana: a scrape config for the workbench's metrics endpoint
and a provisioned dashboard (`torchrig export prometheus|grafana`).

The addresses come from the caller (the CLI takes them from the Plan: the metrics port
`up` publishes on 127.0.0.1); nothing here derives a name or a port.

Grafana: a dashboard JSON in Grafana's dashboard model (schemaVersion 39), a datasource
and a dashboard provider in Grafana's provisioning format, laid out as Grafana reads them:

    grafana/provisioning/datasources/torchrig.yaml
    grafana/provisioning/dashboards/torchrig.yaml
    grafana/dashboards/torchrig.json

The GPU panels query DCGM's metric names, so the same dashboard reads NVIDIA's DCGM exporter
where a host runs one instead (docs/monitoring.md).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SCRAPE_JOB = "torchrig"
DASHBOARD_UID = "torchrig-training"
SCHEMA_VERSION = 39
DATASOURCE_UID = "torchrig-prometheus"
PROVIDER_FOLDER = "/var/lib/grafana/dashboards/torchrig"


@dataclass(frozen=True)
class Target:
    """One metrics endpoint: `address` host:port, `labels` added to its series."""

    address: str
    labels: tuple[tuple[str, str], ...] = ()


def _q(text: str) -> str:
    """A YAML scalar: JSON's double-quoted string is one."""
    return json.dumps(text)


def prometheus_config(targets: Sequence[Target], interval_s: int = 5) -> str:
    """prometheus.yml with one scrape job over the targets (a file to include or to run)."""
    lines = [
        "# Written by `torchrig export prometheus`: the workbench's metrics endpoint(s).",
        "# Run it as is (prometheus --config.file=prometheus.yml) or copy the scrape job.",
        "global:",
        f"  scrape_interval: {interval_s}s",
        f"  evaluation_interval: {interval_s}s",
        "scrape_configs:",
        f"  - job_name: {_q(SCRAPE_JOB)}",
        "    metrics_path: /metrics",
        "    static_configs:",
    ]
    for target in targets:
        lines.append(f"      - targets: [{_q(target.address)}]")
        if target.labels:
            lines.append("        labels:")
            lines += [f"          {k}: {_q(v)}" for k, v in target.labels]
    return "\n".join(lines) + "\n"


def _provisioning(purpose: str, kind: str, entry: Sequence[str]) -> str:
    """A Grafana provisioning file (apiVersion 1) with one item under `kind`; `entry` is the
    item's lines, its name first (Grafana's datasources and dashboard providers share this)."""
    name, *rest = entry
    lines = [f"# Written by `torchrig export grafana`: {purpose}", "apiVersion: 1", f"{kind}:"]
    return "\n".join([*lines, f"  - {name}", *(f"    {line}" for line in rest)]) + "\n"


def datasource_yaml(prometheus_url: str) -> str:
    return _provisioning("the Prometheus that scrapes the workbench.", "datasources", [
        "name: torchrig-prometheus", "type: prometheus", f"uid: {_q(DATASOURCE_UID)}",
        "access: proxy", f"url: {_q(prometheus_url)}", "isDefault: false",
    ])  # fmt: skip


def provider_yaml(folder: str = PROVIDER_FOLDER) -> str:
    return _provisioning("load the dashboards in that folder.", "providers", [
        "name: torchrig", "type: file", "disableDeletion: false", "allowUiUpdates: true",
        "options:", f"  path: {_q(folder)}",
    ])  # fmt: skip


# --- the dashboard ---------------------------------------------------------------------------

_DS = {"type": "prometheus", "uid": "${datasource}"}


def _panel(
    pid: int,
    title: str,
    exprs: Sequence[tuple[str, str]],
    unit: str,
    pos: tuple[int, int, int, int],
    *,
    kind: str = "timeseries",
    maxv: float | None = None,
) -> dict[str, Any]:
    x, y, w, h = pos
    defaults: dict[str, Any] = {"unit": unit}
    if maxv is not None:
        defaults.update(min=0, max=maxv)
    return {
        "id": pid,
        "type": kind,
        "title": title,
        "datasource": _DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}}
        if kind == "timeseries"
        else {},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": _DS, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(exprs)
        ],
    }


def _row(pid: int, title: str, y: int, repeat: str | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": pid, "type": "row", "title": title, "collapsed": False, "panels": [],
        "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
    }  # fmt: skip
    if repeat:
        row["repeat"] = repeat
    return row


def dashboard() -> dict[str, Any]:
    """The dashboard: a row per GPU (repeated over the `gpu` variable), then training per job."""
    g = '{Hostname=~"$host", gpu="$gpu"}'
    j = '{torchrig_job=~"$job"}'
    panels = [
        _row(1, "GPU $gpu", 0, repeat="gpu"),
        _panel(
            2,
            "Utilisation",
            [(f"DCGM_FI_DEV_GPU_UTIL{g}", "{{modelName}} {{GPU_I_PROFILE}}")],
            "percent",
            (0, 1, 6, 7),
            maxv=100,
        ),
        _panel(
            3,
            "Memory used",
            [
                (f"DCGM_FI_DEV_FB_USED{g} * 1048576", "used"),
                (f"(DCGM_FI_DEV_FB_USED{g} + DCGM_FI_DEV_FB_FREE{g}) * 1048576", "total"),
            ],
            "bytes",
            (6, 1, 6, 7),
        ),
        _panel(
            4,
            "Power",
            [
                (f"DCGM_FI_DEV_POWER_USAGE{g}", "draw"),
                (f"torchrig_gpu_power_limit_watts{g}", "limit"),
            ],
            "watt",
            (12, 1, 6, 7),
        ),
        _panel(
            5,
            "Temperature and clocks",
            [
                (f"DCGM_FI_DEV_GPU_TEMP{g}", "°C"),
                (f"DCGM_FI_DEV_SM_CLOCK{g} / 100", "SM clock / 100 MHz"),
            ],
            "none",
            (18, 1, 6, 7),
        ),
        _panel(
            6,
            "Who holds it (memory per process)",
            [(f"torchrig_gpu_process_memory_bytes{g}", "{{torchrig_job}} pid {{pid}}")],
            "bytes",
            (0, 8, 12, 6),
        ),
        _panel(
            7,
            "Throttle reasons and ECC",
            [
                ('torchrig_gpu_throttle{Hostname=~"$host", gpu="$gpu"} == 1', "{{reason}}"),
                (f"DCGM_FI_DEV_ECC_DBE_VOL_TOTAL{g}", "uncorrectable ECC"),
            ],
            "none",
            (12, 8, 12, 6),
        ),
        _row(10, "Training", 14),
        _panel(
            11,
            "Throughput",
            [
                (f"torchrig_train_tokens_per_second{j}", "{{torchrig_job}} tokens/s"),
                (f"torchrig_train_samples_per_second{j}", "{{torchrig_job}} samples/s"),
            ],
            "none",
            (0, 15, 12, 8),
        ),
        _panel(
            12,
            "MFU",
            [(f"torchrig_train_mfu_ratio{j}", "{{torchrig_job}}")],
            "percentunit",
            (12, 15, 12, 8),
            maxv=1,
        ),
        _panel(
            13, "Loss", [(f"torchrig_train_loss{j}", "{{torchrig_job}}")], "none", (0, 23, 8, 8)
        ),
        _panel(
            14,
            "Data wait (share of step time)",
            [(f"torchrig_train_data_wait_ratio{j}", "{{torchrig_job}}")],
            "percentunit",
            (8, 23, 8, 8),
            maxv=1,
        ),
        _panel(
            15,
            "Step time",
            [(f"torchrig_train_step_seconds{j}", "{{torchrig_job}}")],
            "s",
            (16, 23, 8, 8),
        ),
        _panel(
            16,
            "Checkpoint age",
            [(f"torchrig_train_checkpoint_age_seconds{j}", "{{torchrig_job}}")],
            "s",
            (0, 31, 12, 6),
            kind="stat",
        ),
        _panel(
            17,
            "Jobs",
            [(f"torchrig_job_state{j} == 1", "{{torchrig_job}} {{state}}")],
            "none",
            (12, 31, 12, 6),
            kind="stat",
        ),
    ]

    def variable(name: str, query: str, label: str) -> dict[str, Any]:
        return {
            "name": name, "label": label, "type": "query", "datasource": _DS,
            "query": query, "refresh": 2, "includeAll": True,
            "multi": True, "current": {"text": "All", "value": "$__all"}, "sort": 3,
        }  # fmt: skip

    return {
        "uid": DASHBOARD_UID,
        "title": "torchrig: GPUs and training",
        "tags": ["torchrig", "gpu", "training"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "5s",
        "schemaVersion": SCHEMA_VERSION,
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {"text": "torchrig-prometheus", "value": DATASOURCE_UID},
                },
                variable("host", "label_values(DCGM_FI_DEV_GPU_UTIL, Hostname)", "host"),
                variable(
                    "gpu", 'label_values(DCGM_FI_DEV_GPU_UTIL{Hostname=~"$host"}, gpu)', "GPU"
                ),
                variable("job", "label_values(torchrig_job_state, torchrig_job)", "job"),
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }


def dashboard_json() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


def grafana_files(prometheus_url: str) -> dict[str, str]:
    """Relative path → text of the provisioned files."""
    return {
        "grafana/provisioning/datasources/torchrig.yaml": datasource_yaml(prometheus_url),
        "grafana/provisioning/dashboards/torchrig.yaml": provider_yaml(),
        "grafana/dashboards/torchrig.json": dashboard_json(),
    }
