"""Let the workbench user write a root-owned project folder, without a chown.

Run as root, torchrig never gives the workbench root, so the workbench user is another UID
and a root-owned project (`install.sh ~/myproject`, the usual way on a rented server) is not
writable by it. The folder stays root's: torchrig adds one POSIX ACL entry for the
workbench UID, with the owner's rights, to the folder and everything already in it (access
ACL), and the same entry as the directories' default ACL so whatever is created later
inherits it. Root reads and deletes everything the workbench writes, as root does anyway.

Why an ACL and not the alternatives: a chown hands root's folder to another account; a
user-namespace mapping (idmapped mounts) is not something Docker can do for a bind mount;
a group would need a chgrp of root's files. An ACL names exactly one extra UID and changes
nobody else's rights: the mask is widened only after every other group-class entry is
clamped to what the old mask let it do.

The UID (see `ROOT_DEFAULT_ID`): as root the spec's "auto" ids would be root's, so the
workbench gets a fixed UID/GID that no host account uses. Granting an ACL to 1000 (the
old default) would hand the project to whoever is UID 1000 on the host, usually a person.

The ACL is written as the `system.posix_acl_{access,default}` xattr (the kernel's format,
`linux/posix_acl_xattr.h`; tests/unit/test_workspace_access.py reads it back with getfacl),
so torchrig needs no package. The walk opens every entry relative to its parent's file
descriptor with O_NOFOLLOW, never leaves the folder's filesystem, and touches only
directories and regular files with one link: a symlink, a device node, or a hard link to a
file elsewhere can never route the grant outside the project, even if the workbench swaps
entries while the walk runs.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import pwd
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from torchrig.errors import HostError, UsageError

# The workbench's UID and GID when torchrig runs as root and the spec says "auto".
# 65536-99999: Debian Policy 9.2.2 leaves 65536+ to local dynamic allocation and adduser
# never picks it; shadow's SUB_UID_MIN/SUB_GID_MIN (first subordinate range) is 100000;
# systemd lists 65536-524287 as unused (systemd.io/UIDS-GIDS). Above 65535, so it is never
# 65534 (nobody) or a Debian package's static 60000-64999 id; well below the 2^31 limit
# and within the 7 octal digits of a ustar header. Checked free on every `up` (below).
ROOT_DEFAULT_ID = 70000
SUGGEST_RANGE = range(70001, 100000)
ETC = Path("/etc")  # where subuid and subgid are read (tests point it elsewhere)

ACCESS = "system.posix_acl_access"
DEFAULT = "system.posix_acl_default"
_VERSION = 2
_HEADER = struct.Struct("<I")
_ENTRY = struct.Struct("<HHI")
USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
UNDEFINED_ID = 0xFFFFFFFF
_NO_ACL = (errno.EOPNOTSUPP, errno.ENOTSUP)

# (tag, id) -> permission bits (r=4, w=2, x=1)
Acl = dict[tuple[int, int], int]


def encode(acl: Acl) -> bytes:
    """The xattr value; entries sorted by tag then id, as the kernel requires."""
    body = b"".join(_ENTRY.pack(tag, perm, qid) for (tag, qid), perm in sorted(acl.items()))
    return _HEADER.pack(_VERSION) + body


def decode(data: bytes) -> Acl:
    if len(data) < _HEADER.size or (len(data) - _HEADER.size) % _ENTRY.size:
        raise ValueError(f"a POSIX ACL xattr of {len(data)} bytes")
    (version,) = _HEADER.unpack_from(data)
    if version != _VERSION:
        raise ValueError(f"POSIX ACL xattr version {version}")
    acl: Acl = {}
    for offset in range(_HEADER.size, len(data), _ENTRY.size):
        tag, perm, qid = _ENTRY.unpack_from(data, offset)
        acl[(tag, qid)] = perm
    return acl


def from_mode(mode: int) -> Acl:
    """The minimal ACL a plain mode stands for."""
    return {
        (USER_OBJ, UNDEFINED_ID): (mode >> 6) & 7,
        (GROUP_OBJ, UNDEFINED_ID): (mode >> 3) & 7,
        (OTHER, UNDEFINED_ID): mode & 7,
    }


def with_user(acl: Acl, uid: int, perm: int) -> Acl:
    """`acl` plus `uid` with at least `perm`; nobody else's effective rights change.

    With a mask, the group class (owning group, named users and groups) gets at most
    what the mask allows; widening the mask would raise those, so each is first clamped
    to its effective rights under the old mask.
    """
    out = dict(acl)
    mask = out.get((MASK, UNDEFINED_ID))
    if mask is not None:
        for key in out:
            if key[0] in (GROUP_OBJ, USER, GROUP):
                out[key] &= mask
    out[(USER, uid)] = out.get((USER, uid), 0) | perm
    union = 0
    for key, bits in out.items():
        if key[0] in (GROUP_OBJ, USER, GROUP):
            union |= bits
    out[(MASK, UNDEFINED_ID)] = union
    return out


@dataclass
class Granted:
    entries: int = 0
    hard_links: int = 0
    other_filesystem: list[str] = field(default_factory=list)


def host_accounts_using(uid: int | None, gid: int | None, etc: Path | None = None) -> list[str]:
    """Host accounts that `uid`/`gid` would be (None: not asked): passwd and group
    (through NSS, so LDAP's and systemd's too), and the ranges in /etc/subuid, subgid."""
    found = []
    if uid is not None:
        with contextlib.suppress(KeyError):
            found.append(f"uid {uid} is the host user {pwd.getpwuid(uid).pw_name}")
    if gid is not None:
        with contextlib.suppress(KeyError):
            found.append(f"gid {gid} is the host group {grp.getgrgid(gid).gr_name}")
    for name, number in (("subuid", uid), ("subgid", gid)):
        if number is None:
            continue
        for owner, start, count in _ranges((etc or ETC) / name):
            if start <= number < start + count:
                found.append(
                    f"{number} is in {owner}'s range {start}-{start + count - 1} in /etc/{name}"
                )
    return found


def _ranges(path: Path) -> Iterator[tuple[str, int, int]]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            yield parts[0], int(parts[1]), int(parts[2])


def suggest_free_id(etc: Path | None = None) -> int | None:
    for number in SUGGEST_RANGE:
        if not host_accounts_using(number, number, etc):
            return number
    return None


def check_ids_free(uid: int | None, gid: int | None, etc: Path | None = None) -> None:
    """Refuse a chosen (not pinned: None) root-workbench id that a host account has."""
    taken = host_accounts_using(uid, gid, etc)
    if not taken:
        return
    free = suggest_free_id(etc)
    pick = f"e.g. uid = {free} and gid = {free}" if free else "ids no host account uses"
    raise UsageError(
        f"as root, the workbench runs as uid {uid if uid is not None else 'from the spec'}, "
        f"gid {gid if gid is not None else 'from the spec'}, but {'; '.join(taken)}: that "
        "account would own the workbench's files and get rights on the project",
        f"set [user] uid and gid in torchrig.toml to ids no host account uses ({pick})",
    )


def has_write(path: Path, uid: int, gid: int) -> bool:
    """Whether `uid` (primary group `gid`, no other groups) may write and enter `path`,
    by its mode and access ACL, as the kernel decides for a non-root process."""
    st = path.stat()
    try:
        acl = decode(os.getxattr(path, ACCESS))
    except OSError:
        acl = from_mode(st.st_mode)
    need = 2 | 1  # write and search
    if st.st_uid == uid:
        return acl.get((USER_OBJ, UNDEFINED_ID), 0) & need == need
    mask = acl.get((MASK, UNDEFINED_ID), 7)
    if (USER, uid) in acl:
        return acl[(USER, uid)] & mask & need == need
    group_bits = [acl.get((GROUP_OBJ, UNDEFINED_ID), 0)] if st.st_gid == gid else []
    group_bits += [bits for (tag, qid), bits in acl.items() if tag == GROUP and qid == gid]
    if group_bits:
        return any(bits & mask & need == need for bits in group_bits)
    return acl.get((OTHER, UNDEFINED_ID), 0) & need == need


def grant(workspace: Path, uid: int) -> Granted:
    """Give `uid` the owner's rights on `workspace` and everything in it (access ACL), and
    rwx as a default ACL entry on its directories.

    HostError, with nothing changed, when the filesystem has no POSIX ACLs: a probe on
    the top folder finds that before any entry is touched.
    """
    umask = os.umask(0)
    os.umask(umask)
    done = Granted()
    top = os.open(workspace, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        device = os.fstat(top).st_dev
        _probe(top, workspace, uid)
        _walk(top, workspace, device, uid, umask, done)
        # The top folder last: `up` skips all this once the workbench may write it, so
        # it is the mark of a finished walk (an interrupted one is done again).
        _grant_entry(top, workspace, uid, umask, directory=True)
        done.entries += 1
    finally:
        os.close(top)
    return done


def probe(workspace: Path, uid: int) -> None:
    """HostError when `workspace`'s filesystem has no POSIX ACLs; changes nothing."""
    fd = os.open(workspace, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        _probe(fd, workspace, uid)
    finally:
        os.close(fd)


def _probe(fd: int, workspace: Path, uid: int) -> None:
    """Write the folder's own ACL back unchanged: fails on a filesystem without ACLs."""
    path = f"/proc/self/fd/{fd}"
    try:
        current = _read(path, ACCESS) or from_mode(os.fstat(fd).st_mode)
        os.setxattr(path, ACCESS, encode(current))
    except OSError as exc:
        if exc.errno in _NO_ACL:
            raise _no_acl(workspace, uid) from None
        raise HostError(
            f"could not read or write the ACL of {workspace}: {exc.strerror}",
            "check the folder (read-only filesystem? immutable?) and run `torchrig up` again",
        ) from None


def _walk(folder: int, where: Path, device: int, uid: int, umask: int, done: Granted) -> None:
    with os.scandir(folder) as entries:
        names = [entry.name for entry in entries]
    for name in names:
        try:
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
        except OSError:
            continue  # gone since the listing
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                if st.st_dev != device:
                    # Another filesystem mounted inside (a dataset, NFS): not ours to change.
                    done.other_filesystem.append(str(where / name))
                    continue
                sub = os.open(
                    name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder
                )
                try:
                    if os.fstat(sub).st_ino != st.st_ino:
                        continue  # swapped since it was looked at
                    _grant_entry(sub, where / name, uid, umask, directory=True)
                    done.entries += 1
                    _walk(sub, where / name, device, uid, umask, done)
                finally:
                    os.close(sub)
            elif stat.S_ISREG(st.st_mode):
                if st.st_nlink > 1:
                    # The same file under another name, maybe outside the project (a uv
                    # cache, a hard link root made): its rights are not the project's.
                    done.hard_links += 1
                    continue
                _grant_entry(fd, where / name, uid, umask, directory=False)
                done.entries += 1
            # Symlinks, devices, FIFOs and sockets: left as they are.
        finally:
            os.close(fd)


def _grant_entry(fd: int, where: Path, uid: int, umask: int, *, directory: bool) -> None:
    try:
        _grant_one(fd, uid, umask, directory=directory)
    except OSError as exc:
        # Entries done so far keep their grant: it is what the workbench needs anyway,
        # and the next `up` (top folder not yet writable) finishes the walk.
        raise HostError(
            f"could not add the workbench's ACL entry to {where}: {exc.strerror}",
            f"fix that entry (immutable? read-only?) and run `torchrig up` again, or give "
            f"it yourself: `setfacl -m u:{uid}:rwX {where}`",
        ) from None


def _grant_one(fd: int, uid: int, umask: int, *, directory: bool) -> None:
    # O_PATH descriptors take no xattr calls; their /proc/self/fd link names the very
    # inode that was opened (no path is looked up again).
    path = f"/proc/self/fd/{fd}"
    st = os.fstat(fd)
    access = _read(path, ACCESS) or from_mode(st.st_mode)
    owner = access.get((USER_OBJ, UNDEFINED_ID), 0)
    os.setxattr(path, ACCESS, encode(with_user(access, uid, owner)))
    if not directory:
        return
    default = _read(path, DEFAULT)
    if default is None:
        # New entries follow the folder's mode, narrowed by the umask of whoever ran
        # torchrig (with a default ACL the kernel no longer applies a umask).
        default = from_mode(stat.S_IMODE(st.st_mode) & ~umask)
    os.setxattr(path, DEFAULT, encode(with_user(default, uid, 7)))


def _read(path: str, name: str) -> Acl | None:
    try:
        return decode(os.getxattr(path, name))
    except OSError as exc:
        if exc.errno == errno.ENODATA:
            return None
        raise


def _no_acl(workspace: Path, uid: int) -> HostError:
    return HostError(
        f"the workspace {workspace} is on a filesystem without POSIX ACLs (an NFS or a "
        f"filesystem mounted with noacl?), so the workbench user (uid {uid}) cannot be let "
        "write it without changing its owner",
        "put the project on a local filesystem (ext4, xfs, btrfs), or run torchrig as the "
        "folder's owner, or set [user] uid/gid in torchrig.toml to an id that may write it",
    )
