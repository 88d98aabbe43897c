"""A normal user's run of the suite (tests/conftest.py): the tests that need root are
skipped with their reason shown, said before and after, never run to fail and never
passed silently; as root nothing is skipped.

Before this, `bash scripts/test.sh` as a user in the docker group ran the container tests,
which failed on useradd/chown/debootstrap ("needs root and useradd to make the test user").
"""

from __future__ import annotations

import os

import pytest

SUITE = """
import pytest

@pytest.mark.container
def test_a_workbench():
    raise AssertionError("ran as a normal user")

@pytest.mark.root
def test_a_mount():
    raise AssertionError("ran as a normal user")

def test_plain():
    pass
"""


def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, euid: int) -> pytest.RunResult:
    monkeypatch.setattr(os, "geteuid", lambda: euid)
    pytester.makeconftest("from tests.conftest import *  # noqa: F403\n")
    pytester.makeini("[pytest]\nmarkers =\n  container: c\n  root: r\n")
    pytester.makepyfile(test_suite=SUITE)
    return pytester.runpytest_inprocess("-ra", "-p", "no:cacheprovider")


def test_a_normal_users_run_skips_the_root_tests_with_their_reason(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run(pytester, monkeypatch, euid=1001)
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(
        [
            "not root (uid 1001): 2 container and root tests are skipped, *"
            "`sudo bash scripts/test.sh` runs them",
            "*what this run did not cover*",
            "SKIPPED * needs root: makes throwaway accounts, *(run `sudo bash scripts/test.sh`)",
            "SKIPPED * needs root: mounts, chown to other UIDs or capabilities *",
        ]
    )


def test_as_root_nothing_is_skipped(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run(pytester, monkeypatch, euid=0)
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.no_fnmatch_line("*not root*")
