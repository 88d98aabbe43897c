"""`torchrig export prometheus|grafana`'s files: the scrape config passes Prometheus's own
`promtool check config`; the dashboard round-trips through Grafana's dashboard model
(grafana-foundation-sdk, Grafana's own generated types) without losing a field, each panel's
options through its plugin's model and each query through the Prometheus query model; and
every metric the dashboard queries is one the exporter writes. No Grafana runs here."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from tests.unit.test_monitor_exporter import FakeNvml, write_job, write_run
from torchrig.monitor.exporter import registry_for
from torchrig.monitor.gpu import Reader
from torchrig.monitor.targets import Target, dashboard, grafana_files, prometheus_config


def _sdk_json(obj: Any) -> Any:
    from grafana_foundation_sdk.cog.encoder import JSONEncoder

    return json.loads(json.dumps(obj, cls=JSONEncoder))


def _lost(ours: Any, theirs: Any, path: str = "") -> list[str]:
    """Fields of ours that the model's round trip dropped or changed."""
    if isinstance(ours, dict):
        if not isinstance(theirs, dict):
            return [path]
        found = []
        for key, value in ours.items():
            where = f"{path}/{key}"
            found += [where] if key not in theirs else _lost(value, theirs[key], where)
        return found
    if isinstance(ours, list):
        if not isinstance(theirs, list) or len(ours) != len(theirs):
            return [path]
        pairs = enumerate(zip(ours, theirs, strict=True))
        return [p for i, (a, b) in pairs for p in _lost(a, b, f"{path}[{i}]")]
    return [] if ours == theirs else [path]


def test_the_dashboard_fits_grafanas_dashboard_model() -> None:
    from grafana_foundation_sdk.models import prometheus
    from grafana_foundation_sdk.models.dashboard import Dashboard

    ours = dashboard()
    assert _lost(ours, _sdk_json(Dashboard.from_json(ours))) == []
    for panel in ours["panels"]:
        if panel["type"] == "row":
            continue
        plugin = importlib.import_module(f"grafana_foundation_sdk.models.{panel['type']}")
        options = _sdk_json(plugin.Options.from_json(panel["options"]))
        assert _lost(panel["options"], options) == [], panel["title"]
        for target in panel["targets"]:
            assert _lost(target, _sdk_json(prometheus.Dataquery.from_json(target))) == []
    ids = [p["id"] for p in ours["panels"]]
    assert len(ids) == len(set(ids))


def test_the_dashboard_queries_only_metrics_the_exporter_writes(tmp_path: Path) -> None:
    write_run(tmp_path, "runs/lm", [{"step": 1, "loss": 1.0, "tokens_per_s": 1.0, "mfu": 0.1,
                                     "data_wait": 0.0, "interval_s": 1.0,
                                     "steps_in_interval": 1}])  # fmt: skip
    write_job(tmp_path, "j", "runs/lm")
    text = generate_latest(registry_for(tmp_path, Reader(FakeNvml()))).decode()
    exported = set(re.findall(r"^# TYPE (\S+)", text, re.M))
    exported.add("torchrig_train_samples_per_second")  # a classifier's (this job is an LM's)
    queried = set()
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            queried |= set(re.findall(r"\b((?:DCGM_FI|torchrig)_[A-Za-z_]+)\b", target["expr"]))
    for var in dashboard()["templating"]["list"]:
        queried |= set(re.findall(r"\b((?:DCGM_FI|torchrig)_[A-Za-z_]+)\b", var["query"]))
    queried.discard("torchrig_job")  # the job label, not a metric
    assert queried and queried <= exported, queried - exported


def test_promtool_accepts_the_scrape_config(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool (Debian's prometheus) is a test dependency", pytrace=False)
    config = tmp_path / "prometheus.yml"
    config.write_text(prometheus_config(
        [Target("127.0.0.1:9400", (("workbench", 'odd "name"'),)), Target("10.0.0.5:9400")]
    ))  # fmt: skip
    done = subprocess.run([promtool, "check", "config", str(config)], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_grafana_provisioning_files() -> None:
    files = grafana_files("http://prometheus:9090")
    assert set(files) == {
        "grafana/provisioning/datasources/torchrig.yaml",
        "grafana/provisioning/dashboards/torchrig.yaml",
        "grafana/dashboards/torchrig.json",
    }
    assert (
        'url: "http://prometheus:9090"' in files["grafana/provisioning/datasources/torchrig.yaml"]
    )
    assert json.loads(files["grafana/dashboards/torchrig.json"])["uid"] == "torchrig-training"
