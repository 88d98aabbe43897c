"""The spec: valid files, the digest, and how every kind of broken file is reported.

Each malformed spec must give ONE line naming the file, the line (where the key is in the
file), the key path, what is wrong and, where one makes sense, how to fix it.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from typing import TYPE_CHECKING, get_args, get_origin

import pytest
from pydantic import BaseModel

from tests.golden_util import GOLDEN, ROOT, assert_golden
from torchrig.errors import SpecError
from torchrig.host.facts import Driver, Engine, Gpu, HostFacts, System
from torchrig.spec.load import load_spec, locate, parse_spec, spec_digest
from torchrig.spec.model import Project, Spec, tables
from torchrig.spec.reference import EXAMPLE, REGENERATE, render_reference
from torchrig.spec.template import WIDTH, project_name_from, render_spec, toml_value

if TYPE_CHECKING:
    from pathlib import Path

DIGEST = "sha256:" + "0123456789abcdef" * 4

# Every key of the model set to something other than its default.
FULL = f"""\
[project]
name = "full-spec"

[torch]
version = ">=2.8,<2.12"
variant = "cu128"
flavour = "devel"
torchvision = false
torchaudio = true

[python]
version = "3.12"
packages = ["peft>=0.13", "wandb[media]; python_version >= '3.10'"]
stack = "minimal"

[base]
distribution = "auto"
image = "nvcr.io/nvidia/cuda:12.8.1-runtime-ubuntu24.04@{DIGEST}"
packages = ["ffmpeg", "git-lfs", "libsndfile1=1.2.2-1"]

[user]
name = "alice"
uid = 1000
gid = 1000
authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample alice@laptop"]

[services.jupyter]
enabled = true
port = 8890

[services.ssh]
enabled = false
port = 2200

[services.tensorboard]
enabled = true
port = 0

[services.metrics]
enabled = false
port = 9500

[services.serve]
enabled = true
port = 8010

[resources]
gpus = ["0", "GPU-0f42dc1e-75c5-2bda-54ca-2a62d2c91151"]
shm = "32g"
memory = "200g"
cpus = 7.5
pids = 4096
stop_timeout = 300

[sources]
index = "https://pypi.internal.example/simple/"
extra_indexes = ["https://extra.example/simple"]
find_links = ["/srv/wheelhouse"]
torch_index = "https://download.pytorch.org/whl/cu128"
apt_mirror = "http://mirror.example/ubuntu"
ca_certificates = ["/etc/ssl/corp-ca.pem"]
preset = "china"
trusted_hosts = ["mirror.example:8080"]
hf_endpoint = "https://hf.example"

[cache]
huggingface = "host"

[[mounts]]
source = "/data/imagenet"
target = "/data"

[[mounts]]
source = "~/models"
target = "/models"
read_only = false

