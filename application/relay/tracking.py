"""The relay's tracking row and status (all of the relay's SQL).

The row says how far the sink is known to hold the events: it is written only after the
sink acknowledged them, so it may lag the stream but never lead it. It is for status and
lag, and a fallback when the stream cannot tell where it stopped; the stream itself is the
truth on every start.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import psycopg
from eventsourcing.persistence import IntegrityError
from eventsourcing.postgres import PostgresDatastore
from psycopg.sql import SQL, Identifier

from application.locks import HELD_SQL, LockRole, projection_lock_key
from projections.status import oldest_wait_seconds

NAME = "relay"


@dataclass(frozen=True)
class RelayStatus:
    """The relay as a row of `GET /v1/projections` (same fields as a projection's)."""

    name: str
    position: int
    head: int
    lag_events: int
    lag_seconds: float | None
    state: str
    generation: int | None = None
    rebuilding_generation: int | None = None
    rebuilding_position: int | None = None
    error_position: int | None = None
    target: str | None = None
    sink_sequence: int | None = None


class RelayTracking:
    """The tracking table `wes_relay_tracking` in the event store's schema."""

    def __init__(self, datastore: PostgresDatastore, name: str = NAME) -> None:
        self.datastore = datastore
        self.name = name
        self.schema = datastore.schema or "public"
        table = SQL("{}.{}").format(Identifier(self.schema), Identifier("wes_relay_tracking"))
        self._create = SQL(
            "CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY, position bigint NOT NULL,"
            " sink_sequence bigint, target text, updated_at timestamptz NOT NULL DEFAULT now(),"
            " error text, error_position bigint)").format(table)
        self._save = SQL(
            "INSERT INTO {t} (name, position, sink_sequence, target, updated_at, error,"
            " error_position) VALUES (%s, %s, %s, %s, now(), NULL, NULL)"
            " ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position,"
            " sink_sequence = EXCLUDED.sink_sequence, target = EXCLUDED.target,"
            " updated_at = now(), error = NULL, error_position = NULL").format(t=table)
        self._error = SQL(
            "INSERT INTO {t} (name, position, error, error_position) VALUES (%s, 0, %s, %s)"
            " ON CONFLICT (name) DO UPDATE SET error = EXCLUDED.error,"
            " error_position = EXCLUDED.error_position, updated_at = now()").format(t=table)
        self._read = SQL("SELECT position, sink_sequence, target, error, error_position"
                         " FROM {} WHERE name = %s").format(table)
        self._exists = SQL("SELECT to_regclass(%s) IS NOT NULL AS found")
        self._locks = SQL("SELECT {held} AS active, {held} AS present").format(held=HELD_SQL)
        self.keys = {role: projection_lock_key(self.schema, name, role)
                     for role in (LockRole.ACTIVE, LockRole.PRESENCE)}

    def setup(self) -> None:
        # Two relays creating it at the same moment: one of them meets a unique violation.
        with contextlib.suppress(IntegrityError, psycopg.errors.UniqueViolation), \
                self.datastore.transaction(commit=True) as curs:
            curs.execute(self._create)

    def save(self, position: int, sink_sequence: int | None, target: str) -> None:
        """Records that the sink holds every event up to `position` (and clears an error)."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._save, (self.name, position, sink_sequence, target), prepare=True)

    def record_error(self, error: str, position: int | None) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._error, (self.name, error[:2000], position))

    def read(self) -> dict[str, Any] | None:
        """The row (None when the relay never ran here)."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._exists, (f'"{self.schema}"."wes_relay_tracking"',))
            found = curs.fetchone()
            if not found or not found["found"]:
                return None
            curs.execute(self._read, (self.name,))
            return curs.fetchone()

    def position(self) -> int | None:
        row = self.read()
        return None if row is None else int(row["position"])

    def status(self, app: Any) -> RelayStatus:
        """Position, head, lag and state, as any process sees them (the relay need not run)."""
        head = app.recorder.max_notification_id() or 0
        row = self.read()
        active, present = self.keys[LockRole.ACTIVE], self.keys[LockRole.PRESENCE]
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._locks, (*active.params, *present.params))
            locks = curs.fetchone() or {"active": False, "present": False}
        position = int(row["position"]) if row else 0
        if row and row["error"]:
            state = f"error: {row['error']}"
        elif locks["active"]:
            state = "running"
        elif locks["present"]:
            state = "standby"
        else:
            state = "stopped"
        return RelayStatus(
            name=self.name, position=position, head=head, lag_events=max(head - position, 0),
            lag_seconds=oldest_wait_seconds(app, position) if head > position else 0.0, state=state,
            error_position=row["error_position"] if row else None,
            target=row["target"] if row else None,
            sink_sequence=row["sink_sequence"] if row else None)


def relay_status(app: Any) -> RelayStatus:
    """The relay's status on `app`'s event store (API, CLI and metrics)."""
    return RelayTracking(app.recorder.datastore).status(app)
