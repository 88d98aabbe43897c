"""host.podman_pause against a made-up /proc: which pause processes the probe kills."""

from __future__ import annotations

from pathlib import Path

from torchrig.host.podman_pause import PAUSE_NAMES, no_new_pause_process, processes

USER = 1001


def spawn(proc: Path, pid: int, comm: str, uid: int = USER) -> None:
    entry = proc / str(pid)
    entry.mkdir(parents=True)
    (entry / "comm").write_text(comm + "\n")
    (entry / "status").write_text(f"Name:\t{comm}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")


def test_pause_processes_are_known_by_comm_and_real_uid(tmp_path: Path) -> None:
    spawn(tmp_path, 10, "catatonit")
    spawn(tmp_path, 11, "podman pause")
    spawn(tmp_path, 12, "catatonit", uid=1002)
    spawn(tmp_path, 13, "bash")
    (tmp_path / "self").mkdir()
    assert processes(tmp_path, USER, PAUSE_NAMES) == {10, 11}


def test_only_the_pause_process_the_probe_started_is_killed(tmp_path: Path) -> None:
    spawn(tmp_path, 10, "catatonit")  # the user's own, from before: kept
    killed: list[tuple[int, int]] = []
    with no_new_pause_process(tmp_path, uid=USER, kill=lambda pid, sig: killed.append((pid, sig))):
        spawn(tmp_path, 20, "catatonit")  # what `podman info` started
        spawn(tmp_path, 21, "sleep")
    assert killed == [(20, 9)]


def test_with_a_container_running_nothing_is_killed(tmp_path: Path) -> None:
    spawn(tmp_path, 30, "conmon")
    killed: list[int] = []
    with no_new_pause_process(tmp_path, uid=USER, kill=lambda pid, sig: killed.append(pid)):
        spawn(tmp_path, 31, "catatonit")
    assert killed == []


def test_root_has_no_pause_process_to_clean(tmp_path: Path) -> None:
    killed: list[int] = []
    with no_new_pause_process(tmp_path, uid=0, kill=lambda pid, sig: killed.append(pid)):
        spawn(tmp_path, 40, "catatonit", uid=0)
    assert killed == []
