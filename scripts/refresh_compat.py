#!/usr/bin/env python3
"""Draft releases.toml entries for torch releases newer than torchrig's data.

Asks PyPI's JSON API about torch, torchvision, torchaudio and triton, and prints for each
torch release newer than the newest patch in src/torchrig/compat/data/releases.toml a
ready-to-paste [[release.patches]] block (plus a [[release]] skeleton when it opens a new
line) and the list of facts that must be checked by hand before committing.

    python scripts/refresh_compat.py                  # ask PyPI
    python scripts/refresh_compat.py --save pypi.json # ask PyPI, keep every answer
    python scripts/refresh_compat.py --offline pypi.json

--offline reads a saved file instead of the network: a JSON object mapping API paths
("torch", "torch/2.16.0", "torchvision/0.30.0", …) to PyPI's answers, as --save writes it; a
single saved https://pypi.org/pypi/torch/json answer works too. Standard library only, so
it runs from any checkout without installing anything. See docs/maintainers.md.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JSON = dict[str, Any]
API = "https://pypi.org/pypi"
RELEASES_TOML = Path(__file__).resolve().parents[1] / "src/torchrig/compat/data/releases.toml"
# Final releases only ("2.16.0", "0.29.2.post1"); pre-releases and dev builds never go into
# the data.
FINAL_RE = re.compile(r"^(\d+(?:\.\d+)*)(?:\.post(\d+))?$")
REQ_RE = re.compile(
    r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*\(?([^;)]*)\)?\s*(?:;(.*))?$"
)
CLAUSE_RE = re.compile(r"^\s*(===|==|!=|~=|>=|<=|>|<)\s*([^\s,]+)\s*$")

Key = tuple[tuple[int, ...], int]


# --- PyPI ------------------------------------------------------------------------------------


class Registry:
    """PyPI's JSON API, or a file of answers saved from it."""

    def __init__(self, offline: Path | None = None, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.offline = offline is not None
        self.answers: dict[str, JSON | None] = {}
        if offline is not None:
            saved = json.loads(offline.read_text("utf-8"))
            if "info" in saved and "releases" in saved:  # one bare project answer
                saved = {saved["info"]["name"].lower(): saved}
            self.answers = saved

    def get(self, path: str) -> JSON | None:
        """The answer for pypi.org/pypi/<path>/json; None when PyPI has no such page."""
        if path in self.answers or self.offline:
            return self.answers.get(path)
        request = urllib.request.Request(
            f"{API}/{path}/json", headers={"User-Agent": "torchrig-refresh-compat"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer: JSON | None = json.load(response)
        except urllib.error.HTTPError as error:
            if error.code != 404:
                raise
            answer = None
        self.answers[path] = answer
        return answer

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.answers, indent=1, sort_keys=True) + "\n", "utf-8")


# --- versions and requirements ---------------------------------------------------------------


def version_key(text: str) -> Key | None:
    """A sortable key for a final release, None for anything else (rc, dev, local)."""
    match = FINAL_RE.match(text.strip())
    if not match:
        return None
    release = tuple(int(x) for x in match.group(1).split("."))
    while len(release) > 1 and release[-1] == 0:  # 2.16 == 2.16.0
        release = release[:-1]
    return release, int(match.group(2) or 0)


def admits(spec: str, version: str) -> bool:
    """Whether a PEP 440 specifier such as ">=2.14.0,<3" admits a final version."""
    have = version_key(version)
    if have is None:
        return False
    for clause in filter(None, (c.strip() for c in spec.split(","))):
        match = CLAUSE_RE.match(clause)
        if not match:
            return False
        op, bound = match.groups()
        if bound.endswith(".*"):
            prefix = tuple(int(x) for x in bound[:-2].split("."))
            padded = have[0] + (0,) * len(prefix)
            same = padded[: len(prefix)] == prefix
            if same != (op == "=="):
                return False
            continue
        want = version_key(bound)
        if want is None:
            return False
        if op == "~=":
            parts = tuple(int(x) for x in bound.split("."))
            upper = (*parts[:-2], parts[-2] + 1) if len(parts) > 1 else (parts[0] + 1,)
            if not (have >= want and have[0] < upper):
                return False
            continue
        ok = {
            "==": have == want,
            "===": have == want,
            "!=": have != want,
            ">=": have >= want,
            "<=": have <= want,
            ">": have > want,
            "<": have < want,
        }[op]
        if not ok:
            return False
    return True


@dataclass
class Requirement:
    name: str
    spec: str
    marker: str

    @property
    def pinned(self) -> str:
        """The version of an exact (==) or compatible (~=) pin, else ''."""
        match = CLAUSE_RE.match(self.spec) if "," not in self.spec else None
        return match.group(2) if match and match.group(1) in ("==", "~=") else ""


def requirements(metadata: JSON | None) -> list[Requirement]:
    """The Requires-Dist entries of a project answer, leaving out optional extras."""
    found = []
    for line in ((metadata or {}).get("info") or {}).get("requires_dist") or []:
        match = REQ_RE.match(line)
        if not match:
            continue
        name, spec, marker = match.group(1), match.group(2).strip(), (match.group(3) or "")
        if re.search(r"\bextra\s*==", marker):  # optional extras are not torch's needs
            continue
        found.append(Requirement(name.lower().replace("_", "-"), spec, marker.strip()))
    return found


def requirement(reqs: list[Requirement], *names: str) -> Requirement | None:
    return next((r for r in reqs if r.name in names), None)


# --- wheels ----------------------------------------------------------------------------------


def final_versions(project: JSON) -> dict[str, list[JSON]]:
    """Final releases of a project with their non-yanked files."""
    out = {}
    for version, files in (project.get("releases") or {}).items():
        kept = [f for f in files if not f.get("yanked")]
        if kept and version_key(version) is not None:
            out[version] = kept
    return out


def upload_date(files: list[JSON]) -> str:
    times = [f.get("upload_time_iso_8601") or f.get("upload_time") or "" for f in files]
    return min(t for t in times if t)[:10] if any(times) else ""


def python_tags(files: list[JSON]) -> tuple[list[str], list[str]]:
    """CPython versions with Linux wheels: (regular, free-threaded), from cpXY tags."""
    regular: set[str] = set()
    threaded: set[str] = set()
    for f in files:
        name = f.get("filename", "")
        if not name.endswith(".whl") or "linux" not in name:
            continue
        python, abi = name[:-4].split("-")[-3:-1]
        for tag in python.split("."):
            if not tag.startswith("cp") or not tag[2:].isdigit():
                continue
            version = f"{tag[2]}.{tag[3:]}"
            if abi == "abi3":  # one stable-ABI wheel serves this version and later ones
                version += "+"
            (threaded if abi.endswith("t") else regular).add(version)
    order = sorted(regular | threaded, key=lambda v: int(v.split(".")[1].rstrip("+")))
    return [v for v in order if v in regular], [f"{v}t" for v in order if v in threaded]


def linux_arches(files: list[JSON]) -> list[str]:
    names = [f.get("filename", "") for f in files]
    arches = {
        a for n in names for a in ("x86_64", "aarch64") if "linux" in n and n.endswith(f"_{a}.whl")
    }
    return sorted(arches)


# --- the report ------------------------------------------------------------------------------


@dataclass
class Draft:
    version: str
    date: str
    python: list[str]
    free_threaded: list[str]
    requires_python: str
    arches: list[str]
    torchvision: str = ""
    torchvision_note: str = ""
    torchaudio: str = ""
    torchaudio_note: str = ""
    triton: str = ""
    triton_note: str = ""
    pins: dict[str, str] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)


