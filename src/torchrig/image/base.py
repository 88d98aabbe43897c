"""Base images without a registry: a root filesystem bootstrapped from the distribution's
package mirror, tarred reproducibly, cached, and imported into the engine.

    tag = bootstrap_base("debian:bookworm", "http://deb.debian.org/debian", "x86_64", None, engine)
    # -> "torchrig-base/debian:bookworm-3f2a9c0d1b7e"

Steps, and why:

1. `debootstrap --variant=minbase` (essential packages and apt, like the official images)
   into a folder inside the cache directory, its Release file checked against the
   distribution's archive keyring: the host's, or torchrig's own copy when the host has
   none (Debian 12 packages no Ubuntu keyring; see image/keyring.py). With no keyring to
   trust it refuses, unless the spec says `base.allow_unverified = true`: then it runs
   unchecked and says so loudly, and the image is labelled unverified.
2. Remove what makes two bootstraps differ or leaks the host: apt lists and caches, logs,
   ldconfig's aux-cache, the host's resolv.conf and hostname, device nodes (the engine
   mounts its own /dev; rootless engines cannot create them).
3. Write apt sources like the official images (release, -updates, -security).
4. Tar it reproducibly: names sorted, every mtime the same (SOURCE_DATE_EPOCH, else midnight
   UTC of the bootstrap date), numeric owners. Owners are kept, not forced to 0: files such
   as /etc/shadow (group shadow) and /var/log/wtmp (group utmp) need theirs.
5. Cache it as `<cache>/<distro>-<release>-<arch>-<date>.tar`: later runs on the same date
   (or with the same SOURCE_DATE_EPOCH) reuse it and skip the bootstrap.
6. Import it as `torchrig-base/<distro>:<release>-<sha256[:12]>`, named by content, so the
   same tarball is imported once per engine.

The cache is `$TORCHRIG_CACHE/bases` (default `$XDG_CACHE_HOME/torchrig/bases`, i.e.
`~/.cache/torchrig/bases`). debootstrap needs root, so `sudo torchrig prepare` bootstraps
into the shared cache (/var/cache/torchrig/bases, image/shared_cache.py) instead, and
`Bootstrapper.cached` lets any user import what is there after checking who wrote it and
its sha256. image/obtain.py decides between a registry base and these.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import tempfile
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from torchrig.command import command_line, run_command
from torchrig.engine.cli import Runner
from torchrig.errors import HostError, ToolError, UsageError
from torchrig.image.keyring import DATA as KEYRING_DATA
from torchrig.image.keyring import Keyring, choose_keyring, load_records
from torchrig.image.shared_cache import make_dirs, make_readable, trusted_file

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from torchrig.engine.base import Engine, Progress

CACHE_ENV = "TORCHRIG_CACHE"
TAG_REPOSITORY = "torchrig-base"
KEYRINGS = Path("/usr/share/keyrings")
SCRIPTS = Path("/usr/share/debootstrap/scripts")
DISTRIBUTIONS = ("debian", "ubuntu")
# Releases newer than the host's debootstrap borrow a script of the same family: Ubuntu's
# scripts have been the same since gutsy, Debian's newer releases are sid's.
FALLBACK_SCRIPT = {"debian": "sid", "ubuntu": "jammy"}
DEFAULT_COMPONENTS = {"debian": ("main",), "ubuntu": ("main", "universe")}
DEB_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
LOG_TAIL_LINES = 20
log = logging.getLogger(__name__)

# Left out of the tarball: they change from one bootstrap to the next or describe the host.
NOISE_GLOBS = (
    "var/lib/apt/lists/*",
    "var/cache/apt/*.bin",
    "var/cache/apt/archives/*.deb",
    "var/cache/apt/archives/partial/*",
    "var/cache/ldconfig/aux-cache",
    "var/cache/debconf/*-old",
    "var/lib/dpkg/*-old",
    "dev/*",
    "tmp/*",
    "var/tmp/*",
)
# debootstrap's line for a good signature: the key's fingerprint (gpgv's VALIDSIG).
VALID_SIGNATURE_RE = re.compile(r"Valid Release signature \(key id ([0-9A-Fa-f]{16,64})\)")
UNVERIFIED_WARNING = (
    "WARNING: bootstrapping {distro}:{release} WITHOUT checking package signatures "
    "(base.allow_unverified = true): anyone between this host and {mirror} can change "
    "every package of the base. No keyring: {why}."
)


@dataclass(frozen=True)
class BaseRequest:
    distro: str
    release: str
    arch: str
    """Debian architecture name: amd64, arm64."""
    mirror: str
    components: tuple[str, ...]
    day: date
    epoch: int

    @property
    def stem(self) -> str:
        return f"{self.distro}-{self.release}-{self.arch}-{self.day.isoformat()}"


@dataclass(frozen=True)
class BaseImage:
    """What bootstrap_base made or found: the tag, and the tarball it came from."""

    tag: str
    tar_path: Path
    sha256: str
    verified: bool
    reused_tar: bool
    reused_image: bool
    signed_by: str = ""
    """Fingerprint of the key that signed the Release file, as debootstrap reported it."""


@dataclass(frozen=True)
class Checked:
    """How a fresh bootstrap's packages were checked."""

    verified: bool
    keyring: str
    """The keyring's path, or "" when unverified."""
    signed_by: str


