"""Which archive keyring a bootstrapped base is checked against: the host's, or torchrig's own.

    keyring, passed_over = choose_keyring("ubuntu")
    # keyring.path -> /usr/share/keyrings/ubuntu-archive-keyring.gpg, or torchrig's copy
    # keyring None -> nothing trustworthy to check with: refuse (or base.allow_unverified)

torchrig ships the Debian and Ubuntu archive keyrings (image/data/, provenance and
fingerprints in keyrings.toml) because a Debian host has no Ubuntu keyring, and without one
debootstrap fetches the base unchecked. The host's copy comes first, as the host's package
manager keeps it current with new release keys, but only when it holds at least one key
torchrig knows for that distribution (a stale or foreign file at that path is passed over).
torchrig's copy is used only when its sha256 is the pinned one.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).parent / "data"
RECORDS = DATA / "keyrings.toml"
HOST_KEYRINGS = Path("/usr/share/keyrings")

# OpenPGP packet tags (RFC 9580 §5): a primary public key, and the versions whose
# fingerprint this computes (v4: SHA-1, v5/v6: SHA-256; v3 keys are long obsolete).
PUBLIC_KEY_TAG = 6
FINGERPRINT_PREFIX = {4: b"\x99", 5: b"\x9a", 6: b"\x9b"}


@dataclass(frozen=True)
class KeyringRecord:
    """One distribution's entry in keyrings.toml."""

    distro: str
    file: str
    host_file: str
    host_package: str
    sha256: str
    source: str
    keys: dict[str, str]
    """fingerprint (40 or 64 upper-case hex digits) -> user id"""


@dataclass(frozen=True)
class Keyring:
    """The keyring debootstrap gets, where it came from, and the known keys it holds."""

    path: Path
    origin: str
    """"host" (the host's /usr/share/keyrings) or "torchrig" (the copy in image/data)."""
    known_keys: tuple[str, ...]


def load_records(path: Path = RECORDS) -> dict[str, KeyringRecord]:
    data = tomllib.loads(path.read_text("utf-8"))
    return {
        distro: KeyringRecord(
            distro=distro,
            file=entry["file"],
            host_file=entry["host_file"],
            host_package=entry["host_package"],
            sha256=entry["sha256"],
            source=entry["source"],
            keys={key["fingerprint"]: key["uid"] for key in entry["keys"]},
        )
        for distro, entry in data.items()
    }


def primary_fingerprints(data: bytes) -> list[str]:
    """Fingerprints of the primary keys in a binary OpenPGP keyring (what `gpg --export`
    writes and /usr/share/keyrings holds). ValueError when `data` is not a packet stream."""
    found: list[str] = []
    offset = 0
    while offset < len(data):
        tag, body_start, body_end = _packet(data, offset)
        if tag == PUBLIC_KEY_TAG:
            body = data[body_start:body_end]
            version = body[0] if body else 0
            prefix = FINGERPRINT_PREFIX.get(version)
            if prefix == b"\x99":
                found.append(_hex(hashlib.sha1(prefix + len(body).to_bytes(2, "big") + body)))
            elif prefix is not None:
                found.append(_hex(hashlib.sha256(prefix + len(body).to_bytes(4, "big") + body)))
        offset = body_end
    return found


def _hex(digest: hashlib._Hash) -> str:
    return digest.hexdigest().upper()


def _packet(data: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, body start, body end) of the packet at `offset` (RFC 9580 §4.2)."""
    first = data[offset]
    if not first & 0x80:
        raise ValueError(f"no OpenPGP packet at byte {offset}")
    if first & 0x40:  # new format: one to five length octets
        tag = first & 0x3F
        size, start = _new_length(data, offset + 1)
    else:  # legacy format: the low two bits say how many length octets follow
        tag = (first >> 2) & 0x0F
        width = {0: 1, 1: 2, 2: 4}.get(first & 0x03)
        if width is None:
            raise ValueError(f"packet of indeterminate length at byte {offset}")
        start = offset + 1 + width
        size = int.from_bytes(data[offset + 1 : start], "big")
    end = start + size
    if end > len(data):
        raise ValueError(f"packet at byte {offset} runs past the end of the keyring")
    return tag, start, end


def _new_length(data: bytes, at: int) -> tuple[int, int]:
    octet = data[at]
    if octet < 192:
        return octet, at + 1
    if octet < 224:
        return ((octet - 192) << 8) + data[at + 1] + 192, at + 2
    if octet == 255:
        return int.from_bytes(data[at + 1 : at + 5], "big"), at + 5
    raise ValueError(f"partial-length packet at byte {at - 1} (not a keyring)")


def known_keys(path: Path, record: KeyringRecord) -> tuple[str, ...]:
    """The record's keys that the keyring at `path` holds; () when it is unreadable."""
    try:
        present = set(primary_fingerprints(path.read_bytes()))
    except (OSError, ValueError, IndexError):
        return ()
    return tuple(fp for fp in record.keys if fp in present)


def choose_keyring(
    distro: str,
    host_dir: Path = HOST_KEYRINGS,
    data_dir: Path = DATA,
    records: dict[str, KeyringRecord] | None = None,
) -> tuple[Keyring | None, list[str]]:
    """The keyring to check `distro`'s Release file with, and why each candidate that was
    not taken was passed over (shown to the user). None: no candidate can be trusted."""
    record = (records or load_records())[distro]
    passed_over: list[str] = []
    host = host_dir / record.host_file
    if host.is_file():
        found = known_keys(host, record)
        if found:
            return Keyring(host, "host", found), passed_over
        passed_over.append(
            f"{host} holds none of the {len(record.keys)} {distro} archive keys torchrig "
            f"knows (e.g. {_spaced(next(iter(record.keys)))})"
        )
    else:
        passed_over.append(f"{host} is not installed (package {record.host_package})")
    shipped = data_dir / record.file
    try:
        digest = hashlib.sha256(shipped.read_bytes()).hexdigest()
    except OSError:
        passed_over.append(f"torchrig's copy {shipped} is missing")
        return None, passed_over
    if digest != record.sha256:
        passed_over.append(
            f"torchrig's copy {shipped} was changed (sha256 {digest[:16]}…, "
            f"keyrings.toml pins {record.sha256[:16]}…)"
        )
        return None, passed_over
    return Keyring(shipped, "torchrig", known_keys(shipped, record)), passed_over


def _spaced(fingerprint: str) -> str:
    """ "F6ECB376…" -> "F6EC B376 …", as key pages print fingerprints."""
    return " ".join(fingerprint[i : i + 4] for i in range(0, len(fingerprint), 4))