def known_patches(path: Path) -> tuple[list[str], list[str], list[str]]:
    """(patch versions, release lines, torchvision versions) already in releases.toml."""
    data = tomllib.loads(path.read_text("utf-8"))
    releases = data.get("release", [])
    patches = [p["version"] for r in releases for p in r.get("patches", [])]
    visions = [p["torchvision"] for r in releases for p in r.get("patches", [])]
    return patches, [r["line"] for r in releases], [v for v in visions if v]


def newest(versions: list[str]) -> str:
    keyed = [(k, v) for v in versions if (k := version_key(v)) is not None]
    return max(keyed)[1] if keyed else "0"


def torch_metadata(registry: Registry, torch: JSON, version: str) -> JSON | None:
    """Requires-Dist of one torch version: its own page, else the project page if current."""
    own = registry.get(f"torch/{version}")
    if own is not None:
        return own
    return torch if torch.get("info", {}).get("version") == version else None


def match_torchvision(registry: Registry, version: str, since: str) -> tuple[str, str]:
    """The torchvision that names this torch in its Requires-Dist, and how it does so.

    Only torchvision releases from `since` (the newest one in the data) on are read: one
    request each, and 0.29.1+ showed that a loose `torch>=` companion may be reused.
    """
    project = registry.get("torchvision")
    if project is None:
        return "", "torchvision: PyPI answer missing"
    candidates = []
    floor = version_key(since)
    for tv, files in final_versions(project).items():
        key = version_key(tv)
        if floor is not None and key is not None and key < floor:
            continue
        metadata = registry.get(f"torchvision/{tv}")
        if metadata is None and project.get("info", {}).get("version") == tv:
            metadata = project
        dep = requirement(requirements(metadata), "torch")
        candidates.append((tv, upload_date(files), dep))
    exact = [tv for tv, _, dep in candidates if dep and dep.spec == f"=={version}"]
    if exact:
        return exact[0], f"torchvision {exact[0]} pins torch=={version}"
    loose = [
        (day, tv, dep.spec)
        for tv, day, dep in candidates
        if dep and dep.spec and admits(dep.spec, version)
    ]
    if loose:
        day, tv, spec = max(loose, key=lambda c: version_key(c[1]) or ((0,), 0))
        return tv, (
            f"torchvision {tv} (uploaded {day}) only requires torch{spec}: check it is the "
            "companion release (an exact pin would say so)"
        )
    unknown = [tv for tv, _, dep in candidates if dep is None]
    if unknown:
        return "", (
            f"torchvision: no Requires-Dist known for {', '.join(sorted(unknown))}; "
            "check by hand (pip download --no-deps torchvision==X and read METADATA)"
        )
    return "", "torchvision: no release requires this torch yet"