def default_cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root).expanduser() / "bases"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "torchrig" / "bases"


def parse_distribution(ref: str) -> tuple[str, str]:
    distro, sep, release = ref.partition(":")
    if not sep or distro not in DISTRIBUTIONS or not re.fullmatch(r"[a-z][a-z0-9-]*", release):
        raise UsageError(
            f"{ref!r} is not a distribution this can bootstrap",
            'use "debian:<release>" or "ubuntu:<release>", e.g. "debian:bookworm"',
        )
    return distro, release


def deb_arch(arch: str) -> str:
    try:
        return DEB_ARCH[arch.lower()]
    except KeyError:
        raise UsageError(
            f"architecture {arch!r} is not supported", "use x86_64 or aarch64"
        ) from None


def source_date_epoch() -> int | None:
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise UsageError(f"SOURCE_DATE_EPOCH={value!r} is not a number of seconds")
    return int(value)


def make_request(
    distribution_ref: str,
    mirror: str,
    arch: str,
    *,
    components: Sequence[str] | None = None,
    today: date | None = None,
) -> BaseRequest:
    distro, release = parse_distribution(distribution_ref)
    if not re.fullmatch(r"(https?|file)://\S+", mirror):
        raise UsageError(f"mirror {mirror!r} is not an http(s) or file URL")
    epoch = source_date_epoch()
    if epoch is not None:
        day = datetime.fromtimestamp(epoch, UTC).date()
    else:
        day = today or datetime.now(UTC).date()
        epoch = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
    return BaseRequest(
        distro=distro,
        release=release,
        arch=deb_arch(arch),
        mirror=mirror.rstrip("/"),
        components=tuple(components or DEFAULT_COMPONENTS[distro]),
        day=day,
        epoch=epoch,
    )


def image_tag(request: BaseRequest, sha256: str) -> str:
    return f"{TAG_REPOSITORY}/{request.distro}:{request.release}-{sha256[:12]}"


def apt_sources(request: BaseRequest) -> str:
    """sources.list as the official images have it: release, -updates and -security."""
    comps = " ".join(request.components)
    lines = [
        f"deb {request.mirror} {request.release} {comps}",
        f"deb {request.mirror} {request.release}-updates {comps}",
    ]
    if request.distro == "ubuntu":
        lines.append(f"deb {request.mirror} {request.release}-security {comps}")
    elif request.mirror.endswith("/debian"):
        security = request.mirror[: -len("/debian")] + "/debian-security"
        lines.append(f"deb {security} {request.release}-security {comps}")
    return "\n".join(lines) + "\n"


