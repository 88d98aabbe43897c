"""Make a lock from a spec, and check that a lock still answers its spec."""

from __future__ import annotations

import tempfile
from pathlib import Path

from packaging.version import Version

from torchrig import __version__, userfiles
from torchrig.compat.model import Compat
from torchrig.compat.resolve import Resolution, choose_base, platform_tag, resolve
from torchrig.errors import UsageError
from torchrig.host.facts import HostFacts
from torchrig.lock.inputs import LockInputs, devel_requirements, lock_inputs
from torchrig.lock.lockfile import LockFile, Target
from torchrig.lock.uv import UvRequest, compile_lock
from torchrig.spec.model import Spec

SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def with_variant(spec: Spec, variant: str) -> Spec:
    """The spec with --variant applied, validated like `torch.variant` in the file (exit 2)."""
    from torchrig.spec.load import with_override

    return with_override(spec, "--variant", "torch", "variant", variant)


def resolutions_for(
    spec: Spec, host: HostFacts, compat: Compat, variants: list[str]
) -> list[Resolution]:
    """One resolution per asked variant; with none asked, the spec's own choice."""
    if not variants:
        return [resolve(spec, host, compat)]
    unique = list(dict.fromkeys(variants))
    return [resolve(with_variant(spec, v), host, compat) for v in unique]


def uv_request(spec: Spec, resolution: Resolution, inputs: LockInputs, ca_bundle: str) -> UvRequest:
    main = spec.sources.index
    # uv searches --index entries before --default-index, first listed first: the torch
    # index goes first so torch can only come from where the resolver said.
    indexes = [resolution.index] if resolution.index and resolution.index != main else []
    indexes += [i for i in spec.sources.extra_indexes if i not in indexes]
    devel = devel_requirements(resolution.cuda) if spec.torch.flavour == "devel" else []
    return UvRequest(
        requirements=[*resolution.requirements, *devel, *inputs.packages],
        python=resolution.python,
        platform=resolution.platform,
        default_index=main,
        indexes=indexes,
        find_links=list(spec.sources.find_links),
        ca_bundle=ca_bundle,
        insecure_hosts=list(spec.sources.trusted_hosts),
    )


def make_lock(
    spec: Spec,
    spec_digest: str,
    resolutions: list[Resolution],
    *,
    project: Path | None = None,
) -> LockFile:
    """Lock every target. `project` (default: the current folder) is the spec's folder:
    its owner's rights decide which CA files and wheelhouses may be used."""
    folder = project or Path.cwd()
    check_find_links(spec, folder)
    targets = []
    with tempfile.TemporaryDirectory(prefix="torchrig-ca-") as tmp:
        ca_bundle = _ca_bundle(spec, Path(tmp), folder)
        for res in resolutions:
            inputs = lock_inputs(spec, python=res.python, platform=res.platform)
            request = uv_request(spec, res, inputs, ca_bundle)
            packages = compile_lock(request)
            targets.append(
                Target(
                    variant=res.variant,
                    torch=res.torch,
                    cuda=res.cuda,
                    python=res.python,
                    platform=res.platform,
                    torch_index=res.index,
                    inputs_digest=inputs.digest(),
                    requirements=request.requirements,
                    packages=packages,
                )
            )
    return LockFile(torchrig=__version__, spec_digest=spec_digest, targets=targets)


def check_find_links(spec: Spec, project: Path) -> None:
    """uv reads local wheelhouses itself, as whoever runs torchrig: as root for another
    user's project, each must be a folder whose every file that user may read."""
    for link in spec.sources.find_links:
        if "://" in link:
            continue
        userfiles.check_folder(
            userfiles.expand(link.removeprefix("file:"), project),
            project,
            "sources.find_links",
            "name a wheelhouse whose files the project's owner may read",
        )


def _ca_bundle(spec: Spec, tmp: Path, project: Path) -> str:
    """The system CAs plus the spec's extra ones, for uv behind a TLS-inspecting proxy.
    The spec's are read with the project owner's rights (userfiles)."""
    if not spec.sources.ca_certificates:
        return ""
    parts = [SYSTEM_CA_BUNDLE.read_text()] if SYSTEM_CA_BUNDLE.exists() else []
    for name in spec.sources.ca_certificates:
        path = userfiles.expand(name, project)
        text = userfiles.read_text(
            path,
            project,
            "sources.ca_certificates",
            "point it at a PEM certificate file the project's owner may read",
        )
        if "BEGIN CERTIFICATE" not in text:
            raise UsageError(
                f"sources.ca_certificates: {path} is not a PEM certificate",
                "export the proxy's CA as PEM (-----BEGIN CERTIFICATE-----)",
            )
        parts.append(text)
    bundle = tmp / "ca-bundle.pem"
    bundle.write_text("\n".join(parts))
    return str(bundle)


def check_lock(lock: LockFile, spec: Spec, compat: Compat) -> list[str]:
    """Why the lock no longer answers the spec; empty when it still does.

    Host-independent on purpose: the target's own arch is used, and only what the spec
    decides is compared (a new torch release does not make a lock of "latest" stale).
    """
    problems: list[str] = []
    wanted = spec.torch.specifier()
    for t in lock.targets:
        arch = t.platform.split("-", 1)[0]
        base = choose_base(spec, arch, compat, [])
        platform = platform_tag(arch, base.glibc)
        inputs = lock_inputs(spec, python=base.python, platform=platform)
        label = f"target {t.variant}"
        if spec.torch.variant not in ("auto", t.variant):
            problems.append(f"{label}: torch.variant is now {spec.torch.variant}")
        if wanted is not None and not wanted.contains(Version(t.torch).public):
            problems.append(f'{label}: torch {t.torch} no longer matches "{spec.torch.version}"')
        if (t.python, t.platform) != (base.python, platform):
            problems.append(
                f"{label}: locked for Python {t.python} on {t.platform}, the spec now gives "
                f"Python {base.python} on {platform}"
            )
        elif inputs.digest() != t.inputs_digest:
            problems.append(f"{label}: packages or sources changed since it was locked")
    return problems