def match_torchaudio(registry: Registry, version: str) -> tuple[str, str]:
    project = registry.get("torchaudio")
    if project is None:
        return "", "torchaudio: PyPI answer missing"
    versions = final_versions(project)
    if version in versions:
        return version, f"torchaudio {version} released alongside"
    latest = newest(list(versions))
    return "", f"torchaudio: none for {version} (newest on PyPI: {latest}); left empty"


def draft(registry: Registry, torch: JSON, version: str, files: list[JSON], last_tv: str) -> Draft:
    python, threaded = python_tags(files)
    requires_python = next((f["requires_python"] for f in files if f.get("requires_python")), "")
    d = Draft(
        version=version,
        date=upload_date(files),
        python=python,
        free_threaded=threaded,
        requires_python=requires_python,
        arches=linux_arches(files),
    )
    reqs = requirements(torch_metadata(registry, torch, version))
    if not reqs:
        d.checks.append(
            f"Requires-Dist of torch {version} unknown (no per-version page): read the wheel "
            "METADATA (pip install --dry-run --report) for triton and the CUDA pins"
        )
    triton = requirement(reqs, "triton")
    if triton:
        d.triton = triton.pinned
        d.triton_note = f"torch pins triton{triton.spec}" + (
            f" ({triton.marker})" if triton.marker else ""
        )
        info = registry.get("triton")
        triton_files = final_versions(info or {}).get(d.triton, [])
        if triton_files:
            tp, tt = python_tags(triton_files)
            d.triton_note += f"; triton {d.triton} wheels: {' '.join(tp + tt)}"
            d.triton_note += f" on {', '.join(linux_arches(triton_files)) or 'no Linux'}"
        elif info is not None:
            d.checks.append(f"triton {d.triton} is not on PyPI (yet?)")
    for label, names in (
        ("cuda-toolkit", ("cuda-toolkit",)),
        ("cuda runtime", ("nvidia-cuda-runtime-cu12", "nvidia-cuda-runtime-cu13")),
        ("cudnn", ("nvidia-cudnn-cu12", "nvidia-cudnn-cu13")),
        ("nccl", ("nvidia-nccl-cu12", "nvidia-nccl-cu13")),
    ):
        req = requirement(reqs, *names)
        if req:
            d.pins[label] = f"{req.name}{req.spec}" + (f"  [{req.marker}]" if req.marker else "")
    d.torchvision, d.torchvision_note = match_torchvision(registry, version, last_tv)
    d.torchaudio, d.torchaudio_note = match_torchaudio(registry, version)
    return d