[lab]
hub_port = 8000
"""


def _table_list(annotation: object) -> type[BaseModel] | None:
    """The item model of a list of tables ([[mounts]]), else None."""
    args = get_args(annotation)
    if get_origin(annotation) is list and args and isinstance(args[0], type):
        return args[0] if issubclass(args[0], BaseModel) else None
    return None


def _optional_table(annotation: object) -> bool:
    members = get_args(annotation)
    return type(None) in members and any(
        isinstance(m, type) and issubclass(m, BaseModel) for m in members
    )


def leaf_keys(table_lists: bool = True) -> list[tuple[str, ...]]:
    """Every key that holds a value (not a table), as a path; the keys of a list of tables
    ([[mounts]]) as ("mounts", "source") unless table_lists is False."""
    keys: list[tuple[str, ...]] = []
    for prefix, model, _ in tables():
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                continue
            if _optional_table(annotation):
                continue  # a section added only when wanted ([lab]: docs/lab.md)
            item = _table_list(annotation)
            if item is None:
                keys.append((*prefix, name))
            elif table_lists:
                keys += [(*prefix, name, sub) for sub in item.model_fields]
    return keys


# --- valid specs ---------------------------------------------------------------------------


def test_minimal_spec_takes_every_default() -> None:
    spec = parse_spec('[project]\nname = "x"\n')
    assert spec.project.name == "x"
    assert spec == Spec(project=Project(name="x"))
    assert spec.torch.version == "latest" and spec.torch.variant == "auto"
    assert spec.services.jupyter.port == 8888 and spec.services.jupyter.enabled
    assert spec.services.ssh.port == 2222
    assert spec.services.tensorboard.port == 6006 and not spec.services.tensorboard.enabled
    assert spec.resources.gpus == "all"


def test_full_spec_sets_every_key() -> None:
    spec = parse_spec(FULL)
    for path in leaf_keys():  # FULL must keep up with the model
        assert locate(FULL, list(path)) is not None, f"FULL does not set {'.'.join(path)}"
    assert spec.torch.specifier() is not None
    assert spec.python.packages[1].startswith("wandb[media]")
    assert spec.base.image.endswith(DIGEST)
    assert spec.user.uid == 1000
    assert spec.services.ssh.enabled is False
    assert spec.resources.gpus == ["0", "GPU-0f42dc1e-75c5-2bda-54ca-2a62d2c91151"]
    assert spec.resources.cpus == 7.5
    assert spec.sources.index == "https://pypi.internal.example/simple"  # trailing / dropped


def test_a_service_table_may_only_disable_it() -> None:
    spec = parse_spec('[project]\nname = "x"\n[services.ssh]\nenabled = false\n')
    assert spec.services.ssh.port == 2222 and not spec.services.ssh.enabled


def test_disabled_services_may_share_a_port() -> None:
    parse_spec('[project]\nname = "x"\n[services.tensorboard]\nport = 8888\n')


def test_inline_and_dotted_tables_are_the_same_spec() -> None:
    a = parse_spec('[project]\nname = "x"\n[services.jupyter]\nport = 9000\n')
    b = parse_spec('project = { name = "x" }\nservices.jupyter.port = 9000\n')
    assert a == b


def test_byte_order_mark_is_accepted_in_a_file(tmp_path: Path) -> None:
    path = tmp_path / "torchrig.toml"
    path.write_bytes('\ufeff[project]\nname = "x"\n'.encode())
    assert load_spec(path).project.name == "x"


def test_release_line_and_exact_version_specifiers() -> None:
    def version(text: str) -> Spec:
        return parse_spec(f'[project]\nname = "x"\n[torch]\nversion = "{text}"\n')

    assert version("latest").torch.specifier() is None
    assert str(version("2.9").torch.specifier()) == "==2.9.*"
    assert str(version("2.9.1").torch.specifier()) == "==2.9.1"
    assert version(">=2.8,<2.12").torch.specifier() is not None


# --- digest --------------------------------------------------------------------------------


def test_digest_ignores_comments_layout_order_and_explicit_defaults() -> None:
    plain = parse_spec('[project]\nname = "x"\n[torch]\nversion = "2.9"\n')
    noisy = parse_spec(
        textwrap.dedent(
            """\
            # a comment
            [torch]
            version="2.9"     # trailing comment

                variant = "auto"   # the default, written out

            [project]
              name = "x"
            """
        )
    )
    dotted = parse_spec('project.name = "x"\ntorch = { version = "2.9" }\n')
    digest = spec_digest(plain)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    assert spec_digest(noisy) == digest
    assert spec_digest(dotted) == digest


def test_digest_changes_with_any_value() -> None:
    base = '[project]\nname = "x"\n[torch]\nversion = "2.9"\n'
    digest = spec_digest(parse_spec(base))
    assert spec_digest(parse_spec(base.replace("2.9", "2.10"))) != digest
    assert spec_digest(parse_spec(base + "[resources]\ncpus = 1\n")) != digest
    assert spec_digest(parse_spec(base.replace('"x"', '"y"'))) != digest


def test_digest_of_an_integer_cpu_limit_is_the_float_one() -> None:
    a = parse_spec('[project]\nname = "x"\n[resources]\ncpus = 8\n')
    b = parse_spec('[project]\nname = "x"\n[resources]\ncpus = 8.0\n')
    assert spec_digest(a) == spec_digest(b)


# --- malformed specs -----------------------------------------------------------------------

P = '[project]\nname = "x"\n'  # lines 1-2; what a case adds starts at line 3


@dataclass(frozen=True)
class Bad:
    id: str
    text: str
    key: str | None  # the key path the message must name; None for syntax errors
    line: int | None  # the line the message must name; None where there is no line
    fix: str | None  # a piece of the fix hint; None where no hint is expected
    says: str = ""  # a piece of the message itself


BAD = [
    # broken TOML
    Bad("unclosed-string", '[project]\nname = "x\n', None, 2, 'close the string with a "'),
    Bad("missing-value", "[project]\nname =\n", None, 2, "write a value"),
    Bad("duplicate-key", P + 'name = "y"\n', None, 3, "keep one", "set twice"),
    Bad("bad-table-header", '[project\nname = "x"\n', None, 1, "[name]", "header"),
    Bad("table-twice", P + "[torch]\n[torch]\n", None, 4, "merge", "declared twice"),
    Bad("key-without-value", P + "torchvision\n", None, 3, "key = value"),
    # wrong types
    Bad(
        "port-as-string",
        P + '[services.jupyter]\nport = "8888"\n',
        "services.jupyter.port",
        4,
        "drop the quotes: port = 8888",
        'expected a whole number, got string "8888"',
    ),
    Bad(
        "torchvision-yes",
        P + '[torch]\ntorchvision = "yes"\n',
        "torch.torchvision",
        4,
        "torchvision = true",
        "expected true or false",
    ),
    Bad(
        "packages-as-string",
        P + '[python]\npackages = "numpy"\n',
        "python.packages",
        4,
        'packages = ["numpy"]',
        "expected a list",
    ),
    Bad(
        "cpus-as-string",
        P + '[resources]\ncpus = "8"\n',
        "resources.cpus",
        4,
        "drop the quotes: cpus = 8",
    ),
    Bad("uid-as-string", P + '[user]\nuid = "1000"\n', "user.uid", 4, "uid = 1000", '"auto"'),
    Bad("project-as-string", 'project = "x"\n', "project", 1, "[project] table"),
    Bad(
        "package-not-a-string",
        P + '[python]\npackages = ["numpy", 1]\n',
        "python.packages[1]",
        4,
        "in quotes",
    ),
    Bad(
        "port-in-inline-table",
        P + '[services]\njupyter = { port = "a" }\n',
        "services.jupyter.port",
        4,
        None,
    ),
    Bad(
        "gpus-as-float",
        P + "[resources]\ngpus = 1.5\n",
        "resources.gpus",
        4,
        '"all", "none"',
        "a whole number or a list",
    ),
    Bad(
        "gpus-as-integers",
        P + "[resources]\ngpus = [0, 1]\n",
        "resources.gpus[0]",
        4,
        'gpus = ["0"]',
    ),
    # unknown keys
    Bad(
        "unknown-table-typo", P + '[torhc]\nversion = "2.8"\n', "torhc", 3, 'did you mean "torch"?'
    ),
    Bad(
        "unknown-key-typo",
        P + '[torch]\nversoin = "2.8"\n',
        "torch.versoin",
        4,
        'did you mean "version"?',
        "unknown key",
    ),
    Bad(
        "unknown-dotted-key",
        'torch.varaint = "cpu"\n' + P,
        "torch.varaint",
        1,
        'did you mean "variant"?',
    ),
    Bad(
        "table-under-another-table",
        P + 'torch.variant = "cpu"\n',
        "project.torch",
        3,
        "after a [torch] header",
    ),
    Bad(
        "unknown-key-in-service",
        P + "[services.jupyter]\nprot = 9999\n",
        "services.jupyter.prot",
        4,
        'did you mean "port"?',
    ),
    Bad("key-in-wrong-table", 'version = "2.8"\n' + P, "version", 1, "belongs under [torch]"),
    Bad("unknown-junk", P + "colour = 3\n", "project.colour", 3, "known keys of [project]: name"),
    # impossible values
    Bad("port-70000", P + "[services.ssh]\nport = 70000\n", "services.ssh.port", 4, "0 to 65535"),
    Bad("negative-cpus", P + "[resources]\ncpus = -1\n", "resources.cpus", 4, "use 0 to 8192"),
    Bad("infinite-cpus", P + "[resources]\ncpus = inf\n", "resources.cpus", 4, "number like 8"),
    Bad("pids-too-low", P + "[resources]\npids = 10\n", "resources.pids", 4, "use 64 to 4194304"),
    Bad(
        "stop-timeout-too-long",
        P + "[resources]\nstop_timeout = 7200\n",
        "resources.stop_timeout",
        4,
        "10 to 3600",
    ),
    Bad("uid-0", P + "[user]\nuid = 0\n", "user.uid", 4, "1 to 2147483646", "0 is root"),
    Bad("user-root", P + '[user]\nname = "root"\n', "user.name", 4, "pick another name"),
    Bad("user-bad-name", P + '[user]\nname = "Alice Smith"\n', "user.name", 4, '"alice"'),
    Bad("shm-lots", P + '[resources]\nshm = "lots"\n', "resources.shm", 4, '"16g"', "not a size"),
    Bad("memory-12-GB", P + '[resources]\nmemory = "12 GB"\n', "resources.memory", 4, "no space"),
    Bad(
        "memory-as-date",
        P + "[resources]\nmemory = 1979-05-27\n",
        "resources.memory",
        4,
        None,
        "got date",
    ),
    Bad("torch-banana", P + '[torch]\nversion = "banana"\n', "torch.version", 4, '"2.13"'),
    Bad("torch-empty", P + '[torch]\nversion = ""\n', "torch.version", 4, '"latest"'),
    Bad("torch-major-only", P + '[torch]\nversion = "2"\n', "torch.version", 4, '"2.13"'),
    Bad(
        "torch-local-version",
        P + '[torch]\nversion = "2.9.1+cu128"\n',
        "torch.version",
        4,
        "torch.variant",
    ),
    Bad("variant-cu999x", P + '[torch]\nvariant = "cu999x"\n', "torch.variant", 4, '"cu128"'),
    Bad("variant-rocm", P + '[torch]\nvariant = "rocm"\n', "torch.variant", 4, "CUDA"),
    Bad("flavour-dev", P + '[torch]\nflavour = "dev"\n', "torch.flavour", 4, '"runtime" or'),
    Bad("python-2.7", P + '[python]\nversion = "2.7"\n', "python.version", 4, '"3.12"'),
    Bad("python-3", P + '[python]\nversion = "3"\n', "python.version", 4, '"3.12"'),
    Bad("python-3.12-newline", P + '[python]\nversion = "3.12\\n"\n', "python.version", 4, "3.12"),
    Bad("stack-unknown", P + '[python]\nstack = "full"\n', "python.stack", 4, '"workbench"'),
    Bad(
        "image-without-digest",
        P + '[base]\nimage = "ubuntu:24.04"\n',
        "base.image",
        4,
        "@sha256:",
        "not an image reference pinned by digest",
    ),
    Bad(
        "distribution-and-image",
        P + f'[base]\ndistribution = "ubuntu:noble"\nimage = "u@{DIGEST}"\n',
        "base.image",
        5,
        "not both",
    ),
    Bad(
        "distribution-unknown",
        P + '[base]\ndistribution = "fedora:40"\n',
        "base.distribution",
        4,
        "ubuntu:noble",
    ),
    Bad(
        "bad-apt-package",
        P + '[base]\npackages = ["ffmpeg", "Lib Foo"]\n',
        "base.packages[1]",
        4,
        '"ffmpeg"',
    ),
    Bad(
        "bad-pep508",
        P + '[python]\npackages = ["numpy>>1"]\n',
        "python.packages[0]",
        4,
        "PEP 508",
        "not a valid requirement",
    ),
    Bad(
        "bad-pep508-multiline-list",
        P + '[python]\npackages = [\n  "ok",\n  "bad>>",\n]\n',
        "python.packages[1]",
        4,
        "PEP 508",
    ),
    Bad(
        "two-services-one-port",
        P + "[services.jupyter]\nport = 2222\n",
        "services.jupyter.port",
        4,
        "its own port",
        "services.ssh",
    ),
    Bad(
        "tensorboard-on-jupyter-port",
        P + "[services.tensorboard]\nenabled = true\nport = 8888\n",
        "services.tensorboard.port",
        5,
        "its own port",
    ),
    Bad("gpus-empty-list", P + "[resources]\ngpus = []\n", "resources.gpus", 4, '"none"'),
    Bad("gpus-zero", P + "[resources]\ngpus = 0\n", "resources.gpus", 4, "1 to 64"),
    Bad("gpus-x", P + '[resources]\ngpus = ["x"]\n', "resources.gpus[0]", 4, "nvidia-smi -L"),
    Bad("gpus-twice", P + '[resources]\ngpus = ["1", "1"]\n', "resources.gpus[1]", 4, "once"),
    Bad("gpus-word", P + '[resources]\ngpus = "some"\n', "resources.gpus", 4, '"all"'),
    Bad("gpus-quoted-count", P + '[resources]\ngpus = "2"\n', "resources.gpus", 4, "gpus = 2"),
    Bad("index-not-url", P + '[sources]\nindex = "pypi.org"\n', "sources.index", 4, "https://"),
    Bad(
        "extra-index-not-url",
        P + '[sources]\nextra_indexes = ["https://ok.example", "ftp://no"]\n',
        "sources.extra_indexes[1]",
        4,
        "https://",
    ),
    # names
    Bad("name-upper-case", '[project]\nname = "My Project"\n', "project.name", 2, "lower case"),
    Bad("name-with-newline", '[project]\nname = "a\\nb"\n', "project.name", 2, "lower case"),
    Bad("name-too-long", f'[project]\nname = "{"a" * 64}"\n', "project.name", 2, "63"),
    # missing pieces
    Bad("missing-project", '[torch]\nversion = "2.8"\n', "project", None, "add a [project] table"),
    Bad("missing-name", "[project]\n", "project.name", 1, "add name = "),
    Bad("empty-file", "", "project", None, "[project]"),
    # TOML that Python cannot hold
    Bad("huge-integer", P + "[resources]\ncpus = " + "9" * 5000 + "\n", None, None, None),
    Bad("deep-nesting", "a = " + "[" * 3000 + "]" * 3000 + "\n", None, None, None),
]


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_malformed_spec_is_one_precise_line(case: Bad) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(case.text)
    error = caught.value
    text = error.one_line()
    assert "\n" not in text and len(text.splitlines()) == 1, text
    where = "torchrig.toml" + (f":{case.line}" if case.line is not None else "")
    if case.key is None:
        assert text.startswith(f"{where}: not valid TOML"), text
    else:
        assert text.startswith(f"{where}: {case.key}: "), text
    assert error.line == case.line and error.key == case.key, text
    if case.fix is not None:
        assert error.fix and case.fix in error.fix, text
        assert f" — {error.fix}" in text
    assert case.says in error.message, text
    assert "Input should" not in text and "pydantic" not in text  # no pydantic wording
    assert error.exit_code == 2


def test_there_are_enough_malformed_cases() -> None:
    assert len(BAD) >= 25


def test_a_typo_is_reported_before_the_missing_key_it_causes() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec('[project]\nnmae = "x"\n')
    assert caught.value.key == "project.nmae"
    assert caught.value.fix == 'did you mean "name"?'


def test_a_port_clash_points_at_the_port_the_file_sets() -> None:
    # ssh is left at its default 2222; the line to change is jupyter's.
    with pytest.raises(SpecError) as caught:
        parse_spec(P + "[services.ssh]\nenabled = true\n[services.jupyter]\nport = 2222\n")
    assert (caught.value.key, caught.value.line) == ("services.jupyter.port", 6)


def test_the_path_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "torchrig.toml"
    path.write_text(P + "[torch]\nvariant = 1\n")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert caught.value.one_line().startswith(f"{path}:4: torch.variant: ")


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "torchrig.toml"
    path.write_bytes(b'[project]\nname = "caf\xe9"\n')
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    text = caught.value.one_line()
    assert text.startswith(f"{path}:2: is not UTF-8 text (byte 0xe9 at offset 21)"), text
    assert caught.value.fix == "save it as UTF-8"


def test_a_folder_instead_of_a_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(tmp_path)
    assert caught.value.one_line() == (
        f"{tmp_path}: is a folder, not a file — pass the torchrig.toml inside it"
    )


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(tmp_path / "torchrig.toml")
    assert caught.value.fix is not None and "torchrig init" in caught.value.fix
    assert "\n" not in caught.value.one_line()


@pytest.mark.parametrize(
    ("text", "loc", "line"),
    [
        (FULL, ["services", "ssh", "port"], 33),
        (FULL, ["resources", "gpus"], 48),
        (FULL, ["services", "ssh"], 31),
        (FULL, ["torch"], 4),
        ('a = 1\n["quoted.table"]\n"b" = 2\n', ["quoted.table", "b"], 3),
        ("[x]\ny = { z = 1 }\n", ["x", "y", "z"], 2),
        ("x.y = 1\n[other]\n", ["x", "y"], 1),
        ("[x]  # comment\ny = 1\n", ["x"], 1),
        ("[x]\ny = 1\n", ["nowhere"], None),
        ("[x]\ny = 1\n", [], None),
        ('# a\u2028b\x85c\x0c\n[x]\ns = "\u2028"\ny = 1\n', ["x", "y"], 4),
        ("[x]\r\ny = 1\r\n", ["x", "y"], 2),
    ],
)
def test_locate(text: str, loc: list[str], line: int | None) -> None:
    assert locate(text, loc) == line


# --- torchrig init's template --------------------------------------------------------------


def h100(index: int, uuid: str, pci_bus_id: str = "") -> Gpu:
    return Gpu(
        index=index,
        name="NVIDIA H100 80GB HBM3",
        uuid=uuid,
        memory_mib=81559,
        cc="9.0",
        mig=False,
        pci_bus_id=pci_bus_id,
        source="fixture",
    )


def h100_host() -> HostFacts:
    """One H100 SXM on Ubuntu 24.04, as in tests/fixtures/host/h100-sxm."""
    return HostFacts(
        collected_at="2026-11-24T00:00:00+00:00",
        hostname="h100-box",
        system=System(
            os="Ubuntu 24.04.3 LTS",
            kernel="6.18.44",
            arch="x86_64",
            cpus=16,
            memory_bytes=135_089_000_448,
            shm_bytes=67_544_500_224,
            user="alice",
            uid=1000,
            gid=1000,
        ),
        driver=Driver(version="580.159.04", cuda="13.0", source="fixture"),
        gpus=[h100(0, "GPU-0f42dc1e-75c5-2bda-54ca-2a62d2c91151", "00000000:00:06.0")],
        engines=[
            Engine(
                name="docker",
                path="/usr/bin/docker",
                client_version="28.3.2",
                server_version="28.3.2",
                reachable=True,
                nvidia_runtime=True,
            ),
            Engine(name="podman"),
        ],
    )


def eight_h100_root_host() -> HostFacts:
    """Eight H100s, run as root, engines not probed."""
    return HostFacts(
        system=System(os="Ubuntu 22.04.5 LTS", cpus=224, memory_bytes=2 << 40, user="root", uid=0),
        driver=Driver(version="570.172.08", cuda="12.8"),
        gpus=[h100(i, f"GPU-{i}") for i in range(8)],
    )


def no_gpu_host() -> HostFacts:
    """A laptop: no NVIDIA driver, no GPU."""
    return HostFacts(
        system=System(
            os="Debian GNU/Linux 12 (bookworm)",
            arch="x86_64",
            cpus=8,
            memory_bytes=16 << 30,
            shm_bytes=8 << 30,
            user="bob",
            uid=1000,
            gid=1000,
        ),
        engines=[
            Engine(
                name="docker",
                path="/usr/bin/docker",
                client_version="27.5.1",
                error="permission denied on /var/run/docker.sock",
            )
        ],
        notes=["no NVIDIA driver: /proc/driver/nvidia/version does not exist"],
    )


HOSTS = {"h100": h100_host, "8x-h100-root": eight_h100_root_host, "no-gpu": no_gpu_host}


@pytest.mark.parametrize("case", sorted(HOSTS))
def test_init_template_golden(case: str) -> None:
    assert_golden(GOLDEN / "init" / case / "torchrig.toml", render_spec("demo", HOSTS[case]()))


@pytest.mark.parametrize("case", sorted(HOSTS))
def test_init_template_is_the_defaults_plus_the_name(case: str) -> None:
    text = render_spec("demo", HOSTS[case]())
    spec = parse_spec(text)
    assert spec == Spec(project=Project(name="demo"))
    assert spec_digest(spec) == spec_digest(Spec(project=Project(name="demo")))
    # Every key written, so a person sees what they can change; a list of tables ([[mounts]])
    # has no default to write: an example in comments shows it.
    for path in leaf_keys(table_lists=False):
        assert locate(text, list(path)) is not None, f"{'.'.join(path)} is not written"
    assert "# [[mounts]]" in text
    for line in text.splitlines():
        assert len(line) <= WIDTH or not line.startswith("#"), line


def test_init_template_says_what_the_host_has() -> None:
    h100 = render_spec("demo", h100_host())
    assert "GPU 0: NVIDIA H100 80GB HBM3 (compute capability 9.0, 79.6 GiB)" in h100
    assert "NVIDIA driver: 580.159.04, runs CUDA up to 13.0" in h100
    eight = render_spec("demo", eight_h100_root_host())
    assert "GPUs 0-7: 8 × NVIDIA H100 80GB HBM3" in eight
    assert 'so "auto" means "rig"' in eight
    none = render_spec("demo", no_gpu_host())
    assert 'no NVIDIA GPU found: torch.variant = "auto" resolves to cpu here' in none
    assert "--host" in none


@pytest.mark.parametrize(
    ("folder", "name"),
    [
        ("demo", "demo"),
        ("My Project (v2)", "my-project-v2"),
        ("Ünïcödé_Prøject", "unicode_prject"),
        ("__init__", "init"),
        (".hidden", "hidden"),
        ("a" * 100, "a" * 63),
        ("---", "workbench"),
        ("日本語", "workbench"),
        ("", "workbench"),
        ("x.y_z-1", "x.y_z-1"),
    ],
)
def test_project_name_from_folder(folder: str, name: str) -> None:
    assert project_name_from(folder) == name
    Project(name=project_name_from(folder))


@pytest.mark.parametrize(
    "value", ["", 'a"b\\c\nd\te\x01', "ünï", 0, 7.5, 0.0, True, False, [], ["a", "b"], [1, 2]]
)
def test_toml_value_round_trips(value: object) -> None:
    import tomllib

    assert tomllib.loads(f"v = {toml_value(value)}")["v"] == value


# --- the generated reference ---------------------------------------------------------------


def test_reference_docs_are_generated_from_the_model() -> None:
    committed = (ROOT / "docs" / "spec-reference.md").read_text("utf-8")
    assert committed == render_reference(), (
        "docs/spec-reference.md is out of date with src/torchrig/spec/model.py; regenerate "
        f"it with:\n  PYTHONPATH=src {REGENERATE}"
    )


def test_reference_documents_every_key_and_a_valid_example() -> None:
    text = render_reference()
    for *table, key in leaf_keys():
        name = ".".join(table)
        assert f"## [{name}]" in text or f"## [[{name}]]" in text
        assert f"| `{key}` |" in text
    parse_spec(EXAMPLE)
