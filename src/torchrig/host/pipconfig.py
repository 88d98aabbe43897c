"""The package sources this machine's pip and uv are already told to use, for `torchrig init`.

Behind a firewall, or in China, people have set a mirror in pip.conf or PIP_*/UV_* variables
long before they meet torchrig; `init` writes those into [sources] so the first lock works
without editing the spec. Read as pip reads them, without pip's internals (configparser on
the files, later files and sections overriding earlier ones):

  files, in pip's order: $XDG_CONFIG_DIRS/pip/pip.conf (default /etc/xdg/pip/pip.conf),
  /etc/pip.conf, then the user's ~/.pip/pip.conf and $XDG_CONFIG_HOME/pip/pip.conf (skipped
  when PIP_CONFIG_FILE names a file that exists), then $PIP_CONFIG_FILE; PIP_CONFIG_FILE=
  /dev/null reads none. In each, [global] then [install].
  then the variables PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS, PIP_TRUSTED_HOST,
  PIP_CERT; then uv's UV_INDEX_URL, UV_DEFAULT_INDEX, UV_EXTRA_INDEX_URL, UV_INDEX,
  UV_FIND_LINKS and UV_INSECURE_HOST, which win (uv is what `torchrig lock` runs).

A value the spec would refuse (not a URL, …) is left out with a note; this never fails.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from torchrig.spec.model import Sources

MAX_CONFIG_BYTES = 64 << 10
SECTIONS = ("global", "install")
# pip option → [sources] key.
PIP_KEYS = {
    "index-url": "index",
    "extra-index-url": "extra_indexes",
    "find-links": "find_links",
    "trusted-host": "trusted_hosts",
    "cert": "ca_certificates",
}
LISTS = ("extra_indexes", "find_links", "trusted_hosts", "ca_certificates")


@dataclass(frozen=True)
class Found:
    value: str | list[str]
    origin: str
    """Where it came from: "/etc/pip.conf [global] index-url", "PIP_INDEX_URL" …"""


@dataclass
class HostSources:
    found: dict[str, Found] = field(default_factory=dict)
    """[sources] key → value and origin."""
    skipped: list[str] = field(default_factory=list)
    """One line for each value or file left out, and why."""


def config_files(environ: Mapping[str, str], home: Path, root: Path = Path("/")) -> list[Path]:
    """pip's configuration files in the order pip loads them (later ones win).

    root: where the system's /etc is (tests give a folder of their own).
    """
    env_file = environ.get("PIP_CONFIG_FILE", "")
    if env_file == os.devnull:
        return []
    dirs = [d for d in environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(":") if d]
    system = [*(Path(d) / "pip" / "pip.conf" for d in dirs), Path("/etc/pip.conf")]
    files = [root / p.relative_to("/") if p.is_absolute() else p for p in system]
    if not (env_file and Path(env_file).exists()):
        config_home = environ.get("XDG_CONFIG_HOME") or str(home / ".config")
        files += [home / ".pip" / "pip.conf", Path(config_home) / "pip" / "pip.conf"]
    if env_file:
        files.append(Path(env_file))
    return files


def _split(key: str, text: str) -> list[str]:
    if key == "find_links" and "," in text and " " not in text.strip():
        return [t for t in text.split(",") if t]  # UV_FIND_LINKS is comma-separated
    return text.split()


def _read_file(path: Path, out: HostSources) -> list[tuple[str, str, str]]:
    """(pip option, value, origin) for each option of ours the file sets."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        return []
    except OSError as exc:
        out.skipped.append(f"{path}: not read ({exc.strerror or type(exc).__name__})")
        return []
    if len(raw) > MAX_CONFIG_BYTES:
        out.skipped.append(f"{path}: larger than {MAX_CONFIG_BYTES >> 10} KiB, not read")
        return []
    parser = configparser.RawConfigParser()
    try:
        parser.read_string(raw.decode("utf-8"), source=str(path))
    except (UnicodeDecodeError, configparser.Error) as exc:
        reason = str(exc).splitlines()[0][:80]
        out.skipped.append(f"{path}: not a pip configuration file ({reason})")
        return []
    found = []
    for section in SECTIONS:
        if not parser.has_section(section):
            continue
        for option, value in parser.items(section):
            name = option.replace("_", "-")  # pip accepts index_url for index-url
            if name in PIP_KEYS:
                found.append((name, value, f"{path} [{section}] {name}"))
    return found


# (sources key, variable) in the order they apply.
ENV_ORDER = (
    ("index", "PIP_INDEX_URL"),
    ("extra_indexes", "PIP_EXTRA_INDEX_URL"),
    ("find_links", "PIP_FIND_LINKS"),
    ("trusted_hosts", "PIP_TRUSTED_HOST"),
    ("ca_certificates", "PIP_CERT"),
    ("index", "UV_INDEX_URL"),
    ("index", "UV_DEFAULT_INDEX"),  # uv's newer name wins over UV_INDEX_URL
    ("extra_indexes", "UV_EXTRA_INDEX_URL"),
    ("extra_indexes", "UV_INDEX"),
    ("find_links", "UV_FIND_LINKS"),
    ("trusted_hosts", "UV_INSECURE_HOST"),
)
ENV_NAMES = tuple(name for _, name in ENV_ORDER)


def _env_items(environ: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(sources key, value, variable) in the order they apply."""
    return [(key, environ[name], name) for key, name in ENV_ORDER if environ.get(name, "").strip()]


def _accept(key: str, value: str | list[str], origin: str, out: HostSources) -> None:
    if isinstance(value, list):
        # UV_INDEX entries may be named: "name=https://…".
        value = [
            v.split("=", 1)[1] if "=" in v and "://" in v.split("=", 1)[1] else v for v in value
        ]
        if key == "extra_indexes" and key in out.found and origin.startswith("UV_INDEX"):
            # UV_EXTRA_INDEX_URL and UV_INDEX add up, as uv reads both.
            earlier = out.found[key]
            if earlier.origin.startswith("UV_"):
                value = [*earlier.value, *[v for v in value if v not in earlier.value]]
                origin = f"{earlier.origin} and {origin}"
    try:
        Sources.model_validate({key: value})
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        cause = error.get("ctx", {}).get("error")
        reason = getattr(cause, "message", None) or str(error.get("msg", "invalid"))
        out.skipped.append(f"{origin}: {reason}")
        return
    out.found[key] = Found(value=value, origin=origin)


def read_host_sources(
    environ: Mapping[str, str], home: Path, root: Path = Path("/")
) -> HostSources:
    out = HostSources()
    for path in config_files(environ, home, root):
        for option, text, origin in _read_file(path, out):
            key = PIP_KEYS[option]
            _accept(key, _split(key, text) if key in LISTS else text.strip(), origin, out)
    for key, text, origin in _env_items(environ):
        _accept(key, _split(key, text) if key in LISTS else text.strip(), origin, out)
    return out
