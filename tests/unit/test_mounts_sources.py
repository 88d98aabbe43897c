"""[[mounts]], the Hugging Face cache volume, mirror presets and the sources `init` takes from
the host's pip and uv configuration (issue 11, items 4 and 5)."""

from __future__ import annotations

import json
import os
import socket
import struct
from pathlib import Path

import pytest

from tests.golden_util import GOLDEN, assert_golden
from tests.unit.test_spec import h100_host
from torchrig.cli.main import main
from torchrig.compat.model import load_compat
from torchrig.compat.resolve import resolve
from torchrig.host.facts import HostFacts, System
from torchrig.host.pipconfig import Found, read_host_sources
from torchrig.launch.mounts import checked_mounts
from torchrig.plan.plan import Local, plan
from torchrig.spec.load import parse_spec
from torchrig.spec.template import render_spec
from torchrig.workbench import caches

HOST = HostFacts(system=System(os="Debian 12", arch="x86_64", user="alice", uid=4242, gid=4343))
CPU_HOST_FILE = Path(__file__).parents[1] / "fixtures" / "host" / "cpu-only.json"
HEAD = '[project]\nname = "demo"\n'


def _plan(tmp_path: Path, text: str, *extra: str) -> list[str]:
    (tmp_path / "torchrig.toml").write_text(HEAD + text)
    return ["plan", "--spec", str(tmp_path / "torchrig.toml"), *extra]


def _mount(source: str, target: str = "/data", extra: str = "") -> str:
    return f'[[mounts]]\nsource = "{source}"\ntarget = "{target}"\n{extra}'


def _run(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    spec = parse_spec(HEAD + text)
    local = Local(project_dir=tmp_path, ports={}, mounts=checked_mounts(spec, project=tmp_path))
    return plan(spec, HOST, load_compat(), None, local).run


# --- [[mounts]] in the spec ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "wanted"),
    [
        (_mount("/d", "/workspace"), 'mounts[0].target: "/workspace" is the workbench\'s own'),
        (_mount("/d", "/workspace/x"), "is inside /workspace"),
        (_mount("/d", "/home/alice/data"), "is inside /home"),
        (_mount("/d", "/opt/venv/lib"), "is inside /opt/venv"),
        (_mount("/d", "/run/torchrig"), "is inside /run"),
        (_mount("/d", "/"), '"/" would hide the whole workbench'),
        (_mount("/d", "data"), "is not an absolute container path"),
        (_mount("/d", "/a/../etc"), 'write it as target = "/etc"'),
        (_mount("/d", "/a,readonly=false"), "comma"),
        (_mount("data", "/data"), "mounts[0].source"),
        (_mount("/d", "/a") + _mount("/e", "/a"), 'mounts[1].target: "/a" is also the target of'),
        (_mount("/d", "/a") + _mount("/e", "/a/b"), "are one inside the other"),
        (_mount("/d", "/a/b") + _mount("/e", "/a"), "are one inside the other"),
        ('[sources]\npreset = "chinaa"\n', 'use one of "none", "china", "china-aliyun"'),
        ('[cache]\nhuggingface = "yes"\n', '"user", "host" or "none"'),
    ],
)
def test_bad_mounts_and_sources_are_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, wanted: str
) -> None:
    assert main(_plan(tmp_path, text, "--host", str(CPU_HOST_FILE))) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and wanted in err and " — " in err, err


def _fake_socket(path: Path) -> socket.socket:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    return server


@pytest.mark.parametrize(
    ("source", "wanted"),
    [
        ("/etc", "is the system folder /etc"),
        ("/var", "holds the system folder"),
        ("/proc/self", "is the system folder /proc"),
        ("/", "is the whole host filesystem"),
        ("/var/run/docker.sock", "socket"),
        ("{tmp}/missing", "does not exist on this machine"),
        ("{tmp}/link-to-etc", "(→ /etc) is the system folder /etc"),
        ("{tmp}/engine", "is or holds a container engine's socket"),
        ("{tmp}/engine/podman.sock", "is or holds a container engine's socket"),
    ],
)
def test_host_paths_are_checked_by_plan_on_this_machine(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    source: str,
    wanted: str,
) -> None:
    (tmp_path / "link-to-etc").symlink_to("/etc")
    (tmp_path / "engine").mkdir()
    with _fake_socket(tmp_path / "engine" / "podman.sock"):
        monkeypatch.setenv("CONTAINER_HOST", f"unix://{tmp_path}/engine/podman.sock")
        code = main(_plan(tmp_path, _mount(source.format(tmp=tmp_path))))
    err = capsys.readouterr().err.strip()
    assert code == 2 and "mounts[0].source:" in err and wanted in err, err
    assert len(err.splitlines()) == 1


