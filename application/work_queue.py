"""The engine's work queue: "look at workflow X after time T", leased to one worker at a time.

When an application saves a workflow it passes the workflow's next wake-up time
(`work=[WorkItem]`), and the event log's append writes it into this queue *in the same
statement* as the events (`append_parts` below are that statement's work-queue half). So the
queue can never disagree with the event streams it is derived from (a transactional outbox);
it holds no workflow state, and it can be rebuilt from the events at any time
(`Workflows.rebuild_work_queue`).

Workers claim due items with a lease (`FOR UPDATE SKIP LOCKED`), renew the leases while they
work, and release or settle them afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore
from psycopg.sql import SQL, Identifier

from application.database import render


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


def work_table_name(events_table_name: str) -> str:
    """The work queue's table beside an events table (`stored_events` -> `stored_work_queue`)."""
    return events_table_name.rsplit("_events", 1)[0] + "_work_queue"


class WorkQueue:
    """The work queue's table and every statement on it."""

    def __init__(self, datastore: PostgresDatastore, table_name: str) -> None:
        self.datastore = datastore
        self.table_name = table_name
        schema = Identifier(datastore.schema)
        work = Identifier(table_name)
        self.create_statements = [
            SQL("CREATE TABLE IF NOT EXISTS {schema}.{work} ("
                " workflow_id uuid PRIMARY KEY,"
                " due_at timestamptz NOT NULL,"
                " priority smallint NOT NULL DEFAULT 2,"
                " lease_owner text,"
                " lease_until timestamptz,"
                " claims integer NOT NULL DEFAULT 0)").format(schema=schema, work=work),
            SQL("CREATE INDEX IF NOT EXISTS {idx} ON {schema}.{work} (due_at)").format(
                idx=Identifier(table_name + "_due_idx"), schema=schema, work=work),
        ]
        # The append's work-queue half: common table expressions whose `{rows}` the event
        # log fills in (as scalar parameters for few rows, as arrays for many: `append_rows`).
        # Like `_upsert`, the due items' upsert keeps any lease.
        self.append_parts = {
            "due": SQL(
                "upserted AS (INSERT INTO {schema}.{work} (workflow_id, due_at, priority) {rows}"
                " ON CONFLICT (workflow_id) DO UPDATE SET due_at = EXCLUDED.due_at,"
                " priority = EXCLUDED.priority)"
            ).format(schema=schema, work=work, rows=SQL("{rows}")),
            "done": SQL("removed AS (DELETE FROM {schema}.{work} WHERE workflow_id = {rows})"
                        ).format(schema=schema, work=work, rows=SQL("{rows}")),
        }
        self.append_rows = {
            "due": (SQL("VALUES {}"), SQL("(%s::uuid, %s::timestamptz, %s::smallint)"),
                    SQL("SELECT * FROM unnest(%s::uuid[], %s::timestamptz[], %s::smallint[])")),
            "done": (SQL("ANY(ARRAY[{}])"), SQL("%s::uuid"), SQL("ANY(%s::uuid[])")),
        }
        # An upsert keeps any lease: a command saved while a worker holds the item must not
        # take it away from that worker.
        self._upsert = render(SQL(
            "INSERT INTO {schema}.{work} (workflow_id, due_at, priority) VALUES (%s, %s, %s) "
            "ON CONFLICT (workflow_id) DO UPDATE SET due_at = EXCLUDED.due_at, "
            "priority = EXCLUDED.priority"
        ).format(schema=schema, work=work))
        self._claim = render(SQL(
            "WITH c AS (SELECT workflow_id FROM {schema}.{work}"
            " WHERE due_at <= %s AND (lease_until IS NULL OR lease_until < now())"
            " ORDER BY priority, due_at LIMIT %s FOR UPDATE SKIP LOCKED)"
            " UPDATE {schema}.{work} w SET lease_owner = %s,"
            " lease_until = now() + make_interval(secs => %s), claims = w.claims + 1"
            " FROM c WHERE w.workflow_id = c.workflow_id"
            " RETURNING w.workflow_id, w.due_at, w.priority"
        ).format(schema=schema, work=work))
        self._renew = render(SQL(
            "UPDATE {schema}.{work} SET lease_until = now() + make_interval(secs => %s)"
            " WHERE lease_owner = %s AND workflow_id = ANY(%s)"
        ).format(schema=schema, work=work))
        # Releasing may hold the item back a while (`not_before`): backpressure, when no
        # instance of the step's service can take work, costs no event and no retry.
        self._release = render(SQL(
            "UPDATE {schema}.{work} SET lease_owner = NULL, lease_until = %s"
            " WHERE workflow_id = %s AND lease_owner = %s"
        ).format(schema=schema, work=work))
        # Settling an item whose workflow had nothing to do: due_at, unchanged since the
        # claim, is the optimistic token (any save rewrites it), so a command saved
        # meanwhile is never overwritten.
        self._settle = render(SQL(
            "UPDATE {schema}.{work} SET due_at = %s, lease_owner = NULL, lease_until = NULL"
            " WHERE workflow_id = %s AND lease_owner = %s AND due_at = %s"
        ).format(schema=schema, work=work))
        self._settle_delete = render(SQL(
            "DELETE FROM {schema}.{work}"
            " WHERE workflow_id = %s AND lease_owner = %s AND due_at = %s"
        ).format(schema=schema, work=work))
        self._insert_missing = render(SQL(
            "INSERT INTO {schema}.{work} (workflow_id, due_at, priority) VALUES (%s, %s, %s)"
            " ON CONFLICT (workflow_id) DO NOTHING"
        ).format(schema=schema, work=work))
        self._next_due = render(SQL(
            "SELECT min(greatest(due_at, coalesce(lease_until, due_at))) AS next FROM {schema}.{work}"
        ).format(schema=schema, work=work))
        self._count = render(SQL("SELECT count(*) AS n FROM {schema}.{work}").format(
            schema=schema, work=work))
        self._truncate = SQL("TRUNCATE {schema}.{work}").format(schema=schema, work=work)

    @staticmethod
    def append_params(due: Sequence[WorkItem], done: Sequence[UUID], *, due_as_arrays: bool,
                      done_as_arrays: bool) -> list[Any]:
        """The parameters of the append's work-queue half (see `append_parts`)."""
        params: list[Any] = []
        if due and due_as_arrays:
            params += ([item.workflow_id for item in due], [item.due_at for item in due],
                       [item.priority for item in due])
        else:
            for item in due:
                params += (item.workflow_id, item.due_at, item.priority)
        if done and done_as_arrays:
            params.append(list(done))
        else:
            params += done
        return params

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

    def release(self, owner: str, workflow_id: UUID, not_before: datetime | None = None) -> None:
        """Gives the item up; with `not_before`, nobody may claim it before then."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._release, (not_before, workflow_id, owner), prepare=True)

    def settle(self, owner: str, workflow_id: UUID, claimed_due: datetime,
               due_at: datetime | None) -> bool:
        """Reschedules (or removes, for None) an item we hold whose workflow had nothing to
        do, unless a save changed it since we claimed it; True if it was settled."""
        with self.datastore.transaction(commit=True) as curs:
            if due_at is None:
                curs.execute(self._settle_delete, (workflow_id, owner, claimed_due), prepare=True)
            else:
                curs.execute(self._settle, (due_at, workflow_id, owner, claimed_due),
                             prepare=True)
            return curs.rowcount == 1

    def next_due(self) -> datetime | None:
        """The earliest time any item becomes claimable (None when the queue is empty)."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._next_due, prepare=True)
            row = curs.fetchone()
            return row["next"] if row else None

    def size(self) -> int:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._count)
            row = curs.fetchone()
            return int(row["n"]) if row else 0

    def replace(self, items: Sequence[WorkItem]) -> None:
        """The queue becomes exactly `items` (tests; use `add_missing` on a live system)."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._truncate)
            for item in items:
                if item.due_at is not None:
                    curs.execute(self._upsert, (item.workflow_id, item.due_at, item.priority))

    def add_missing(self, items: Sequence[WorkItem]) -> int:
        """Repair on a live system: inserts items for workflows missing from the queue and
        touches no existing item (nor its lease); a stale item left over is settled by the
        next worker that claims it. Returns how many were added."""
        added = 0
        with self.datastore.transaction(commit=True) as curs:
            for item in items:
                if item.due_at is not None:
                    curs.execute(self._insert_missing,
                                 (item.workflow_id, item.due_at, item.priority))
                    added += curs.rowcount
        return added