def tar_argv(rootfs: Path, out: Path, epoch: int) -> list[str]:
    """GNU tar, reproducibly: sorted names, one mtime, numeric owners, no atime/ctime."""
    return [
        "tar",
        "--create",
        "--file",
        str(out),
        "--directory",
        str(rootfs),
        "--sort=name",
        f"--mtime=@{epoch}",
        "--numeric-owner",
        "--format=posix",
        "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
        ".",
    ]


def find_program(name: str) -> str | None:
    """Like `which`, also looking in the sbin folders a non-root PATH often lacks."""
    return shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Bootstrapper:
    """bootstrap_base with its contact points to the machine as fields, for tests."""

    runner: Runner = field(default_factory=Runner)
    which: Callable[[str], str | None] = field(default=lambda name: find_program(name))
    is_root: Callable[[], bool] = field(default=lambda: os.geteuid() == 0)
    host_arch: str = field(default_factory=platform.machine)
    keyrings: Path = KEYRINGS
    """The host's keyrings (/usr/share/keyrings)."""
    keyring_data: Path = KEYRING_DATA
    """torchrig's own copies (image/data), used where the host has none."""
    scripts: Path = SCRIPTS
    today: date | None = None

    def bootstrap(
        self,
        distribution_ref: str,
        mirror: str,
        arch: str,
        cache_dir: Path | None,
        engine: Engine,
        *,
        components: Sequence[str] | None = None,
        progress: Progress | None = None,
        allow_unverified: bool = False,
    ) -> BaseImage:
        """allow_unverified: bootstrap without checking signatures when no keyring can be
        trusted (base.allow_unverified), instead of refusing."""
        request = make_request(
            distribution_ref, mirror, arch, components=components, today=self.today
        )
        say = progress or (lambda _line: None)
        cache = cache_dir or default_cache_dir()
        make_dirs(cache)
        tar_path = cache / f"{request.stem}.tar"
        meta_path = cache / f"{request.stem}.json"
        meta = _read_meta(meta_path)
        reused_tar = tar_path.is_file()
        if reused_tar and meta.get("verified", True) is False and not allow_unverified:
            # Made unchecked (by an older torchrig, or with allow_unverified): not reused.
            say(f"the cached base {tar_path} was bootstrapped unverified: bootstrapping again")
            reused_tar = False
        if reused_tar:
            say(f"using the cached base {tar_path}")
            checked = Checked(
                verified=meta.get("verified", True) is not False,
                keyring=str(meta.get("keyring", "")),
                signed_by=str(meta.get("signed_by", "")),
            )
        else:
            checked = self._make_tarball(request, tar_path, say, allow_unverified)
        sha = _cached_sha(tar_path, meta_path)
        if not reused_tar or not meta_path.is_file():
            _write_meta(meta_path, request, sha, image_tag(request, sha), checked)
        return self._import(request, tar_path, sha, checked, engine, say, progress, reused_tar)

    def cached(
        self,
        distribution_ref: str,
        mirror: str,
        arch: str,
        cache_dir: Path,
        engine: Engine,
        *,
        components: Sequence[str] | None = None,
        progress: Progress | None = None,
        allow_unverified: bool = False,
    ) -> BaseImage | None:
        """A base bootstrapped earlier into `cache_dir` (the shared cache `sudo torchrig
        prepare` fills), on any day, checked before use; None when none can be trusted.
        Never bootstraps, so it needs no root."""
        request = make_request(
            distribution_ref, mirror, arch, components=components, today=self.today
        )
        say = progress or (lambda _line: None)
        if source_date_epoch() is not None:
            stems = [request.stem]
        else:  # newest first: the ISO date in the name sorts
            pattern = f"{request.distro}-{request.release}-{request.arch}-*.json"
            stems = sorted((p.stem for p in cache_dir.glob(pattern)), reverse=True)
        for stem in stems:
            found = _check_cached(request, cache_dir / stem, say, allow_unverified)
            if found is not None:
                made, sha, checked = found
                tar_path = cache_dir / f"{stem}.tar"
                say(f"using the shared base {tar_path} (sha256 checked)")
                return self._import(made, tar_path, sha, checked, engine, say, progress, True)
        return None

    def _import(
        self,
        request: BaseRequest,
        tar_path: Path,
        sha: str,
        checked: Checked,
        engine: Engine,
        say: Progress,
        progress: Progress | None,
        reused_tar: bool,
    ) -> BaseImage:
        tag = image_tag(request, sha)
        verified, signed_by = checked.verified, checked.signed_by
        if engine.image_exists(tag):
            say(f"{engine.name} already has {tag}")
            return BaseImage(
                tag, tar_path, sha, verified, reused_tar, reused_image=True, signed_by=signed_by
            )
        say(f"importing {tar_path.name} into {engine.name} as {tag}")
        labels = {
            "org.opencontainers.image.title": f"{request.distro}:{request.release} (minbase)",
            "org.opencontainers.image.created": _iso(request.epoch),
            "io.torchrig.base.distribution": f"{request.distro}:{request.release}",
            "io.torchrig.base.mirror": request.mirror,
            "io.torchrig.base.rootfs-sha256": sha,
            "io.torchrig.base.verified": "true" if verified else "false",
        }
        if signed_by:
            labels["io.torchrig.base.signed-by"] = signed_by
        engine.import_rootfs(tar_path, tag, labels=labels, progress=progress)
        return BaseImage(
            tag, tar_path, sha, verified, reused_tar, reused_image=False, signed_by=signed_by
        )

    # --- the bootstrap itself -------------------------------------------------------------

    def _make_tarball(
        self, request: BaseRequest, tar_path: Path, say: Progress, allow_unverified: bool
    ) -> Checked:
        debootstrap = self._preflight(request)
        keyring = self.keyring_for(request, say, allow_unverified)
        work = Path(tempfile.mkdtemp(dir=tar_path.parent, prefix=f".{request.stem}-"))
        rootfs = work / "rootfs"
        try:
            argv = self.debootstrap_argv(
                debootstrap, request, rootfs, keyring.path if keyring else None
            )
            say(f"bootstrapping {request.distro}:{request.release} from {request.mirror}")
            signed_by = self._stream(argv, rootfs, say)
            if keyring and not signed_by:
                # debootstrap checked (it stops on a bad or unknown signature) but did not
                # say with which key; an unfamiliar debootstrap, so say so, do not guess.
                say("debootstrap did not report which key signed the Release file")
            unmount_under(rootfs)
            clean_rootfs(rootfs)
            (rootfs / "etc/apt/sources.list").write_text(apt_sources(request), "utf-8")
            partial = work / "rootfs.tar"
            tar = tar_argv(rootfs, partial, request.epoch)
            proc = self.runner.run(tar, timeout=None)
            if proc.returncode != 0:
                raise ToolError(
                    f"writing the base tarball failed: {proc.stderr.strip()[-400:]}",
                    f"reproduce with: {command_line(tar)}",
                )
            make_readable(partial)
            partial.replace(tar_path)
        finally:
            _remove_tree(work)
        say(f"cached {tar_path} ({tar_path.stat().st_size / 1e6:.0f} MB)")
        return Checked(keyring is not None, str(keyring.path) if keyring else "", signed_by)

    def keyring_for(
        self, request: BaseRequest, say: Progress, allow_unverified: bool
    ) -> Keyring | None:
        """The keyring debootstrap checks the Release file with; None (unverified) only
        when the spec allows it, else HostError."""
        keyring, passed_over = choose_keyring(
            request.distro, self.keyrings, self.keyring_data, load_records()
        )
        if keyring is not None:
            if keyring.origin == "torchrig":
                say(
                    f"checking signatures with torchrig's copy of the {request.distro} archive "
                    f"keyring ({'; '.join(passed_over)})"
                )
            return keyring
        why = "; ".join(passed_over)
        if not allow_unverified:
            package = load_records()[request.distro].host_package
            raise HostError(
                f"cannot check the package signatures of {request.distro}:{request.release}: {why}",
                f"install {package} (apt-get install {package}) or reinstall torchrig; to "
                "build on an unchecked base anyway, set base.allow_unverified = true in "
                "torchrig.toml",
            )
        warning = UNVERIFIED_WARNING.format(
            distro=request.distro, release=request.release, mirror=request.mirror, why=why
        )
        log.warning(warning)
        say(warning)
        return None

    def _preflight(self, request: BaseRequest) -> str:
        if not self.is_root():
            raise HostError(
                f"no registry answered and no shared base of {request.distro}:"
                f"{request.release} was found; bootstrapping one needs root (debootstrap "
                "creates device files and owns files as other users)",
                "ask an administrator to run `sudo torchrig prepare` once (it fills the shared "
                "cache for every user), or point sources.registry at a registry mirror",
            )
        found = self.which("debootstrap")
        if not found:
            raise HostError("debootstrap is not installed", "apt-get install debootstrap")
        if DEB_ARCH.get(self.host_arch.lower()) != request.arch:
            raise UsageError(
                f"cannot bootstrap {request.arch} on a {self.host_arch} host",
                "bootstrap on a machine of that architecture, or use a registry image",
            )
        return found

    def debootstrap_argv(
        self, debootstrap: str, request: BaseRequest, rootfs: Path, keyring: Path | None
    ) -> list[str]:
        argv = [
            debootstrap,
            "--variant=minbase",
            f"--arch={request.arch}",
            f"--components={','.join(request.components)}",
        ]
        argv.append(f"--keyring={keyring}" if keyring else "--no-check-gpg")
        argv += [request.release, str(rootfs), request.mirror]
        if not (self.scripts / request.release).exists():
            argv.append(str(self.scripts / FALLBACK_SCRIPT[request.distro]))
        return argv

    def _stream(self, argv: list[str], rootfs: Path, say: Progress) -> str:
        """Run debootstrap, showing its lines; return the fingerprint of the key that
        signed the Release file ("" when it reported none)."""
        tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        signed_by = ""
        lines = self.runner.lines(argv)
        while True:
            try:
                line = next(lines)
            except StopIteration as done:
                rc = int(done.value)
                break
            tail.append(line)
            say(line)
            if found := VALID_SIGNATURE_RE.search(line):
                signed_by = found.group(1).upper()
        if rc == 0:
            return signed_by
        log_file = rootfs / "debootstrap" / "debootstrap.log"
        with contextlib.suppress(OSError):
            tail.extend(
                log_file.read_text("utf-8", errors="replace").splitlines()[-LOG_TAIL_LINES:]
            )
        shown = "\n".join(f"    {line}" for line in tail)
        raise ToolError(
            f"debootstrap failed (exit status {rc})\n  last lines:\n{shown}",
            f"check that the mirror answers; reproduce with: {command_line(argv)}",
        )


