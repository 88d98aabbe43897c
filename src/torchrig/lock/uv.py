"""Pin a requirement set with uv, called as a subprocess through its documented CLI.

`uv pip compile --format pylock.toml` gives every package's wheel URL, size and sha256 for the
target Python and platform. pylock.toml does not say which index a package came from:

- with one index and no wheelhouse there is nothing to say, every registry file came from it,
  so one uv run is the whole lock (the default; `torchrig lock` then costs what a bare
  `uv pip compile --generate-hashes` does, benchmarks/lock_speed.py);
- with several sources a second run with `--emit-index-annotation` over the same inputs
  names each package's index. It runs beside the first, not after it (a `--no-deps` run over
  the pins afterwards re-validated every package's index page: 3.5-4 s of a 5.6 s lock,
  2026-12-07). If the index changed between the two runs and the pins differ, the old
  `--no-deps` run over the exact pins settles it.
"""

from __future__ import annotations

import os
import re
import tempfile
import tomllib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlparse

from pydantic import BaseModel, ConfigDict

from torchrig.command import run_command
from torchrig.errors import HostError, ToolError

# Variables that would silently change what uv resolves against; torchrig passes all of this
# explicitly from the spec.
_UV_ENV_OVERRIDES = (
    "UV_INDEX",
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_FIND_LINKS",
    "UV_CONSTRAINT",
    "UV_OVERRIDE",
    "UV_INDEX_STRATEGY",
    "UV_PRERELEASE",
    "UV_NO_INDEX",
    "UV_PYTHON",
)