def render(d: Draft, new_line: str | None) -> str:
    out = [f"# === torch {d.version} " + "=" * max(0, 70 - len(d.version))]
    if new_line:
        py = ", ".join(f'"{v}"' for v in d.python)
        out += [
            f"# {d.version} opens the {new_line} line: a [[release]] skeleton to complete",
            "[[release]]",
            f'line = "{new_line}"',
            f"python = [{py}]",
            f'requires_python = "{d.requires_python}"',
            'pypi_x86_64 = "cuXXX"  # from the CUDA pins below',
            'pypi_aarch64 = "cuXXX"  # "cpu" if the aarch64 wheel has no CUDA dependencies',
            'sources = ["M", "S1"]',
            "",
        ]
    else:
        out.append(f"# CPython wheels: {' '.join(d.python)} (Requires-Python {d.requires_python})")
    if d.free_threaded:
        out.append(f"# free-threaded wheels (not listed in python): {' '.join(d.free_threaded)}")
    out.append(f"# Linux wheels for: {', '.join(d.arches) or 'none found'}")
    triton_comment = f"  # {d.triton_note}" if d.triton_note else ""
    out += [
        "[[release.patches]]",
        f'version = "{d.version}"',
        f'date = "{d.date}"',
        f'torchvision = "{d.torchvision}"  # {d.torchvision_note}',
        f'torchaudio = "{d.torchaudio}"  # {d.torchaudio_note}',
        f'triton = "{d.triton}"{triton_comment}',
        'sources = ["M"]',
        "",
    ]
    if d.pins:
        out.append("# CUDA pins in Requires-Dist (the PyPI default variant's cuda/cudnn/nccl):")
        out += [f"#   {label}: {pin}" for label, pin in d.pins.items()]
    out.append("# Check by hand before committing:")
    checks = [
        *d.checks,
        "arch lists: torch.cuda.get_arch_list() of the x86_64 and aarch64 wheels, and of "
        "every download.pytorch.org variant (docs/maintainers.md)",
        "cuda: map the cuda-toolkit / runtime pin to a toolkit version (T5 numbering) and "
        "make sure cuda.toml has its driver row",
        "aarch64: is the aarch64 wheel a CUDA build (nvidia deps without x86_64-only markers)?",
        "variants: RELEASE.md's compatibility matrix (stable / experimental CUDA versions)",
        "torchvision/torchaudio: exact pin or not (torchaudio_pin), and the release date",
    ]
    out += [f"#   - {c}" for c in checks]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--offline", type=Path, metavar="FILE", help="read saved PyPI answers")
    parser.add_argument("--save", type=Path, metavar="FILE", help="save PyPI's answers here")
    parser.add_argument("--data", type=Path, default=RELEASES_TOML, help="releases.toml to read")
    args = parser.parse_args(argv)

    registry = Registry(args.offline)
    patches, lines, visions = known_patches(args.data)
    last, last_tv = newest(patches), newest(visions)
    torch = registry.get("torch")
    if torch is None:
        print("no answer for torch (offline file without a 'torch' entry?)", file=sys.stderr)
        return 1
    last_key = version_key(last)
    fresh = sorted(
        (
            (key, v, files)
            for v, files in final_versions(torch).items()
            if (key := version_key(v)) is not None and last_key is not None and key > last_key
        ),
    )
    if not fresh:
        on_pypi = newest(list(final_versions(torch)))
        print(f"releases.toml is current: newest torch on PyPI is {on_pypi}, in the data {last}.")
    seen_lines = set(lines)
    for key, version, files in fresh:
        line = ".".join(str(x) for x in (key[0] + (0,))[:2])
        new_line = None if line in seen_lines else line
        seen_lines.add(line)
        print(render(draft(registry, torch, version, files, last_tv), new_line))
        print()
    if args.save:
        registry.save(args.save)
        print(f"saved {len(registry.answers)} PyPI answers to {args.save}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
