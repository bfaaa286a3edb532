"""PostgreSQL advisory locks: how every one is named, taken, released and seen in pg_locks.

Every advisory lock in the code base is named by `lock_key` and taken through the helpers
below (or, inside a larger statement, through `lock_call`), so the lock functions and the
pg_locks columns they show up in are spelled once:

- `LeaderLock`: at most one holder across all processes (the waveless release loop).
- `LockSession`: a projector's (or the relay's) active, presence and rebuild locks.
- The event log (application/event_log.py): the allocation lock that hands out positions,
  the markers of the appends in flight, and the lock that serialises creating its tables.
- A projection's table setup (`LockRole.SETUP`, transaction-level).

A key's value is part of the protocol between processes: during a rolling upgrade an old
process and a new one must compute the same integers for the same lock, or they stop
excluding each other. So the derivations below are fixed as they were first written
(tests/unit/test_lock_keys.py pins every one); a new kind of lock gets a new `LockKind`
rather than a changed derivation.

PostgreSQL keeps two key spaces apart: one bigint key (pg_locks: classid = its high 32 bits,
objid = its low 32 bits, objsubid = 1), or two int4 keys (classid, objid, objsubid = 2).
"""

from __future__ import annotations

import hashlib
import time
import zlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import psycopg
from eventsourcing.postgres import PostgresDatastore
from psycopg.rows import dict_row
from psycopg.sql import SQL, Composed, Literal

from application.pool import process_name

LOW_31_BITS = 0x7FFFFFFF
"""Two-int keys derived from a hash or a number keep its low 31 bits (a non-negative int4)."""

# The first key of every projection lock marks them as ours in pg_locks ("WESP").
PROJECTION_LOCK_CLASS = 0x57455350


class LockKind(StrEnum):
    """Every kind of advisory lock, each with its own (fixed) key derivation."""

    LEADER = "leader"
    """One bigint: the first 8 bytes of sha256(name). Name: what the leader does."""
    APPEND_ALLOCATION = "append-allocation"
    """One bigint: the first 8 bytes of sha256("wes-allocate:" + table). Name: the events
    table, schema-qualified. Held while an append takes its block of positions."""
    EVENT_LOG_SETUP = "event-log-setup"
    """One bigint: the next 8 bytes of that same digest. Serialises creating the tables."""
    APPEND_MARKER = "append-marker"
    """Two int4: (crc32(table) & LOW_31_BITS, position & LOW_31_BITS). Name: the events
    table, schema-qualified; number: the position (the first or last of a block in flight)."""
    PROJECTION = "projection"
    """Two int4: (PROJECTION_LOCK_CLASS, crc32(name) & LOW_31_BITS). Name:
    "<schema>/<projection>/<role>" (see `projection_lock_key`)."""


@dataclass(frozen=True, slots=True)
class LockKey:
    """One advisory lock's key: two int4s, or one bigint when `class_id` is None."""

    class_id: int | None
    object_id: int

    @property
    def params(self) -> tuple[int, ...]:
        """The arguments of a pg_advisory_* call, in order."""
        return (self.object_id,) if self.class_id is None else (self.class_id, self.object_id)

    def literal(self) -> Composed:
        """The arguments as SQL literals, for a lock taken inside a larger statement."""
        return SQL(", ").join(Literal(p) for p in self.params)


def lock_key(kind: LockKind, name: str, number: int = 0) -> LockKey:
    """The key of the lock of `kind` named `name` (`number`: the marker's position)."""
    if number and kind is not LockKind.APPEND_MARKER:
        raise ValueError(f"a {kind} lock is named by its name alone")
    match kind:
        case LockKind.LEADER:
            return LockKey(None, _digest_bigint(name, 0))
        case LockKind.APPEND_ALLOCATION:
            return LockKey(None, _digest_bigint(f"wes-allocate:{name}", 0))
        case LockKind.EVENT_LOG_SETUP:
            return LockKey(None, _digest_bigint(f"wes-allocate:{name}", 8))
        case LockKind.APPEND_MARKER:
            return LockKey(_crc31(name), number & LOW_31_BITS)
        case LockKind.PROJECTION:
            return LockKey(PROJECTION_LOCK_CLASS, _crc31(name))


def _digest_bigint(text: str, offset: int) -> int:
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[offset:offset + 8], "big", signed=True)


def _crc31(text: str) -> int:
    return zlib.crc32(text.encode()) & LOW_31_BITS


class LockRole(StrEnum):
    """What a projection's (or the relay's) lock guards."""

    ACTIVE = "active"  # exclusive: the one process applying live events
    PRESENCE = "presence"  # shared: every projector process following this projection
    REBUILD = "rebuild"  # exclusive: the one rebuild of this projection
    SETUP = "setup"  # transaction-level: creating tables and views


def projection_lock_key(schema: str, name: str, role: LockRole) -> LockKey:
    """A stable key per schema, projection and role (schemas share a database's locks)."""
    return lock_key(LockKind.PROJECTION, f"{schema}/{name}/{role.value}")


# ---- taking and releasing

