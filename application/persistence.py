"""All SQL that is not a read model: the event-store recorder and the engine's work queue.

`WesApplicationRecorder` is the library's PostgreSQL application recorder plus one thing:
when an application saves a workflow it passes the workflow's next wake-up time, and the
recorder upserts it into the work queue *in the same transaction* as the events. So the
queue can never disagree with the event streams it is derived from (a transactional
outbox); it holds no workflow state, only "look at workflow X after time T", and it can be
rebuilt from the events at any time (`Workflows.rebuild_work_queue`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier


@dataclass(frozen=True, slots=True)
class WorkItem:
    """Wake-up time for a workflow; `due_at=None` removes it from the queue."""

    workflow_id: UUID
    due_at: datetime | None
    priority: int = 2


@dataclass(frozen=True, slots=True)
class Claim:
    """A work item leased to one worker until `lease_until`."""

    workflow_id: UUID
    due_at: datetime
    priority: int


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One stored event with its global position."""

    position: int
    version: int
    topic: str
    state: bytes


class WesApplicationRecorder(PostgresApplicationRecorder):
    """The library's recorder, plus the work queue written with the events."""

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
        schema = Identifier(datastore.schema)
        self.work_table_name = events_table_name.rsplit("_events", 1)[0] + "_work_queue"
        work = Identifier(self.work_table_name)
        self.sql_create_statements.append(SQL(
            "CREATE TABLE IF NOT EXISTS {schema}.{work} ("
            " workflow_id uuid PRIMARY KEY,"
            " due_at timestamptz NOT NULL,"
            " priority smallint NOT NULL DEFAULT 2,"
            " lease_owner text,"
            " lease_until timestamptz,"
            " claims integer NOT NULL DEFAULT 0)"
        ).format(schema=schema, work=work))
        self.sql_create_statements.append(SQL(
            "CREATE INDEX IF NOT EXISTS {idx} ON {schema}.{work} (due_at)"
        ).format(idx=Identifier(self.work_table_name + "_due_idx"), schema=schema, work=work))
        # An upsert keeps any lease: a command saved while a worker holds the item must not
        # take it away from that worker.
        self._upsert_work = SQL(
            "INSERT INTO {schema}.{work} (workflow_id, due_at, priority) VALUES (%s, %s, %s) "
            "ON CONFLICT (workflow_id) DO UPDATE SET due_at = EXCLUDED.due_at, "
            "priority = EXCLUDED.priority"
        ).format(schema=schema, work=work)
        self._delete_work = SQL("DELETE FROM {schema}.{work} WHERE workflow_id = %s").format(
            schema=schema, work=work)
        self._claim = SQL(
            "WITH c AS (SELECT workflow_id FROM {schema}.{work}"
            " WHERE due_at <= %s AND (lease_until IS NULL OR lease_until < now())"
            " ORDER BY priority, due_at LIMIT %s FOR UPDATE SKIP LOCKED)"
            " UPDATE {schema}.{work} w SET lease_owner = %s,"
            " lease_until = now() + make_interval(secs => %s), claims = w.claims + 1"
            " FROM c WHERE w.workflow_id = c.workflow_id"
            " RETURNING w.workflow_id, w.due_at, w.priority"
        ).format(schema=schema, work=work)
        self._renew = SQL(
            "UPDATE {schema}.{work} SET lease_until = now() + make_interval(secs => %s)"
            " WHERE lease_owner = %s AND workflow_id = ANY(%s)"
        ).format(schema=schema, work=work)
        self._release = SQL(
            "UPDATE {schema}.{work} SET lease_owner = NULL, lease_until = NULL"
            " WHERE workflow_id = %s AND lease_owner = %s"
        ).format(schema=schema, work=work)
        self._next_due = SQL(
            "SELECT min(greatest(due_at, coalesce(lease_until, due_at))) AS next FROM {schema}.{work}"
        ).format(schema=schema, work=work)
        self._count_work = SQL("SELECT count(*) AS n FROM {schema}.{work}").format(
            schema=schema, work=work)
        self._truncate_work = SQL("TRUNCATE {schema}.{work}").format(schema=schema, work=work)
        events = Identifier(self.events_table_name)
        self._history = SQL(
            "SELECT notification_id, originator_version, topic, state FROM {schema}.{events}"
            " WHERE originator_id = %s ORDER BY originator_version"
        ).format(schema=schema, events=events)
        self._positions = SQL(
            "SELECT originator_version, notification_id FROM {schema}.{events}"
            " WHERE originator_id = %s AND originator_version = ANY(%s)"
        ).format(schema=schema, events=events)
        self._aggregate_ids = SQL(
            "SELECT DISTINCT originator_id FROM {schema}.{events} WHERE topic = %s"
        ).format(schema=schema, events=events)

    # ---- writes that ride along with the events

    def _insert_events(self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent],
                       **kwargs: Any) -> None:
        work: Sequence[WorkItem] = kwargs.get("work") or ()
        for item in work:
            if item.due_at is None:
                curs.execute(self._delete_work, (item.workflow_id,), prepare=True)
            else:
                curs.execute(self._upsert_work, (item.workflow_id, item.due_at, item.priority),
                             prepare=True)
        super()._insert_events(curs, stored_events, **kwargs)

    # ---- the work queue

    def claim(self, owner: str, now: datetime, limit: int, lease_seconds: float) -> list[Claim]:
        """Leases up to `limit` due items no one else holds (FOR UPDATE SKIP LOCKED)."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._claim, (now, limit, owner, lease_seconds), prepare=True)
            return [Claim(r["workflow_id"], r["due_at"], r["priority"]) for r in curs.fetchall()]

    def renew(self, owner: str, workflow_ids: Sequence[UUID], lease_seconds: float) -> None:
        if not workflow_ids:
            return
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._renew, (lease_seconds, owner, list(workflow_ids)), prepare=True)

    def release(self, owner: str, workflow_id: UUID) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._release, (workflow_id, owner), prepare=True)

    def next_due(self) -> datetime | None:
        """The earliest time any item becomes claimable (None when the queue is empty)."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._next_due, prepare=True)
            row = curs.fetchone()
            return row["next"] if row else None

    def work_queue_size(self) -> int:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._count_work)
            row = curs.fetchone()
            return int(row["n"]) if row else 0

    def replace_work_queue(self, items: Sequence[WorkItem]) -> None:
        """Rebuild: the queue becomes exactly `items` (derived from the event streams)."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._truncate_work)
            for item in items:
                if item.due_at is not None:
                    curs.execute(self._upsert_work, (item.workflow_id, item.due_at, item.priority))

    # ---- audit reads

    def history(self, originator_id: UUID) -> list[HistoryRow]:
        """Every event of one aggregate with its global position, oldest first."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._history, (originator_id,), prepare=True)
            return [HistoryRow(r["notification_id"], r["originator_version"], r["topic"],
                               bytes(r["state"])) for r in curs.fetchall()]

    def positions(self, originator_id: UUID, versions: Sequence[int]) -> dict[int, int]:
        """Global positions of given versions of one aggregate."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._positions, (originator_id, list(versions)), prepare=True)
            return {r["originator_version"]: r["notification_id"] for r in curs.fetchall()}

    def aggregate_ids(self, created_topic: str) -> list[UUID]:
        """Ids of every aggregate whose stream holds an event of `created_topic`."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._aggregate_ids, (created_topic,))
            return [r["originator_id"] for r in curs.fetchall()]


class LeaderLock:
    """A session-level PostgreSQL advisory lock: at most one holder across all processes.

    Used where exactly one process must act at a time (the waveless release loop). The
    lock lives as long as its connection; if the holder dies, PostgreSQL frees it.
    """

    def __init__(self, conninfo: str, name: str) -> None:
        import hashlib

        self._conninfo = conninfo
        digest = hashlib.sha256(name.encode()).digest()
        self._key = int.from_bytes(digest[:8], "big", signed=True)
        self._conn: psycopg.Connection | None = None

    def acquire(self) -> bool:
        """True if held (now or already); False if another process holds it."""
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5)
            row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
            return bool(row and row[0])
        except psycopg.Error:
            self.release()
            return False

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