def test_plan_shows_mounts_resolved_here_and_unchecked_for_another_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "datasets"
    data.mkdir()
    (tmp_path / "link").symlink_to(data)
    text = _mount(f"{tmp_path}/link", "/data") + _mount(str(data), "/out", "read_only = false\n")
    assert main(_plan(tmp_path, text, "--json")) == 0
    mounts = json.loads(capsys.readouterr().out)["up"]["mounts"]
    assert mounts[0] == {
        "source": f"{tmp_path}/link",
        "host_path": str(data),
        "target": "/data",
        "read_only": True,
    }
    assert mounts[1]["read_only"] is False
    text = _mount("/nowhere/on/this/machine", "/data")
    assert main(_plan(tmp_path, text, "--host", str(CPU_HOST_FILE))) == 0
    out = capsys.readouterr().out
    assert "mount: /nowhere/on/this/machine (not checked: --host) → /data (read-only)" in out


def test_run_plan_mounts_read_only_by_default_and_the_cache_volume(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    run = _run(tmp_path, _mount(str(data), "/data") + _mount(str(data), "/rw", "read_only = false"))
    by_target = {m.target: m for m in run.mounts}
    assert by_target["/data"].source == str(data) and by_target["/data"].read_only
    assert not by_target["/rw"].read_only
    cache = by_target["/cache/huggingface"]
    assert (cache.kind, cache.source) == ("volume", "torchrig-hf-cache-4242")
    assert run.env["HF_HUB_CACHE"] == "/cache/huggingface/hub"
    assert run.env["TORCHRIG_HF_CACHE"] == "user" and "HF_HOME" not in run.env
    host_wide = _run(tmp_path, '[cache]\nhuggingface = "host"\n')
    assert "torchrig-hf-cache" in [m.source for m in host_wide.mounts]
    none = _run(tmp_path, '[cache]\nhuggingface = "none"\n')
    assert "/cache/huggingface" not in [m.target for m in none.mounts]
    assert "HF_HUB_CACHE" not in none.env


# --- presets ---------------------------------------------------------------------------------


def test_china_preset_fills_what_the_spec_leaves_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = parse_spec(HEAD + '[sources]\npreset = "china"\n')
    assert spec.sources.index == "https://pypi.tuna.tsinghua.edu.cn/simple"
    assert spec.sources.torch_index == spec.sources.index  # never download.pytorch.org
    assert spec.sources.hf_endpoint == "https://hf-mirror.com"
    resolution = resolve(spec, HOST, load_compat())
    assert resolution.base.mirror.startswith("https://mirrors.tuna.tsinghua.edu.cn/")
    assert "download.pytorch.org" not in (resolution.index or "")
    own = parse_spec(HEAD + '[sources]\npreset = "china"\nindex = "https://pypi.corp/simple"\n')
    assert own.sources.index == "https://pypi.corp/simple"  # a key written out wins
    run = _run(tmp_path, '[sources]\npreset = "china"\n')
    assert run.env["HF_ENDPOINT"] == "https://hf-mirror.com"
    assert run.env["PIP_INDEX_URL"] == "https://pypi.tuna.tsinghua.edu.cn/simple"
    assert (
        main(_plan(tmp_path, '[sources]\npreset = "china"\nindex = "https://pypi.corp/simple"\n'))
        == 0
    )
    out = capsys.readouterr().out
    assert "index        https://pypi.corp/simple  (torchrig.toml)" in out
    assert "hf_endpoint  https://hf-mirror.com  (preset china)" in out


def test_every_preset_cites_its_sources() -> None:
    from torchrig.compat.mirrors import load_mirrors

    mirrors = load_mirrors()
    keys = {s.key for s in mirrors.source}
    for preset in mirrors.preset:
        assert preset.sources and set(preset.sources) <= keys
        assert parse_spec(HEAD + f'[sources]\npreset = "{preset.name}"\n').sources.index


# --- sources from the host's pip and uv ------------------------------------------------------


def _pip_machine(tmp_path: Path) -> tuple[dict[str, str], Path, Path]:
    root, home = tmp_path / "root", tmp_path / "home"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "pip.conf").write_text(
        "[global]\nindex-url = https://pypi.corp.example/simple\ntrusted-host = pypi.corp.example\n"
    )
    (home / ".config" / "pip").mkdir(parents=True)
    (home / ".config" / "pip" / "pip.conf").write_text(
        "[global]\nextra-index-url =\n    https://extra.example/simple\n    not-a-url\n"
        "[install]\nfind_links = /srv/wheels\n"
    )
    environ = {
        "HOME": str(home),
        "PIP_CERT": "/etc/ssl/corp.pem",
        "UV_INDEX": "corp=https://uv.example/simple",
    }
    return environ, home, root


