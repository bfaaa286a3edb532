"""API keys with roles: reader < operator < admin.

`WES_API_KEYS` is `key:role,key:role,...` or the path of a file holding such entries (one
per line or comma-separated, `#` starts a comment). A key may be given already hashed as
`sha256:<64 hex digits>:role`, so a deployer's file need not hold the keys themselves.
Only SHA-256 digests are kept in memory; a presented key is hashed and compared with every
digest in constant time (`hmac.compare_digest`). Keys are never logged.

With no keys configured every request is allowed (as admin), which is why the server then
binds to localhost only (`check_bind`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from application.errors import ConfigurationError

_HEX_DIGEST = re.compile(r"^[0-9a-fA-F]{64}$")
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class Role(IntEnum):
    """Roles nest: each includes everything the ones below it may do."""

    READER = 1
    OPERATOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ConfigurationError(
                f"unknown API key role {text.strip()!r}; use reader, operator or admin"
            ) from None


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


@dataclass(frozen=True)
class KeyRing:
    """The configured keys, as (sha256 digest, role) pairs."""

    entries: tuple[tuple[bytes, Role], ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.entries)

    def role_of(self, key: str) -> Role | None:
        """The role of a presented key, or None; compares against every entry."""
        presented = digest(key)
        found: Role | None = None
        for stored, role in self.entries:
            if hmac.compare_digest(presented, stored) and found is None:
                found = role
        return found

    @classmethod
    def from_keys(cls, keys: Iterable[tuple[str, Role]]) -> KeyRing:
        return cls(tuple((digest(k), r) for k, r in keys))

    @classmethod
    def parse(cls, value: str | None) -> KeyRing:
        """Parses `WES_API_KEYS` (entries, or a file path holding them)."""
        if not value or not value.strip():
            return cls()
        text = value
        if ":" not in value or Path(value).is_file():
            path = Path(value)
            if not path.is_file():
                raise ConfigurationError(
                    "WES_API_KEYS must be 'key:role,...' or the path of a file holding that"
                )
            text = path.read_text()
        entries: list[tuple[bytes, Role]] = []
        for line in text.splitlines():
            for raw in line.split("#", 1)[0].split(","):
                item = raw.strip()
                if not item:
                    continue
                key, sep, role = item.rpartition(":")
                if not sep or not key:
                    raise ConfigurationError(
                        f"WES_API_KEYS entry {len(entries) + 1} is not 'key:role'")
                entries.append((_stored_digest(key), Role.parse(role)))
        return cls(tuple(entries))


def _stored_digest(key: str) -> bytes:
    prefix, _, hexdigest = key.partition(":")
    if prefix == "sha256" and _HEX_DIGEST.match(hexdigest):
        return bytes.fromhex(hexdigest)
    return digest(key)


def is_local(host: str) -> bool:
    if host in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, keys: KeyRing) -> str | None:
    """Why binding to `host` is refused (no keys and not localhost), or None when allowed."""
    if keys.enabled or is_local(host):
        return None
    return (f"refusing to bind to {host}: no API keys are configured (WES_API_KEYS), so the "
            "API would be open to anyone; set WES_API_KEYS or bind to 127.0.0.1")
