"""Advisory locks that decide which projector process is active for a projection.

Session-level advisory locks live as long as the connection that took them: when a projector
process dies (even by `kill -9`), PostgreSQL closes its session and the lock is free for a
standby at once, with no lease to expire. Every projector process also holds a *shared*
presence lock, so `status` can tell "standby" (someone waits) from "stopped" (no one runs).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import psycopg
from eventsourcing.postgres import PostgresDatastore
from psycopg.rows import dict_row

from application.pool import process_name

# pg_locks shows two-key advisory locks as (classid, objid, objsubid = 2); the first key
# marks them as ours ("WESP").
LOCK_CLASS = 0x57455350


class LockRole(StrEnum):
    """What a lock guards."""

    ACTIVE = "active"  # exclusive: the one process applying live events
    PRESENCE = "presence"  # shared: every projector process following this projection
    REBUILD = "rebuild"  # exclusive: the one rebuild of this projection
    SETUP = "setup"  # transaction-level: creating tables and views


@dataclass(frozen=True, slots=True)
class LockKey:
    """The two int4 keys of one advisory lock."""

    class_id: int
    object_id: int


def lock_key(schema: str, name: str, role: LockRole) -> LockKey:
    """A stable key per schema, projection and role (schemas share a database's locks)."""
    digest = zlib.crc32(f"{schema}/{name}/{role.value}".encode()) & 0x7FFFFFFF
    return LockKey(LOCK_CLASS, digest)


class LockSession:
    """A dedicated connection for session-level advisory locks; closing it frees them all."""

    def __init__(self, datastore: PostgresDatastore) -> None:
        kwargs = datastore.pool.kwargs
        params: dict[str, Any] = dict(kwargs() if callable(kwargs) else kwargs or {})
        params.update(row_factory=dict_row, autocommit=True, connect_timeout=10,
                      keepalives=1, keepalives_idle=5, keepalives_interval=2,
                      keepalives_count=3, application_name=f"{process_name('projector')}-lock")
        self._conn: psycopg.Connection[Any] = psycopg.connect(**params)

    def try_lock(self, key: LockKey) -> bool:
        row = self._conn.execute("SELECT pg_try_advisory_lock(%s, %s) AS ok",
                                 (key.class_id, key.object_id)).fetchone()
        return bool(row and row["ok"])

    def lock_shared(self, key: LockKey) -> None:
        self._conn.execute("SELECT pg_advisory_lock_shared(%s, %s)",
                           (key.class_id, key.object_id))

    def unlock(self, key: LockKey) -> None:
        self._conn.execute("SELECT pg_advisory_unlock(%s, %s)", (key.class_id, key.object_id))

    def alive(self) -> bool:
        """Whether the session (and so every lock it holds) still exists."""
        try:
            self._conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> LockSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
