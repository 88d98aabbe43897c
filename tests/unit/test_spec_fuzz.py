"""Property tests: whatever a file holds, loading it gives a Spec or ONE SpecError line, and
a host file gives HostFacts or ONE UsageError line.

Anything else escaping parse_spec would reach a person as "internal error"; a message on
two lines would break the one-line error contract of the CLI.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_spec import FULL
from torchrig.compat.model import load_compat
from torchrig.compat.resolve import resolve
from torchrig.errors import ResolutionError, SpecError, UsageError
from torchrig.host.facts import Driver, Gpu, HostFacts, System, load_host_facts
from torchrig.spec.load import load_spec, parse_spec, spec_digest
from torchrig.spec.model import tables

# Modest by default so the suite stays fast; TORCHRIG_FUZZ_EXAMPLES=20000 for a long hunt.
FUZZ = settings(
    max_examples=int(os.environ.get("TORCHRIG_FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def check(text: str) -> None:
    """The property: a Spec, or a SpecError whose text is one line."""
    try:
        spec = parse_spec(text)
    except SpecError as error:
        line = error.one_line()
        assert len(line.splitlines()) == 1, repr(line)
        assert line.startswith("torchrig.toml"), line
        assert error.exit_code == 2
        if error.line is not None:
            assert 1 <= error.line <= text.count("\n") + 1, (error.line, line)
    else:
        assert parse_spec(text) == spec  # deterministic
        spec_digest(spec)


# --- (a) random text and bytes -------------------------------------------------------------

# Pieces of TOML, so random text gets past the first character now and then.
TOML_BITS = st.sampled_from(
    [
        "[project]\n",
        'name = "x"\n',
        "[torch]\n",
        "[services.jupyter]\n",
        "port = ",
        "= ",
        '"',
        "'''",
        '"""',
        "[",
        "]",
        "{",
        "}",
        ",",
        ".",
        "\n",
        "\r\n",
        "#",
        "true",
        "1e999",
        "nan",
        "1979-05-27T07:32:00Z",
        "0x1F",
        "\\u00e9",
        "\x00",
        "\x85",
        "\u2028",
    ]
)


@FUZZ
@given(st.text())
def test_random_text(text: str) -> None:
    check(text)


@FUZZ
@given(st.lists(st.one_of(TOML_BITS, st.text(max_size=5)), max_size=30).map("".join))
def test_random_toml_like_text(text: str) -> None:
    check(text)


@FUZZ
@given(st.data())
def test_edits_of_a_valid_spec(data: st.DataObject) -> None:
    # Small random edits of a full spec: errors with real key paths and line numbers.
    text = FULL
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 4))
        insert = data.draw(st.one_of(TOML_BITS, st.text(max_size=3)))
        text = text[:at] + insert + text[at + cut :]
    check(text)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_in_a_file(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "torchrig.toml"
        path.write_bytes(raw)
        try:
            load_spec(path)
        except SpecError as error:
            assert len(error.one_line().splitlines()) == 1, repr(error.one_line())


# --- (b) random trees with the spec's own key names ----------------------------------------

FIELD_NAMES = sorted(
    {name for _, model, _ in tables() for name in model.model_fields}
    | {part for prefix, _, _ in tables() for part in prefix}
)
KEYS = st.one_of(
    st.sampled_from(FIELD_NAMES),
    st.sampled_from(FIELD_NAMES).map(lambda k: k[:-1] + "x"),  # near misses
    st.text(max_size=8),
)
VALUE_TEXT = st.one_of(
    st.sampled_from(
        ["", "auto", "all", "none", "latest", "2.9", "3.12", "cu128", "cpu", "16g", "0", "x"]
    ),
    st.text(max_size=10),
)
LEAVES = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([0, 1, 64, 2222, 8888, 65535, 70000]),
    st.floats(),
    VALUE_TEXT,
)
TREES = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=5)
    ),
    max_leaves=20,
)
TOP_TABLES = [prefix[0] for prefix, _, _ in tables() if len(prefix) == 1]
SPECS = st.tuples(
    st.dictionaries(
        st.one_of(st.sampled_from(TOP_TABLES), KEYS),
        st.one_of(st.dictionaries(KEYS, TREES, max_size=6), TREES),
        max_size=6,
    ),
    st.one_of(st.none(), st.just({"name": "demo"}), TREES),
).map(lambda pair: pair[0] if pair[1] is None else {**pair[0], "project": pair[1]})


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_string(key)


def toml_string(text: str) -> str:
    # JSON escapes are TOML escapes, except that TOML wants no raw DEL and no lone surrogates.
    out = json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")
    return re.sub(r"[\ud800-\udfff]", "\ufffd", out)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def to_toml(data: dict[str, Any]) -> str:
    """A tiny TOML writer: scalars and lists at the top, then one [table] per dict."""
    lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"[{toml_key(key)}]")
            lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()]
    return "\n".join(lines) + "\n"


