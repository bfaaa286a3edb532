"""The library's own contract tests for application recorders, run against ours.

`WesApplicationRecorder` replaces the library's append path (no table lock) and its reads
(gap-aware), so it must still honour everything the library promises: contiguous,
non-interleaving positions returned from `insert_events`, conflicts as IntegrityError,
ordered notifications with start/stop/limit/topics, and subscriptions.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.tests.persistence import (
    ApplicationRecorderTestCase,
    NonInterleavingNotificationIDsBaseCase,
)

from application.database import Database
from application.event_log import WesApplicationRecorder


def make_recorder(db: Database, pool_size: int = 4) -> tuple[PostgresDatastore, WesApplicationRecorder]:
    """A recorder on a fresh schema, with a pool big enough for the concurrent cases."""
    datastore = PostgresDatastore(
        dbname=db.dbname, host=db.host, port=db.port, user=db.user, password=db.password,
        schema=db.schema, pool_size=pool_size, max_overflow=12, pre_ping=False)
    recorder = WesApplicationRecorder(datastore, events_table_name="stored_events")
    recorder.create_table()
    return datastore, recorder


class _OnOwnSchema:
    """Gives each test method a recorder on its own schema (pytest fixture into unittest)."""

    db: Database
    datastores: list[PostgresDatastore]

    @pytest.fixture(autouse=True)
    def _schema(self, db: Database) -> Iterator[None]:
        self.db = db
        self.datastores = []
        yield
        for datastore in self.datastores:
            datastore.close()

    def create_recorder(self) -> WesApplicationRecorder:
        datastore, recorder = make_recorder(self.db)
        self.datastores.append(datastore)
        return recorder


class TestApplicationRecorderContract(_OnOwnSchema, ApplicationRecorderTestCase[WesApplicationRecorder]):
    """ApplicationRecorderTestCase: insert/select, conflicts, concurrency, throughput."""

    def test_insert_subscribe(self) -> None:
        self.optional_test_insert_subscribe()


class TestNonInterleavingPositions(_OnOwnSchema, NonInterleavingNotificationIDsBaseCase):
    """Two concurrent appends of 1000 events each get two separate blocks of positions."""
