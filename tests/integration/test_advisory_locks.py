"""Every advisory lock the processes take is the one `lock_key` names, as PostgreSQL sees it.

tests/unit/test_lock_keys.py pins the integers; this checks that the locks actually taken
(by the leader lock, a lock session, and the event log's appends, whose markers are taken
inside the database) show up in pg_locks under exactly those keys."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresDatastore

from application.database import Database
from application.event_log import WesApplicationRecorder
from application.locks import (
    LeaderLock,
    LockKey,
    LockKind,
    LockRole,
    LockSession,
    lock,
    lock_key,
    projection_lock_key,
    try_lock,
    unlock,
)
from tests.integration.test_recorder_contract import make_recorder

_GRANTED = ("SELECT classid::bigint, objid::bigint, objsubid, mode FROM pg_locks"
            " WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")


def granted(conninfo: str) -> set[tuple[LockKey, str]]:
    """Every advisory lock granted in the database, as the key it was taken with."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        rows = conn.execute(_GRANTED).fetchall()
    keys = set()
    for classid, objid, objsubid, mode in rows:
        if objsubid == 2:
            keys.add((LockKey(classid, objid), mode))
        else:  # one bigint: its high and low 32 bits
            keys.add((LockKey(None, int.from_bytes(
                (classid << 32 | objid).to_bytes(8, "big"), "big", signed=True)), mode))
    return keys


@pytest.fixture
def store(db: Database) -> Iterator[tuple[PostgresDatastore, WesApplicationRecorder]]:
    datastore, recorder = make_recorder(db)
    yield datastore, recorder
    datastore.close()


class TestLocksInPgLocks:
    def test_the_leader_lock_is_held_under_its_named_key(self, db: Database) -> None:
        name = f"wes-waveless-release:{db.schema}"
        leader = LeaderLock(db.conninfo, name, retry_seconds=0)
        try:
            assert leader.acquire()
            assert (lock_key(LockKind.LEADER, name), "ExclusiveLock") in granted(db.conninfo)
        finally:
            leader.release()
        assert (lock_key(LockKind.LEADER, name), "ExclusiveLock") not in granted(db.conninfo)

    def test_a_lock_session_holds_the_projection_keys(self, store: Any, db: Database) -> None:
        datastore, _ = store
        active = projection_lock_key(db.schema, "progress", LockRole.ACTIVE)
        presence = projection_lock_key(db.schema, "progress", LockRole.PRESENCE)
        with LockSession(datastore) as first, LockSession(datastore) as second:
            assert first.try_lock(active)
            assert not second.try_lock(active)
            first.lock_shared(presence)
            second.lock_shared(presence)
            held = granted(db.conninfo)
            assert (active, "ExclusiveLock") in held
            assert (presence, "ShareLock") in held
            first.unlock(active)
            assert second.try_lock(active)

    def test_an_append_in_flight_holds_the_markers_of_its_first_and_last_positions(
            self, store: Any, db: Database) -> None:
        datastore, recorder = store
        table = f"{datastore.schema}.{recorder.events_table_name}"
        oid = uuid.uuid4()
        with datastore.get_connection() as conn, conn.transaction():
            positions = recorder.append(
                conn, [StoredEvent(oid, v, "topic", b"{}") for v in (1, 2, 3)])
            assert positions == [1, 2, 3]
            markers = {key for key, mode in granted(db.conninfo) if mode == "ExclusiveLock"
                       and key.class_id == lock_key(LockKind.APPEND_MARKER, table).class_id}
            assert markers == {lock_key(LockKind.APPEND_MARKER, table, 1),
                               lock_key(LockKind.APPEND_MARKER, table, 3)}
            # The allocation lock was let go before the rows were even written.
            assert all(key != lock_key(LockKind.APPEND_ALLOCATION, table)
                       for key, _ in granted(db.conninfo))
        assert not any(key.class_id == lock_key(LockKind.APPEND_MARKER, table).class_id
                       for key, _ in granted(db.conninfo))

    def test_the_allocation_function_takes_the_named_allocation_key(self, store: Any) -> None:
        datastore, recorder = store
        table = f"{datastore.schema}.{recorder.events_table_name}"
        allocation = lock_key(LockKind.APPEND_ALLOCATION, table).object_id
        with datastore.get_connection() as conn:
            row = conn.execute("SELECT pg_get_functiondef(%s::regproc) AS body", (
                f'"{datastore.schema}"."{recorder.allocate_function_name}"',)).fetchone()
        assert row is not None
        assert f"pg_advisory_lock({allocation})" in row["body"].replace("( ", "(")
        assert f"pg_advisory_unlock({allocation})" in row["body"].replace("( ", "(")


class TestTheLockHelper:
    def test_session_locks_exclude_other_sessions_until_unlocked(self, db: Database) -> None:
        key = lock_key(LockKind.LEADER, f"helper-test:{db.schema}")
        with psycopg.connect(db.conninfo, autocommit=True) as first, \
                psycopg.connect(db.conninfo, autocommit=True) as second:
            assert try_lock(first, key)
            assert not try_lock(second, key)
            assert unlock(first, key)
            assert not unlock(first, key)  # it held none any more
            lock(second, key, shared=True)
            assert try_lock(first, key, shared=True)
            assert not try_lock(first, key)  # shared by both: not exclusively

    def test_a_transaction_lock_ends_with_its_transaction(self, db: Database) -> None:
        key = projection_lock_key(db.schema, "*", LockRole.SETUP)
        with psycopg.connect(db.conninfo) as first, \
                psycopg.connect(db.conninfo, autocommit=True) as second:
            lock(first, key, transaction=True)
            assert not try_lock(second, key, transaction=True)
            first.commit()
            assert try_lock(second, key)
