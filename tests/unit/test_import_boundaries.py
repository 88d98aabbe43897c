"""The host-side library never reaches back up into the command line.

argparse and `torchrig.cli` belong to the CLI: a library module that imports them (or takes
an argparse Namespace, which needs the import to be named) ties itself to one front end and
makes an import cycle cli -> launch -> cli. Program entry points may parse arguments: the
`__main__` modules and the job runner that runs inside the image (`python -m
torchrig.jobs.runner`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import torchrig

PACKAGE = Path(torchrig.__file__).parent
LIBRARY = (
    *("spec", "host", "compat", "lock", "plan", "image", "engine", "launch", "jobs"),
    # The targets rendered from the plan, and the services beside it.
    *("cluster", "kube", "push", "lab", "serve", "monitor"),
)
# The in-image programs: the job runner and the metrics service the supervisor starts.
ENTRY_POINTS = {"jobs/runner.py", "monitor/exporter.py"}
FORBIDDEN = ("argparse", "torchrig.cli")


def imported_modules(source: str, package: str) -> list[tuple[int, str]]:
    """Every module `source` (a module of `package`) imports, at any depth: functions and
    TYPE_CHECKING blocks too."""
    tree = ast.parse(source)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def library_files() -> list[Path]:
    files = []
    for name in LIBRARY:
        for path in sorted((PACKAGE / name).rglob("*.py")):
            relative = path.relative_to(PACKAGE).as_posix()
            if path.name != "__main__.py" and relative not in ENTRY_POINTS:
                files.append(path)
    return files


def offending(source: str, package: str, name: str) -> list[str]:
    return [
        f"{name}:{line} imports {module}"
        for line, module in imported_modules(source, package)
        if any(module == f or module.startswith(f + ".") for f in FORBIDDEN)
    ]


def check(path: Path) -> list[str]:
    package = ".".join(("torchrig", *path.relative_to(PACKAGE).parent.parts))
    return offending(path.read_text(), package, path.relative_to(PACKAGE).as_posix())


def test_no_library_module_imports_the_cli_or_argparse() -> None:
    files = library_files()
    assert len(files) > 50, "the library packages were found"
    problems = [p for path in files for p in check(path)]
    assert problems == []


@pytest.mark.parametrize(
    "source",
    [
        "import argparse\n",
        "from argparse import Namespace\n",
        "def f():\n    from torchrig.cli.common import host_facts\n",
        "from ..cli import common\n",
    ],
)
def test_the_check_sees_every_spelling(source: str) -> None:
    # As if it were a module of torchrig.launch: the relative import resolves from there.
    assert offending(source, "torchrig.launch", "launch/x.py"), source


def test_the_check_leaves_other_imports_alone() -> None:
    source = "import argparsex\nfrom torchrig.client import x\nfrom . import cli_words\n"
    assert offending(source, "torchrig.launch", "launch/x.py") == []
