"""The read-model views pass the library's own tracking-recorder contract tests."""

from __future__ import annotations

from typing import Any

import pytest
from eventsourcing.postgres import PostgresFactory
from eventsourcing.tests.persistence import TrackingRecorderTestCase
from eventsourcing.utils import Environment

from application.database import Database
from projections.audit import PostgresAuditView
from projections.generations import GenerationalView
from projections.load import PostgresLoadView
from projections.progress import PostgresProgressView


class _ViewContract:
    """Runs the library's TrackingRecorderTestCase on a view, in the test's own schema."""

    view_class: type[GenerationalView[Any]]

    @pytest.fixture(autouse=True)
    def _database(self, db: Database) -> None:
        self.env = db.env()

    def create_recorder(self) -> GenerationalView[Any]:
        factory = PostgresFactory(Environment("CONTRACT", self.env))
        self.addCleanup(factory.close)  # type: ignore[attr-defined]
        return factory.tracking_recorder(self.view_class)


class TestProgressViewContract(_ViewContract, TrackingRecorderTestCase):
    view_class = PostgresProgressView


class TestLoadViewContract(_ViewContract, TrackingRecorderTestCase):
    view_class = PostgresLoadView


class TestAuditViewContract(_ViewContract, TrackingRecorderTestCase):
    view_class = PostgresAuditView