@FUZZ
@given(SPECS)
def test_random_trees_of_spec_keys(data: dict[str, Any]) -> None:
    check(to_toml(data))


@FUZZ
@given(
    st.fixed_dictionaries(
        {"project": st.just({"name": "demo"})},
        optional={
            "torch": st.fixed_dictionaries(
                {},
                optional={
                    "version": VALUE_TEXT,
                    "variant": VALUE_TEXT,
                    "torchvision": LEAVES,
                    "flavour": st.sampled_from(["runtime", "devel", "x"]),
                },
            ),
            "services": st.dictionaries(
                st.sampled_from(["jupyter", "ssh", "tensorboard", "jupiter"]),
                st.fixed_dictionaries({}, optional={"port": LEAVES, "enabled": st.booleans()}),
                max_size=3,
            ),
            "resources": st.fixed_dictionaries(
                {},
                optional={
                    "gpus": TREES,
                    "shm": VALUE_TEXT,
                    "cpus": LEAVES,
                    "pids": LEAVES,
                },
            ),
        },
    )
)
def test_random_values_under_real_keys(data: dict[str, Any]) -> None:
    # Mostly right structure, random values: reaches the validators, not just the key check.
    text = to_toml({k: v for k, v in data.items() if k != "services"})
    for name, table in data.get("services", {}).items():
        text += f"[services.{name}]\n" + "".join(
            f"{k} = {toml_value(v)}\n" for k, v in table.items()
        )
    check(text)


def test_the_tiny_toml_writer_round_trips() -> None:
    import tomllib

    data = {"a": 1, "b": [1.5, "x\ny"], "t": {"k": {"in": True}, "s": 'q"uote'}, "é y": "z"}
    assert tomllib.loads(to_toml(data)) == data


# --- (c) host files: the same contract as the spec -----------------------------------------
# `--host FILE` is input too: whatever it holds, loading gives HostFacts or ONE UsageError line
# (exit 2), and facts that load never crash the resolver or put control characters on screen.

GOOD_HOST = HostFacts(
    system=System(arch="x86_64", cpus=8, memory_bytes=32 << 30),
    driver=Driver(version="580.95.05", cuda="13.0"),
    gpus=[Gpu(index=0, name="NVIDIA H100 80GB HBM3", cc="9.0", uuid="GPU-0", source="fixture")],
).model_dump(mode="json")
JSON_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=12)
)
JSON_TREES = st.recursive(
    JSON_LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)
# Values aimed at the facts the resolver reads: versions, compute capabilities, names.
HOST_VALUES = st.one_of(
    st.sampled_from(["", "9.0", "9", "9.0.1", "abc", "580", "580.95.05", "x86_64", "aarch64"]),
    st.text(max_size=12),
    JSON_LEAVES,
)
HOST_PATHS = [
    ("gpus", 0, "cc"),
    ("gpus", 0, "name"),
    ("gpus", 0, "index"),
    ("driver", "version"),
    ("driver", "cuda"),
    ("system", "arch"),
    ("system", "memory_bytes"),
    ("hostname",),
    ("schema_version",),
]


def check_host(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "host.json"
        path.write_bytes(raw)
        try:
            facts = load_host_facts(path)
        except UsageError as error:
            line = error.one_line()
            assert len(line.splitlines()) == 1, repr(line)
            assert error.exit_code == 2 and line.startswith("host facts file")
            return
    text = facts.to_json()
    assert not re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e]", "".join(_strings(facts)))
    try:
        resolution = resolve(parse_spec('[project]\nname = "t"\n'), facts, load_compat())
    except ResolutionError as error:
        assert len(error.one_line().splitlines()) == 1
    else:
        assert resolution.torch
    assert HostFacts.model_validate_json(text) == facts  # what `host --json` writes reads back


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if hasattr(value, "model_dump"):
        return _strings(value.model_dump())
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_as_a_host_file(raw: bytes) -> None:
    check_host(raw)


@FUZZ
@given(JSON_TREES)
def test_random_json_as_a_host_file(data: Any) -> None:
    check_host(json.dumps(data).encode())


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(HOST_PATHS), HOST_VALUES), min_size=1, max_size=3))
def test_edits_of_a_valid_host_file(edits: list[tuple[tuple[str | int, ...], Any]]) -> None:
    data = json.loads(json.dumps(GOOD_HOST))
    for path, value in edits:
        node = data
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
    check_host(json.dumps(data).encode())


def test_a_host_file_nested_past_the_recursion_limit() -> None:
    check_host(b"[" * 100_000 + b"]" * 100_000)