def lock_call(args: SQL | Composed, *, attempt: bool = False, transaction: bool = False,
              shared: bool = False, unlock: bool = False) -> Composed:
    """`pg_[try_]advisory_[xact_]lock[_shared](args)` (or `pg_advisory_unlock[_shared]`).

    Session-level locks live as long as the connection (or until unlocked); transaction-level
    ones until the transaction ends and cannot be unlocked."""
    if unlock and (attempt or transaction):
        raise ValueError("only a session-level lock is unlocked, and never tentatively")
    name = "pg_" + ("try_" if attempt else "") + "advisory_"
    name += "unlock" if unlock else ("xact_lock" if transaction else "lock")
    name += "_shared" if shared else ""
    return SQL("{}({})").format(SQL(name), args)


def _placeholders(key: LockKey) -> SQL:
    return SQL(", ".join(["%s"] * len(key.params)))


def lock(conn: psycopg.Connection[Any] | psycopg.Cursor[Any], key: LockKey, *,
         transaction: bool = False, shared: bool = False) -> None:
    """Waits for the lock and takes it."""
    conn.execute(SQL("SELECT {}").format(
        lock_call(_placeholders(key), transaction=transaction, shared=shared)), key.params)


def try_lock(conn: psycopg.Connection[Any] | psycopg.Cursor[Any], key: LockKey, *,
             transaction: bool = False, shared: bool = False) -> bool:
    """Takes the lock if no one else holds it (in a conflicting mode); True if taken."""
    return _answer(conn.execute(SQL("SELECT {} AS ok").format(
        lock_call(_placeholders(key), attempt=True, transaction=transaction, shared=shared)),
        key.params).fetchone())


def unlock(conn: psycopg.Connection[Any] | psycopg.Cursor[Any], key: LockKey, *,
           shared: bool = False) -> bool:
    """Releases a session-level lock this session holds; False if it held none."""
    return _answer(conn.execute(SQL("SELECT {} AS ok").format(
        lock_call(_placeholders(key), shared=shared, unlock=True)), key.params).fetchone())


def _answer(row: Any) -> bool:
    if row is None:
        return False
    return bool(row["ok"] if isinstance(row, dict) else row[0])


# ---- seeing who holds what (pg_locks)

def _this_database(alias: str) -> SQL:
    return SQL(alias + "database = (SELECT oid FROM pg_database WHERE datname = current_database())")


HELD_SQL = SQL(
    "EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND {database}"
    " AND classid = %s::oid AND objid = %s::oid AND objsubid = 2 AND granted)"
).format(database=_this_database(""))
"""Whether anyone holds the two-int lock whose keys are its two parameters (any mode)."""


def held_exclusive_in_class(class_id: int, alias: str = "") -> Composed:
    """pg_locks conditions: exclusive two-int locks of this database whose first key is
    `class_id` (`alias`: the pg_locks table's alias in the query, with its dot)."""
    return SQL(
        "{a}locktype = 'advisory' AND {a}objsubid = 2 AND {a}classid = {cls}::oid"
        " AND {a}granted AND {a}mode = 'ExclusiveLock' AND {database}"
    ).format(a=SQL(alias), cls=Literal(class_id), database=_this_database(alias))


# ---- holders

class LockSession:
    """A dedicated connection for session-level advisory locks; closing it frees them all.

    Session-level locks live as long as the connection that took them: when a projector
    process dies (even by `kill -9`), PostgreSQL closes its session and the lock is free for
    a standby at once, with no lease to expire."""

    def __init__(self, datastore: PostgresDatastore) -> None:
        kwargs = datastore.pool.kwargs
        params: dict[str, Any] = dict(kwargs() if callable(kwargs) else kwargs or {})
        params.update(row_factory=dict_row, autocommit=True, connect_timeout=10,
                      keepalives=1, keepalives_idle=5, keepalives_interval=2,
                      keepalives_count=3, application_name=f"{process_name('projector')}-lock")
        self._conn: psycopg.Connection[Any] = psycopg.connect(**params)

    def try_lock(self, key: LockKey) -> bool:
        return try_lock(self._conn, key)

    def lock_shared(self, key: LockKey) -> None:
        lock(self._conn, key, shared=True)

    def unlock(self, key: LockKey) -> None:
        unlock(self._conn, key)

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


class LeaderLock:
    """A session-level advisory lock: at most one holder across all processes.

    Used where exactly one process must act at a time (the waveless release loop). The
    lock lives as long as its connection; if the holder dies, PostgreSQL frees it. Only the
    holder keeps a connection: the others (every other worker) close theirs and try again
    after `retry_seconds`, so twenty workers do not hold twenty idle lock connections.
    """

    def __init__(self, conninfo: str, name: str, retry_seconds: float = 5.0) -> None:
        self._conninfo = conninfo
        self._key = lock_key(LockKind.LEADER, name)
        self._conn: psycopg.Connection | None = None
        self._held = False
        self._retry_seconds = retry_seconds
        self._next_try = 0.0

    def acquire(self) -> bool:
        """True if held (now or already); False if another process holds it."""
        now = time.monotonic()
        if self._conn is None and now < self._next_try:
            return False
        try:
            if self._conn is None or self._conn.closed:
                self._held = False
                self._conn = psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5)
            if self._held:
                self._conn.execute("SELECT 1")  # the session, and so the lock, is still ours
                return True
            self._held = try_lock(self._conn, self._key)
        except psycopg.Error:
            self._held = False
        if not self._held:
            self.release()
            self._next_try = now + self._retry_seconds
        return self._held

    def release(self) -> None:
        self._held = False
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
