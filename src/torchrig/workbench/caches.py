"""The shared Hugging Face cache volume's root, made usable by the workbench user (as root).

The engine creates a new named volume owned by root, mode 0755, so the user could not write
it. TORCHRIG_HF_CACHE says the volume's scope (launch/mounts.py):

  user: one volume per workbench UID. A fresh root (owned by root) is given to the user;
        a root owned by the user is left as it is; any other owner is left and reported.
  host: one volume for every workbench on the host, whatever its UID. The root stays root's,
        mode 0777, with a default POSIX ACL granting rwx to owner, group and others, so every
        folder and file created under it is writable by every workbench whatever its umask
        (huggingface_hub's lock files and blobs are shared between UIDs). Where the volume's
        filesystem has no ACLs the root is 1777 and a note says downloads are per UID.

Only the mount point itself is touched, never anything inside it (the user may write there,
and root must not follow the user's links): lchown/chmod by a path that is a mount point.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Mapping
from pathlib import Path

HF_CACHE_TARGET = "/cache/huggingface"
SCOPE_ENV = "TORCHRIG_HF_CACHE"

# Linux's xattr format of a POSIX ACL (include/uapi/linux/posix_acl_xattr.h): a version
# word, then (tag: u16, perm: u16, id: u32) entries in tag order.
_ACL_VERSION = 2
_ACL_USER_OBJ, _ACL_GROUP_OBJ, _ACL_OTHER = 0x01, 0x04, 0x20
_ACL_UNDEFINED_ID = 0xFFFFFFFF
_RWX = 7


def default_acl_all_rwx() -> bytes:
    entries = [(_ACL_USER_OBJ, _RWX), (_ACL_GROUP_OBJ, _RWX), (_ACL_OTHER, _RWX)]
    return struct.pack("<I", _ACL_VERSION) + b"".join(
        struct.pack("<HHI", tag, perm, _ACL_UNDEFINED_ID) for tag, perm in entries
    )


def prepare(environ: Mapping[str, str], uid: int, gid: int, root: Path = Path("/")) -> list[str]:
    """Make the cache volume's root usable; returns notes to print. Never fatal: a cache that
    cannot be prepared costs downloads, not the workbench."""
    try:
        return _prepare(environ, uid, gid, root)
    except OSError as exc:
        return [f"warning: {HF_CACHE_TARGET} left as it is ({exc.strerror or exc})"]


def _prepare(environ: Mapping[str, str], uid: int, gid: int, root: Path) -> list[str]:
    scope = environ.get(SCOPE_ENV, "")
    path = root / HF_CACHE_TARGET.lstrip("/")
    if scope not in ("user", "host"):
        return []
    try:
        info = path.lstat()
    except OSError:
        return [
            f"warning: {HF_CACHE_TARGET} is not mounted: the Hugging Face cache is per workbench"
        ]
    if not stat.S_ISDIR(info.st_mode):
        return [f"warning: {HF_CACHE_TARGET} is not a folder: left as it is"]
    if scope == "user":
        if info.st_uid == uid:
            return []
        if info.st_uid != 0:
            return [
                f"warning: {HF_CACHE_TARGET} belongs to uid {info.st_uid}, not {uid}: left as "
                "it is (downloads may fail; remove the volume to start afresh)"
            ]
        # Mode first: once the user owns it, root without CAP_FOWNER may not chmod it.
        path.chmod(0o755)
        os.chown(path, uid, gid, follow_symlinks=False)
        return [f"Hugging Face cache {HF_CACHE_TARGET}: given to uid {uid} (first use)"]
    if info.st_uid != 0:
        return []  # made by an engine that maps root elsewhere; nothing of ours to change
    path.chmod(0o777)
    try:
        os.setxattr(path, "system.posix_acl_default", default_acl_all_rwx())
    except OSError:
        path.chmod(0o1777)
        return [
            f"warning: {HF_CACHE_TARGET}: no POSIX ACLs on this volume, so each UID can write "
            "only what it downloaded itself"
        ]
    return []