def bootstrap_base(
    distribution_ref: str,
    mirror: str,
    arch: str,
    cache_dir: Path | None,
    engine: Engine,
    *,
    components: Sequence[str] | None = None,
    progress: Progress | None = None,
    allow_unverified: bool = False,
) -> str:
    """Make (or reuse) a base image for `distribution_ref` ("debian:bookworm"); return its tag."""
    base = Bootstrapper().bootstrap(
        distribution_ref,
        mirror,
        arch,
        cache_dir,
        engine,
        components=components,
        progress=progress,
        allow_unverified=allow_unverified,
    )
    return base.tag


# --- the file system ---------------------------------------------------------------------


def clean_rootfs(rootfs: Path) -> None:
    """Remove what differs between bootstraps or came from the host (see NOISE_GLOBS)."""
    for pattern in NOISE_GLOBS:
        for path in rootfs.glob(pattern):
            _remove_tree(path)
    log_dir = rootfs / "var/log"
    if log_dir.is_dir():
        # Logs go; the empty accounting files (wtmp, btmp, lastlog) and folders stay, with
        # the owners and modes their packages gave them.
        for path in sorted(log_dir.rglob("*")):
            if path.is_file() and not path.is_symlink() and path.stat().st_size > 0:
                path.unlink()
    etc = rootfs / "etc"
    if etc.is_dir():
        # debootstrap copies these from the host; the engine mounts its own at run time.
        (etc / "resolv.conf").unlink(missing_ok=True)
        (etc / "resolv.conf").write_text("", "utf-8")
        (etc / "hostname").write_text("localhost\n", "utf-8")


