"""Batch transactions: a projection's rows and its tracking position commit together.

A batch locks the target generation's tracking row, skips the events that generation
already has, writes the rows and moves the tracking position in the same transaction. So an
event is applied exactly once per generation, however many processes try, and a crash can
neither skip nor double-apply one.

BEGIN goes out with the first statement (the pointer's read of a live batch), and the
tracking row's update with the COMMIT, each pair in one pipelined round trip: a live batch
of a few events took seven round trips, now five (the connections are in autocommit mode,
so BEGIN and COMMIT are ours to send).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from typing import Generic, TypeVar

import psycopg
from eventsourcing.postgres import PostgresDatastore
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composable, Composed

S = TypeVar("S")
T = TypeVar("T")

_BEGIN = "BEGIN"
_COMMIT = "COMMIT"
_IDLE = psycopg.pq.TransactionStatus.IDLE


@dataclass(frozen=True, slots=True)
class TrackingSQL:
    """The statements of one generation's tracking table."""

    lock: Composed | str
    upsert: Composed | str
    position: Composed | str

    @classmethod
    def of(cls, table: Composed) -> TrackingSQL:
        return cls(
            lock=SQL("SELECT notification_id FROM {} WHERE application_name = %s"
                     " FOR UPDATE").format(table),
            upsert=SQL("INSERT INTO {} (application_name, notification_id) VALUES (%s, %s)"
                       " ON CONFLICT (application_name) DO UPDATE"
                       " SET notification_id = EXCLUDED.notification_id").format(table),
            position=SQL("SELECT notification_id FROM {} WHERE application_name = %s"
                         ).format(table),
        )


def as_strings(statements: T) -> T:
    """The same statements as plain strings. psycopg caches the conversion of a string
    query, but turns a `Composed` into bytes again on every execute (measured: 15 % of a
    live projector's time went there)."""
    return replace(statements, **{  # type: ignore[type-var]
        f.name: value.as_string() for f in fields(statements)  # type: ignore[arg-type]
        if isinstance(value := getattr(statements, f.name), Composable)})


class BatchTransaction(Generic[S]):
    """Writes to one generation in one transaction; events up to `after` are already in."""

    def __init__(self, cursor: Cursor[DictRow], generation: int, sql: S,
                 after: int | None) -> None:
        self.cursor = cursor
        self.generation = generation
        self.sql = sql
        self.after = after
        self.tracked: int | None = None  # the position to record at commit

    def is_new(self, position: int) -> bool:
        return self.after is None or position > self.after

    def track(self, position: int) -> None:
        """Moves the generation's position; commits with the rows written alongside (the
        statement goes out with the COMMIT, in one round trip)."""
        self.tracked = position


@contextmanager
def batch_transaction(datastore: PostgresDatastore, application_name: str,
                      find_generation: Callable[[Cursor[DictRow]], int],
                      statements: Callable[[int], tuple[TrackingSQL, S]],
                      ) -> Iterator[BatchTransaction[S]]:
    """One transaction on the generation `find_generation` names (it runs pipelined with
    the BEGIN), with that generation's tracking row locked; rows and tracking commit
    together, or not at all."""
    with datastore.get_connection() as conn:
        curs = conn.cursor()
        try:
            with conn.pipeline():
                curs.execute(_BEGIN)
                generation = find_generation(curs)
            tracking, sql = statements(generation)
            curs.execute(tracking.lock, (application_name,), prepare=True)
            found = curs.fetchone()
            tx = BatchTransaction(curs, generation, sql,
                                  found["notification_id"] if found else None)
            yield tx
            with conn.pipeline():
                if tx.tracked is not None:
                    curs.execute(tracking.upsert, (application_name, tx.tracked), prepare=True)
                curs.execute(_COMMIT)
        finally:
            if conn.info.transaction_status != _IDLE and not conn.closed:
                conn.rollback()
