"""The SQL of what-if: reading many workflows' events in one statement per chunk."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from psycopg.sql import SQL, Identifier

from application.workflows import Workflows

CHUNK = 500


def stored_events(app: Workflows, ids: Sequence[UUID]) -> Iterator[tuple[UUID, list[object]]]:
    """Each workflow's decoded events in version order, `CHUNK` workflows per statement."""
    store = app.store
    query = SQL(
        "SELECT originator_id, originator_version, topic, state FROM {schema}.{events}"
        " WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
    ).format(schema=Identifier(store.datastore.schema),
             events=Identifier(store.events_table_name))
    for first in range(0, len(ids), CHUNK):
        chunk = list(ids[first:first + CHUNK])
        with store.datastore.transaction(commit=False) as curs:
            curs.execute(query, (chunk,))
            rows = curs.fetchall()
        current: UUID | None = None
        events: list[object] = []
        for row in rows:
            if row["originator_id"] != current:
                if current is not None:
                    yield current, events
                current, events = row["originator_id"], []
            events.append(app.mapper.to_domain_event(StoredEvent(
                row["originator_id"], row["originator_version"], row["topic"],
                bytes(row["state"]))))
        if current is not None:
            yield current, events
