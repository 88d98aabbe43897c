"""The whole suite: what a normal user's run (not root) covers, said before and after.

CI runs the suite as root and every test runs there; an engine that is missing fails the
container tests (tests/container/test_engine_real.py, `unavailable`). A normal user, even
one in the docker group, cannot run two kinds of tests, so for them each is skipped at
collection with its reason, listed by `-ra` at the end, never passed silently:

- `container`: they make throwaway accounts (useradd), hand projects to the workbench UID
  (chown), bootstrap base images (debootstrap) and read other users' files;
- `root`: mounts, chown to other UIDs, capabilities.

`sudo bash scripts/test.sh` runs them all.
"""

from __future__ import annotations

import os

import pytest

# tests/unit/test_suite_as_user.py runs this file's hooks on a small suite of its own.
pytest_plugins = ["pytester"]

AS_ROOT = "sudo bash scripts/test.sh"
WHY_NOT_AS_USER = {
    "container": "needs root: makes throwaway accounts, chowns projects to the workbench UID "
    f"and bootstraps bases (run `{AS_ROOT}`)",
    "root": f"needs root: mounts, chown to other UIDs or capabilities (run `{AS_ROOT}`)",
}
SKIPPED_AS_USER = pytest.StashKey[int]()


def why_skipped(markers: set[str], euid: int) -> str | None:
    """The reason a test with these markers is skipped for this effective UID, or None."""
    if euid == 0:
        return None
    for marker, why in WHY_NOT_AS_USER.items():
        if marker in markers:
            return why
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    euid = os.geteuid()
    skipped = 0
    for item in items:
        why = why_skipped({mark.name for mark in item.iter_markers()}, euid)
        if why is not None:
            item.add_marker(pytest.mark.skip(reason=why))
            skipped += 1
    config.stash[SKIPPED_AS_USER] = skipped


def pytest_report_collectionfinish(config: pytest.Config) -> str | None:
    skipped = config.stash.get(SKIPPED_AS_USER, 0)
    if not skipped:
        return None
    return (
        f"not root (uid {os.geteuid()}): {skipped} container and root tests are skipped, "
        f"each listed with its reason at the end; `{AS_ROOT}` runs them"
    )


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    line = pytest_report_collectionfinish(config)
    if line is not None:
        terminalreporter.section("what this run did not cover")
        terminalreporter.write_line(line)
