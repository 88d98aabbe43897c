"""Reading the files a project names, and writing its own, with the rights of the project's
owner.

Root often runs torchrig for a project another user owns (a server's admin starting a
person's workbench). Every file the spec or the command line names — torchrig.toml itself,
torchrig.env, --env-file, --host, user.authorized_keys, sources.ca_certificates,
sources.find_links — ends up somewhere that person can see: in their container, its
environment, its image or an error line. Read as root, `authorized_keys = ["/etc/shadow"]`
or a torchrig.env that is a symlink to a root-only file hands that file to them (issue 10,
finding 2). So, when root reads for a project it does not own, the file is opened by a
forked child that has become the project's owner (uid, gid and their groups): the kernel
decides, with every ACL, mount option and directory permission on the way, exactly as if
the owner had asked. On top of that, a path inside the project must not be a symlink that
leads out of it, and only regular files are read (a FIFO or /dev/zero would hang or fill
memory).

Run by the owner themselves (not root), or by root for root's own project, files are read
in-process with the same checks but the symlink rule: a person may name what they can read.

Files torchrig writes into such a project for its owner (torchrig.images, by `torchrig
push`) are written the same way, by a child that has become the owner: they end up the
owner's, never root-owned files in someone's project that they cannot rewrite.
"""

from __future__ import annotations

import errno
import os
import pwd
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from torchrig.errors import DISK_ERRNOS, UsageError, disk_error
from torchrig.fsutil import write_atomically

MAX_BYTES = 16 << 20  # a spec, env file, key list or CA bundle is far below this
NOBODY = 65534
# What a child tells its parent, on the first line of the pipe, before the file's bytes.
_OK, _NOT_REGULAR, _TOO_BIG, _FAILED = b"ok", b"not-regular", b"too-big", b"failed"


@dataclass(frozen=True)
class Owner:
    """Whose rights a project's files are read with, when that is not this process's."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    project: Path
    """The project folder as named (absolute, not resolved): what 'inside' means."""


def _refused(number: int, text: str, path: Path | str | None = None) -> OSError:
    """Why a file was not read: `strerror` is one short clause. OSError picks the subclass
    from errno (FileNotFoundError, PermissionError …), so callers catch what they know."""
    return OSError(number, text) if path is None else OSError(number, text, str(path))


def owner_of(project: Path) -> Owner | None:
    """The owner to act as for files of `project`, or None to read as this process.

    Only root acts as someone else. A folder root owns is root's, unless others may write
    in it (/tmp): then anyone could have put the files there, so read as nobody.
    """
    if os.geteuid() != 0:
        return None
    folder = Path(os.path.abspath(project))  # noqa: PTH100 - as named: symlinks kept
    st = folder.stat()
    uid = st.st_uid
    if uid == 0:
        if not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return None
        uid = NOBODY
    try:
        entry = pwd.getpwuid(uid)
        gid = entry.pw_gid
        groups = tuple(sorted(set(os.getgrouplist(entry.pw_name, gid))))
    except KeyError:  # a UID with no passwd entry: its folder's group, never root's
        gid = st.st_gid if st.st_gid != 0 and uid != NOBODY else NOBODY
        groups = (gid,)
    return Owner(uid=uid, gid=gid, groups=groups, project=folder)


def expand(name: str, project: Path) -> Path:
    """A user-named path with `~` as the project owner's home when acting for them."""
    owner = owner_of(project)
    if owner is None or not (name == "~" or name.startswith("~/")):
        return Path(name).expanduser()
    try:
        return Path(pwd.getpwuid(owner.uid).pw_dir + name[1:])
    except KeyError:  # no home to expand to: left as named, so reading it fails plainly
        return Path(name)


def read_bytes(path: Path, project: Path, *, limit: int = MAX_BYTES) -> bytes:
    """The file's bytes, read as the project's owner; an OSError if not."""
    owner = owner_of(project)
    if owner is None:
        return _decode(_read_here(str(path), limit), path, None, limit)
    _check_inside(path, owner)
    return _decode(_as_owner(owner, str(path), limit), path, owner, limit)


