"""Shared fixtures: a throw-away database on real PostgreSQL, one schema per test.

Tests use DATABASE_URL's server when it is set, otherwise the embedded server. They never
touch the configured database itself: the session creates its own database (dropped at the
end), and each test that asks for `db` gets a fresh schema inside it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from application import database
from application.database import Database
from application.workflows import Workflows
from bootstrap.container import open_workflows


@pytest.fixture(scope="session")
def server() -> Iterator[Database]:
    """A database of this test session's own, on the configured (or embedded) server."""
    url = os.environ.get("DATABASE_URL")
    base = database.parse_url(url) if url else database.start_embedded()
    db = base.with_database(f"wes_test_{uuid.uuid4().hex[:10]}")
    database.ensure_database(db)
    yield db
    database.drop_database(db)


@pytest.fixture
def db(server: Database) -> Database:
    """A fresh, empty schema for one test."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    scoped = server.with_schema(schema)
    database.ensure_database(scoped)
    return scoped


@pytest.fixture
def app(db: Database) -> Iterator[Workflows]:
    """The Workflows application on the test's own schema, with built-in definitions, opened
    as every process opens it."""
    workflows = open_workflows(db)
    yield workflows
    workflows.close()