def test_init_takes_sources_from_pip_and_uv_saying_where_each_came_from(tmp_path: Path) -> None:
    environ, home, root = _pip_machine(tmp_path)
    found = read_host_sources(environ, home, root)
    # The golden file names the files as if the machine's / were tmp_path/root.
    found.found = {
        k: Found(f.value, f.origin.replace(str(tmp_path), "")) for k, f in found.found.items()
    }
    found.skipped = [line.replace(str(tmp_path), "") for line in found.skipped]
    text = render_spec("demo", h100_host(), found)
    assert_golden(GOLDEN / "init" / "pip-config" / "torchrig.toml", text)
    spec = parse_spec(text)
    assert spec.sources.index == "https://pypi.corp.example/simple"
    assert spec.sources.extra_indexes == ["https://uv.example/simple"]  # uv's win
    assert spec.sources.find_links == ["/srv/wheels"]
    assert spec.sources.trusted_hosts == ["pypi.corp.example"]
    assert spec.sources.ca_certificates == ["/etc/ssl/corp.pem"]
    assert "# From /root/etc/pip.conf [global] index-url." in text
    assert "# From UV_INDEX." in text and "not-a-url" in text  # left out, with a note


def test_pip_config_file_devnull_reads_no_file(tmp_path: Path) -> None:
    environ, home, root = _pip_machine(tmp_path)
    environ["PIP_CONFIG_FILE"] = os.devnull
    found = read_host_sources(environ, home, root)
    assert set(found.found) == {"ca_certificates", "extra_indexes"}  # the variables only


def test_broken_or_huge_pip_config_is_a_note_not_a_failure(tmp_path: Path) -> None:
    bad = tmp_path / "pip.conf"
    bad.write_text("index-url = no section\n")
    found = read_host_sources({"PIP_CONFIG_FILE": str(bad)}, tmp_path, tmp_path)
    assert not found.found and "not a pip configuration file" in found.skipped[0]
    found = read_host_sources({"PIP_CONFIG_FILE": "/dev/zero"}, tmp_path, tmp_path)
    assert not found.found and "larger than 64 KiB" in found.skipped[0]


# --- the cache volume's root in the workbench ------------------------------------------------


@pytest.mark.root  # chowns to other uids
def test_entrypoint_gives_a_fresh_user_cache_to_the_user(tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "huggingface"
    cache.mkdir(parents=True)
    notes = caches.prepare({"TORCHRIG_HF_CACHE": "user"}, 4242, 4343, tmp_path)
    assert (cache.stat().st_uid, cache.stat().st_gid) == (4242, 4343) and notes
    os.chown(cache, 5555, 5555)
    notes = caches.prepare({"TORCHRIG_HF_CACHE": "user"}, 4242, 4343, tmp_path)
    assert cache.stat().st_uid == 5555 and "belongs to uid 5555" in notes[0]  # never taken


@pytest.mark.root  # chowns to other uids
def test_host_cache_gets_a_default_acl_for_every_uid(tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "huggingface"
    cache.mkdir(parents=True)
    notes = caches.prepare({"TORCHRIG_HF_CACHE": "host"}, 4242, 4343, tmp_path)
    if notes:  # this filesystem has no ACLs: the fallback is the sticky, world-writable root
        assert cache.stat().st_mode & 0o7777 == 0o1777
        return
    assert cache.stat().st_mode & 0o777 == 0o777
    raw = os.getxattr(cache, "system.posix_acl_default")
    entries = [struct.unpack_from("<HHI", raw, 4 + 8 * i)[:2] for i in range((len(raw) - 4) // 8)]
    assert entries == [(0x01, 7), (0x04, 7), (0x20, 7)]