def mounts_under(path: Path, mountinfo: str | None = None) -> list[Path]:
    """Mount points at or below `path`, deepest first (from /proc/self/mountinfo)."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text("utf-8")
        except OSError:
            return []
    root = os.path.realpath(path)
    found: list[Path] = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        if point == root or point.startswith(root + "/"):
            found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def unmount_under(path: Path) -> None:
    """debootstrap may leave /proc, /sys or a bind of the host's /dev mounted in the target
    when it fails (and binds /dev where it cannot create device files). Deleting through
    such a mount would delete the host's files, so unmount them first, and refuse to go on
    if any stays."""
    for point in mounts_under(path):
        run_command(["umount", "--lazy", str(point)])
    left = mounts_under(path)
    if left:
        raise ToolError(
            f"cannot unmount {left[0]} inside the bootstrap folder; it was left in place",
            f"unmount it (umount --lazy {left[0]}), then delete {path}",
        )


def _remove_tree(path: Path) -> None:
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink(missing_ok=True)  # files, links, device nodes
        return
    if not path.exists():
        return
    unmount_under(path)
    shutil.rmtree(path)


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _read_meta(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _check_cached(
    request: BaseRequest, stem: Path, say: Progress, allow_unverified: bool
) -> tuple[BaseRequest, str, Checked] | None:
    """A cached tarball as its record describes it, if it can be trusted: written by root or
    this user and no one else, for the same mirror and components, verified (unless allowed
    otherwise), and its sha256, computed now, the recorded one."""
    tar_path, meta_path = stem.with_suffix(".tar"), stem.with_suffix(".json")
    if not tar_path.exists():
        return None
    if not (trusted_file(tar_path) and trusted_file(meta_path)):
        say(f"not using {tar_path}: written by another user, or writable by others")
        return None
    meta = _read_meta(meta_path)
    if meta.get("mirror") != request.mirror or meta.get("components") != list(request.components):
        return None
    if meta.get("verified") is not True and not allow_unverified:
        return None
    try:
        day = date.fromisoformat(str(meta.get("date")))
        epoch = int(str(meta.get("source_date_epoch")))
    except ValueError:
        return None
    sha = sha256_file(tar_path)
    if sha != meta.get("sha256"):
        say(f"not using {tar_path}: its sha256 {sha[:12]}… is not the recorded one")
        return None
    made = BaseRequest(
        request.distro,
        request.release,
        request.arch,
        request.mirror,
        request.components,
        day,
        epoch,
    )
    checked = Checked(
        verified=meta.get("verified") is True,
        keyring=str(meta.get("keyring", "")),
        signed_by=str(meta.get("signed_by", "")),
    )
    return made, sha, checked


def _cached_sha(tar_path: Path, meta_path: Path) -> str:
    """The tarball's sha256: from its metadata when that matches the file, else hashed."""
    meta = _read_meta(meta_path)
    stat = tar_path.stat()
    if meta.get("size") == stat.st_size and meta.get("mtime_ns") == stat.st_mtime_ns:
        sha = meta.get("sha256")
        if isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha):
            return sha
    return sha256_file(tar_path)


def _write_meta(path: Path, request: BaseRequest, sha: str, tag: str, checked: Checked) -> None:
    tar = path.with_suffix(".tar")
    stat = tar.stat()
    meta = {
        "distribution": f"{request.distro}:{request.release}",
        "arch": request.arch,
        "mirror": request.mirror,
        "components": list(request.components),
        "date": request.day.isoformat(),
        "source_date_epoch": request.epoch,
        "sha256": sha,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "tag": tag,
        "verified": checked.verified,
        "keyring": checked.keyring,
        "signed_by": checked.signed_by,
    }
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(meta, indent=2) + "\n", "utf-8")
    make_readable(partial)
    partial.replace(path)