def read_text(path: Path, project: Path, what: str, fix: str, *, limit: int = MAX_BYTES) -> str:
    """read_bytes as UTF-8 text; any problem is one UsageError line naming `what`."""
    try:
        raw = read_bytes(path, project, limit=limit)
    except OSError as exc:
        raise UsageError(f"{what}: cannot read {path} ({reason(exc)})", fix) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{what}: {path} is not UTF-8 text", fix) from None


def reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def check_folder(path: Path, project: Path, what: str, fix: str) -> None:
    """A folder (a wheelhouse) whose every file the owner may read, else one UsageError."""
    owner = owner_of(project)
    if owner is None:
        return  # this process's own rights: the tools that read it run with them too
    try:
        _check_inside(path, owner)
        _decode(_as_owner(owner, str(path), 0, folder=True), path, owner, 0)
    except OSError as exc:
        raise UsageError(f"{what}: cannot read {path} ({reason(exc)})", fix) from None


def check_reachable(path: Path, project: Path, what: str, fix: str) -> None:
    """A folder or file to bind-mount: the owner may open it (and enter it, a folder), else
    one UsageError. Nothing is read: a data set of a million files costs one open."""
    owner = owner_of(project)
    if owner is None:
        return  # this process's own rights: it may mount what it may read
    try:
        _check_inside(path, owner)
        _decode(_as_owner(owner, str(path), 0, probe=True), path, owner, 0)
    except OSError as exc:
        raise UsageError(f"{what}: cannot use {path} ({reason(exc)})", fix) from None


def private_copy(path: Path, project: Path, dest: Path, what: str, fix: str) -> Path:
    """Copy a file read as the owner to `dest`, mode 0600, for a tool that runs as root.

    The engine CLI reads --env-file itself, as whoever runs it: handing it the user's path
    would read it as root. The copy holds only what the owner could read anyway.
    """
    try:
        data = read_bytes(path, project)
    except OSError as exc:
        raise UsageError(f"{what}: cannot read {path} ({reason(exc)})", fix) from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)  # 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        Path(tmp).replace(dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def write_text(path: Path, project: Path, text: str, what: str, fix: str) -> None:
    """Write a file of the project whole or not at all (fsutil.write_atomically), as the
    project's owner when root works for someone else: the file is theirs like the rest of
    their project, and the kernel checks their right to write there, not root's. A failure
    is one UsageError (a full disk: DiskError)."""
    owner = owner_of(project)
    if owner is None:
        write_atomically(path, text)
        return
    try:
        _check_inside(path, owner)
        number = _write_as_owner(owner, path, text)
    except OSError as exc:
        number = exc.errno or errno.EIO
    if not number:
        return
    if number in DISK_ERRNOS:
        raise disk_error(OSError(number, os.strerror(number), str(path)), path)
    why = os.strerror(number)
    if number in (errno.EACCES, errno.EPERM):
        why = f"uid {owner.uid}, the project's owner, may not write there"
    raise UsageError(f"{what}: cannot write {path} ({why})", fix)


# --- mechanics ------------------------------------------------------------------------------


