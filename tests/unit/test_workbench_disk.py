"""Low disk (issue 10, finding 7): the rule, the health check's line, and `status`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from torchrig.launch.running import health_warnings
from torchrig.workbench import disk, health

GIB = 1 << 30


@pytest.mark.parametrize(
    ("free", "total", "low"),
    [
        (0, 64 << 20, True),
        (900 << 20, 500 * GIB, True),  # under 1 GiB, whatever the size
        (2 * GIB, 4 * GIB, False),
        (20 * GIB, 500 * GIB, True),  # 4 %
        (30 * GIB, 500 * GIB, False),  # 6 %
    ],
)
def test_low_is_under_1_gib_or_under_5_percent(free: int, total: int, low: bool) -> None:
    assert disk.Space("/w", free, total).low is low


def test_describe_says_where_and_how_much() -> None:
    said = disk.Space("/workspace", 12 << 20, 64 << 20).describe()
    assert said == "/workspace has 12 MiB free of 64 MiB (18.8%)"


def test_each_filesystem_once_and_missing_paths_skipped(tmp_path: Path) -> None:
    real = os.statvfs(tmp_path)
    found = disk.low_disk([str(tmp_path), str(tmp_path / "sub/.."), "/no/such/path"])
    assert len(found) <= 1
    expect_low = disk.Space("x", real.f_bavail * real.f_frsize, real.f_blocks * real.f_frsize).low
    assert bool(found) is expect_low


def test_health_prints_a_warning_line_per_low_filesystem(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake(paths: list[str]) -> list[disk.Space]:
        seen.append(list(paths))
        return [disk.Space("/workspace", 0, 64 << 20)]

    monkeypatch.setattr(disk, "low_disk", fake)
    notes = health.disk_notes({"TORCHRIG_USER": "alice"})
    assert seen == [["/workspace", "/home/alice"]]
    assert notes == [
        "warning: low disk: /workspace has 0 B free of 64 MiB (0.0%): saves may fail "
        "(notebooks, checkpoints); free some space"
    ]


@pytest.mark.parametrize("key", ["Health", "Healthcheck"])  # Docker; Podman 4
def test_status_reads_the_newest_health_output(key: str) -> None:
    line = "warning: low disk: /workspace has 0 B free of 64 MiB (0.0%): saves may fail"
    info = {
        "State": {
            key: {
                "Status": "healthy",
                "Log": [
                    {"Output": "healthy: jupyter\n"},
                    {"Output": f"healthy: jupyter\n{line}\n"},
                ],
            }
        }
    }
    assert health_warnings(info) == [
        "low disk: /workspace has 0 B free of 64 MiB (0.0%): saves may fail"
    ]
    assert health_warnings({"State": {key: {"Log": [{"Output": "healthy: jupyter\n"}]}}}) == []
    assert health_warnings({"State": {}}) == []
