"""Audit reads of the event log: one aggregate's stored events with their global positions.

These read one stream by `originator_id`, not the log in position order, so the event log's
care about appends still in flight (application/event_log.py) does not apply: they return
the stream's committed events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore
from psycopg.sql import SQL, Identifier

from application.database import render


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One stored event with its global position."""

    position: int
    version: int
    topic: str
    state: bytes


class AuditReads:
    """Reads of whole streams (a workflow's history) and of the positions of its events."""

    def __init__(self, datastore: PostgresDatastore, events_table_name: str) -> None:
        self.datastore = datastore
        schema = Identifier(datastore.schema)
        events = Identifier(events_table_name)
        self._history = render(SQL(
            "SELECT notification_id, originator_version, topic, state FROM {schema}.{events}"
            " WHERE originator_id = %s ORDER BY originator_version"
        ).format(schema=schema, events=events))
        self._positions = render(SQL(
            "SELECT originator_version, notification_id FROM {schema}.{events}"
            " WHERE originator_id = %s AND originator_version = ANY(%s)"
        ).format(schema=schema, events=events))
        self._aggregate_ids = SQL(
            "SELECT DISTINCT originator_id FROM {schema}.{events} WHERE topic = %s"
        ).format(schema=schema, events=events)

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