class LockedPackage(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    version: str
    index: str
    file: str
    url: str
    size: int | None
    sha256: str
    marker: str = ""
    sdist: bool = False


class UvRequest(BaseModel):
    """Everything one uv run needs; indexes in priority order (first wins)."""

    model_config = ConfigDict(frozen=True)

    requirements: list[str]
    python: str
    platform: str
    default_index: str
    indexes: list[str]
    find_links: list[str]
    ca_bundle: str = ""
    offline: bool = False
    insecure_hosts: list[str] = []
    """sources.trusted_hosts: TLS not checked (uv's --allow-insecure-host); hashes still are."""


def uv_binary() -> str:
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        from shutil import which

        found = which("uv")
        if found:
            return found
    raise HostError(
        "uv is not installed (torchrig locks with it)",
        "install torchrig with its dependencies: pip install torchrig (or pip install uv)",
    )


def compile_lock(request: UvRequest) -> list[LockedPackage]:
    with tempfile.TemporaryDirectory(prefix="torchrig-lock-") as tmp:
        work = Path(tmp)
        (work / "requirements.in").write_text("\n".join(request.requirements) + "\n")
        out = work / "pylock.toml"
        compile_args = ["pip", "compile", "requirements.in", "--format", "pylock.toml"]
        if _single_source(request):
            _run([*compile_args, "-o", str(out)], request, work)
            packages = _parse_pylock(out.read_text("utf-8"))
            index_of = {_normalise(str(p["name"])): request.default_index for p in packages}
        else:
            packages, index_of = _compile_with_indexes(compile_args, out, request, work)
    return sorted(
        (_locked(p, index_of.get(_normalise(str(p["name"])), "")) for p in packages),
        key=lambda p: p.name,
    )


def _single_source(request: UvRequest) -> bool:
    """Only the main index can have served the files: no other index, no wheelhouse."""
    return bool(request.default_index) and not request.indexes and not request.find_links


def _compile_with_indexes(
    compile_args: list[str], out: Path, request: UvRequest, work: Path
) -> tuple[list[dict[str, object]], dict[str, str]]:
    """The pylock run and the index-annotation run of the same inputs, side by side."""
    annotate = ["pip", "compile", "requirements.in", "--emit-index-annotation", "--no-header"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        locked = pool.submit(_run, [*compile_args, "-o", str(out)], request, work)
        annotated = pool.submit(_run, annotate, request, work)
        locked.result()
        text = annotated.result()
    packages = _parse_pylock(out.read_text("utf-8"))
    pins = {(_normalise(str(p["name"])), str(p["version"])) for p in packages}
    if _parse_pins(text) != pins:
        # The index moved between the two runs: ask again for exactly the locked pins.
        (work / "pinned.in").write_text("".join(f"{p['name']}=={p['version']}\n" for p in packages))
        text = _run(
            ["pip", "compile", "pinned.in", "--no-deps", "--emit-index-annotation", "--no-header"],
            request,
            work,
        )
    return packages, _parse_index_annotations(text)


def _run(args: Sequence[str], request: UvRequest, cwd: Path) -> str:
    cmd = [uv_binary(), *args, *_common_args(request)]
    unset = [k for k in _UV_ENV_OVERRIDES if k in os.environ]
    env: dict[str, str] = {}
    # The system's trust store, as pip and curl use it: a firewall's or company's CA added
    # with update-ca-certificates is trusted (uv's default is its own bundled roots, which
    # failed with "invalid peer certificate: UnknownIssuer" behind such a proxy).
    if "UV_NATIVE_TLS" not in os.environ:
        env["UV_NATIVE_TLS"] = "1"
    if request.ca_bundle:
        env["SSL_CERT_FILE"] = request.ca_bundle
    try:
        done = run_command(cmd, env=env, unset=unset, cwd=cwd)
    except OSError as exc:
        raise ToolError(
            f"could not run uv ({exc.strerror})", "reinstall uv: pip install uv"
        ) from None
    if done.returncode != 0:
        raise ToolError(
            f"uv could not lock the packages: {_uv_reason(done.stderr)}", _uv_fix(done.stderr)
        )
    return done.stdout


def _common_args(request: UvRequest) -> list[str]:
    args = [
        "--python-version",
        request.python,
        "--python-platform",
        request.platform,
        "--no-config",
        # The target Python is described by --python-version; never fetch an interpreter.
        "--no-python-downloads",
        "--quiet",
    ]
    if request.default_index:
        args += ["--default-index", request.default_index]
    else:
        args += ["--no-index"]
    for index in request.indexes:
        args += ["--index", index]
    for link in request.find_links:
        args += ["--find-links", link]
    for host in request.insecure_hosts:
        args += ["--allow-insecure-host", host]
    if request.offline:
        args.append("--offline")
    return args


def _uv_reason(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    # uv prints "error: …" then indented "Caused by:" / "╰─▶" explanation lines.
    interesting = [ln for ln in lines if not ln.startswith("hint:")]
    text = " ".join(interesting)[:400] if interesting else "no output"
    return re.sub(r"\s+", " ", text.replace("╰─▶", "").replace("×", ""))


def _uv_fix(stderr: str) -> str:
    low = stderr.lower()
    missing = re.search(r"there is no version of (\S+)", stderr)
    if missing:
        return (
            f"no configured source has {missing.group(1)}: add an index or wheelhouse "
            "(sources.find_links) that does, or drop it from the spec"
        )
    if "no solution found" in low or "unsatisfiable" in low:
        return "relax the conflicting requirements in python.packages, or pick another torch"
    if any(s in low for s in ("dns", "connect", "network", "timed out", "certificate")):
        return (
            "check the network or the mirror in [sources]; behind a TLS-inspecting proxy add its "
            "CA to sources.ca_certificates; offline, point sources.find_links at a wheelhouse"
        )
    return "rerun with --debug to see the uv command"


def _parse_pylock(text: str) -> list[dict[str, object]]:
    data = tomllib.loads(text)
    return list(data.get("packages", []))


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _parse_pins(text: str) -> set[tuple[str, str]]:
    """The `name==version` lines of a requirements.txt uv wrote."""
    found = (re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line) for line in text.splitlines())
    return {(_normalise(m.group(1)), m.group(2)) for m in found if m}


def _parse_index_annotations(text: str) -> dict[str, str]:
    """Map package name → index from `# from URL` lines under each `name==version`."""
    result: dict[str, str] = {}
    current = ""
    for line in text.splitlines():
        pin = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", line)
        if pin:
            current = _normalise(pin.group(1))
            continue
        origin = re.match(r"^\s+# from (\S+)", line)
        if origin and current:
            result[current] = origin.group(1)
    return result


def _locked(entry: dict[str, object], index: str) -> LockedPackage:
    wheels = entry.get("wheels") or []
    assert isinstance(wheels, list)
    if wheels:
        artifact, sdist = wheels[0], False
    else:
        artifact, sdist = entry.get("sdist") or {}, True
    assert isinstance(artifact, dict)
    url = str(artifact.get("url") or artifact.get("path") or "")
    size = artifact.get("size")
    if size is None and url.startswith("file://"):
        local = Path(unquote(urlparse(url).path))
        size = local.stat().st_size if local.exists() else None
    hashes = artifact.get("hashes") or {}
    assert isinstance(hashes, dict)
    sha256 = str(hashes.get("sha256", ""))
    if not sha256:
        raise ToolError(
            f"uv gave no sha256 for {entry.get('name')}; torchrig only locks hashed files",
            "use an index or wheelhouse that serves hashes",
        )
    return LockedPackage(
        name=str(entry["name"]),
        version=str(entry["version"]),
        index=index,
        file=unquote(url.rsplit("/", 1)[-1]),
        url=url,
        size=int(size) if isinstance(size, int) else None,
        sha256=sha256,
        marker=str(entry.get("marker", "")),
        sdist=sdist,
    )
