"""Job ids, records, states, recipes and reading output.log: pure, no engine."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from torchrig.errors import UsageError
from torchrig.jobs.files import write_json
from torchrig.jobs.follow import stream, tail_offset
from torchrig.jobs.recipes import recipe_command
from torchrig.jobs.state import (
    check_name,
    exit_status,
    find_job,
    job_state,
    list_jobs,
    new_job_id,
    program_name,
    read_job,
)
from torchrig.workbench.entrypoint import job_command

NOON = datetime.datetime(2026, 3, 1, 12, 0, 5)


@pytest.mark.parametrize(
    ("command", "name"),
    [
        (["python", "train.py", "--lr", "3"], "train"),
        (["python3", "-u", "scripts/fine tune.py"], "fine-tune"),
        (["/opt/venv/bin/python3.11", "-m", "torchrig.recipes.causal_lm"], "causal_lm"),
        (["bash", "run.sh"], "bash"),
        (["./run.sh"], "run.sh"),
        (["python"], "python"),
        (["python", "-c", "print(1)"], "python"),
        (["@@@"], "job"),
    ],
)
def test_program_name(command: list[str], name: str) -> None:
    assert program_name(command) == name


def test_ids_are_readable_and_unique() -> None:
    taken = {"train-20260301-120005", "train-20260301-120005-2"}
    assert new_job_id("train", NOON, lambda i: False) == "train-20260301-120005"
    assert new_job_id("train", NOON, taken.__contains__) == "train-20260301-120005-3"
    assert check_name("exp.1_a-b") == "exp.1_a-b"
    for bad in ("", "-x", "a/b", "a b", "x" * 65, ".."):
        with pytest.raises(UsageError, match="not allowed"):
            check_name(bad)


def _job(root: Path, job_id: str, started: str, exit: dict[str, object] | None = None) -> None:
    (root / job_id).mkdir(parents=True)
    write_json(root / job_id / "job.json", {"id": job_id, "started": started, "container": "wb"})
    if exit is not None:
        write_json(root / job_id / "exit.json", exit)


def test_states(tmp_path: Path) -> None:
    _job(tmp_path, "a", "2026-03-01T12:00:00", {"returncode": 0, "signal": None})
    _job(tmp_path, "b", "2026-03-01T12:01:00", {"returncode": None, "signal": "SIGKILL"})
    _job(tmp_path, "c", "2026-03-01T12:02:00")
    (tmp_path / "d").mkdir()  # the runner has not written job.json yet
    jobs = {j.id: j for j in list_jobs(tmp_path)}
    assert [j.id for j in list_jobs(tmp_path)] == ["a", "b", "c", "d"]
    assert job_state(jobs["a"], container_up=False) == "exited 0"
    assert job_state(jobs["b"], container_up=True) == "killed"
    assert job_state(jobs["c"], container_up=True) == "running"
    assert job_state(jobs["c"], container_up=True, alive=False) == "lost"
    assert job_state(jobs["c"], container_up=False) == "lost"
    assert job_state(jobs["d"], container_up=None) == "starting"
    assert (exit_status(jobs["a"]), exit_status(jobs["b"])) == (0, 137)
    assert list_jobs(tmp_path / "none") == []


def test_find_job_by_id_or_unique_prefix(tmp_path: Path) -> None:
    _job(tmp_path, "train-1", "1")
    _job(tmp_path, "train-2", "2")
    _job(tmp_path, "eval-1", "3")
    assert find_job(tmp_path, "eval").id == "eval-1"
    assert find_job(tmp_path, "train-1").id == "train-1"
    with pytest.raises(UsageError, match="matches 2 jobs"):
        find_job(tmp_path, "train")
    with pytest.raises(UsageError, match=r"no job 'x' \(latest: train-1, train-2, eval-1\)"):
        find_job(tmp_path, "x")


def test_recipes() -> None:
    assert recipe_command("causal-lm", ["--preset", "tiny"]) == [
        "python",
        "-m",
        "torchrig.recipes.causal_lm",
        "--preset",
        "tiny",
    ]
    assert recipe_command("text-classify", [])[2] == "torchrig.recipes.text_classify"
    assert recipe_command("image-classify", [])[2] == "torchrig.recipes.image_classify"
    with pytest.raises(UsageError, match=r"unknown recipe 'nope' \(recipes: causal-lm, text-"):
        recipe_command("nope", [])


def test_stream_follows_until_the_job_ends(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    log.write_bytes(b"one\ntwo\n")
    out: list[bytes] = []
    polls = iter([False, False, True])

    def sleep(_s: float) -> None:  # the job writes while the reader waits
        with log.open("ab") as handle:
            handle.write(b"more\r")

    stream(log, out.append, follow=True, ended=lambda: next(polls), sleep=sleep)
    assert b"".join(out) == b"one\ntwo\nmore\rmore\r"
    out.clear()
    stream(log, out.append, follow=False, ended=lambda: False, tail=1)
    assert b"".join(out) == b"more\rmore\r"  # the last line: carriage returns do not end it


@pytest.mark.parametrize(
    ("text", "lines", "rest"),
    [(b"a\nb\nc\n", 2, b"b\nc\n"), (b"a\nb\nc", 1, b"c"), (b"a\n", 5, b"a\n"), (b"", 3, b"")],
)
def test_tail_offset(tmp_path: Path, text: bytes, lines: int, rest: bytes) -> None:
    log = tmp_path / "log"
    log.write_bytes(text)
    assert text[tail_offset(log, lines) :] == rest


def test_entrypoint_runs_a_command_only_after_a_separator() -> None:
    assert job_command(["--", "python", "-m", "x"]) == ["python", "-m", "x"]
    assert job_command(["/bin/bash"]) == []  # a CMD inherited from a base image
    assert job_command([]) == []


def test_read_job_of_an_empty_folder(tmp_path: Path) -> None:
    job = read_job(tmp_path)
    assert job.record is None and job.exit is None and not job.ended and job.container == ""