def _write_as_owner(owner: Owner, path: Path, text: str) -> int:
    """write_atomically in a forked child that has become the owner for good; 0, or the
    errno that stopped it (its exit status)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into the parent's code
        code = errno.EIO
        try:
            os.setgroups(list(owner.groups))
            os.setresgid(owner.gid, owner.gid, owner.gid)
            os.setresuid(owner.uid, owner.uid, owner.uid)
            write_atomically(path, text)
            code = 0
        except BaseException as exc:  # the parent words the error
            # write_atomically words most OSErrors itself (`from None` keeps the context).
            cause = exc if isinstance(exc, OSError) else exc.__context__
            if isinstance(cause, OSError) and cause.errno and cause.errno < 256:
                code = cause.errno
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _check_inside(path: Path, owner: Owner) -> None:
    """A path named inside the project stays inside it once its symlinks are followed."""
    if _inside(str(path), owner) is None:
        return
    project = str(owner.project)
    real, real_project = os.path.realpath(path), os.path.realpath(project)
    if real != real_project and not real.startswith(real_project.rstrip("/") + "/"):
        raise _refused(errno.EPERM, f"a symlink out of the project folder {project}")


def _read_here(path: str, limit: int, *, folder: bool = False, probe: bool = False) -> bytes:
    """Open and read with this process's rights: a status line, then the bytes. `probe`:
    only open the path (and enter it, a folder), for a mount source."""
    try:
        if probe:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
            try:
                if stat.S_ISDIR(os.fstat(fd).st_mode):
                    os.fchdir(fd)  # search (x) permission, as a process in the mount needs
            finally:
                os.close(fd)
            return _OK + b"\n"
        if folder:
            for entry in os.scandir(path):
                if entry.is_file(follow_symlinks=True):
                    os.close(os.open(entry.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))
            return _OK + b"\n"
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                return _FAILED + f" {errno.EISDIR}\n".encode()
            if not stat.S_ISREG(st.st_mode):
                return _NOT_REGULAR + b"\n"
            if st.st_size > limit:
                return _TOO_BIG + b"\n"
            chunks, size = [], 0
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    return _TOO_BIG + b"\n"
            return _OK + b"\n" + b"".join(chunks)
        finally:
            os.close(fd)
    except OSError as exc:
        return _FAILED + f" {exc.errno or errno.EIO}\n".encode()


def _inside(path: str, owner: Owner) -> str | None:
    """`path` relative to the project folder when it is named inside it, else None."""
    named, project = os.path.abspath(path), str(owner.project)  # noqa: PTH100 - as named
    if named == project:
        return "."
    if named.startswith(project.rstrip("/") + "/"):
        return os.path.relpath(named, project)
    return None


def _as_owner(
    owner: Owner, path: str, limit: int, *, folder: bool = False, probe: bool = False
) -> bytes:
    """_read_here in a forked child that has become the owner for good.

    A file inside the project is opened from the project folder, which this process opens
    first: the owner reads the project's files with their rights, but needs no right to the
    folders above it (a project of root's in 0700 /root, read as nobody because the
    workbench UID may write in it; _check_inside has kept its symlinks inside)."""
    relative = _inside(path, owner)
    start = None
    if relative is not None:
        start = os.open(owner.project, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        path = relative
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the parent's code
        code = 70
        try:
            os.close(read_end)
            if start is not None:
                os.fchdir(start)
            os.setgroups(list(owner.groups))
            os.setresgid(owner.gid, owner.gid, owner.gid)
            os.setresuid(owner.uid, owner.uid, owner.uid)
            data = memoryview(_read_here(path, limit, folder=folder, probe=probe))
            while data:
                data = data[os.write(write_end, data) :]
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    if start is not None:
        os.close(start)
    chunks = []
    try:
        while chunk := os.read(read_end, 1 << 16):
            chunks.append(chunk)
    finally:
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise _refused(errno.EIO, "the reading process failed")
    return b"".join(chunks)


def _decode(reply: bytes, path: Path, owner: Owner | None, limit: int) -> bytes:
    head, _, data = reply.partition(b"\n")
    if head == _OK:
        return data
    if head == _NOT_REGULAR:
        raise _refused(errno.EINVAL, "not a regular file")
    if head == _TOO_BIG:
        raise _refused(errno.EFBIG, f"larger than {limit} bytes")
    number = int(head.split()[1]) if head.startswith(_FAILED + b" ") else errno.EIO
    if number == errno.EACCES and owner is not None:
        text = f"uid {owner.uid}, the project's owner, may not read it"
    else:
        text = os.strerror(number)
    raise _refused(number, text, path)
