"""Fixtures of the console's browser tests: one `wes serve` per module (one without keys,
one with keys on the same schema), one Chromium, and a watched page per test."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from application import database
from application.database import Database
from tests.browser.support import Server, Watch, chromium, serve

KEYS = {"reader": "reader-key-0001", "operator": "operator-key-0002", "admin": "admin-key-0003"}


@pytest.fixture(scope="module")
def console_db(server: Database) -> Database:
    scoped = server.with_schema(f"console_{uuid.uuid4().hex[:10]}")
    database.ensure_database(scoped)
    return scoped


@pytest.fixture(scope="module")
def wes(console_db: Database) -> Iterator[Server]:
    """`wes serve` with everything in one process and no API keys (localhost only)."""
    with serve(console_db) as running:
        yield running


@pytest.fixture(scope="module")
def wes_with_keys(console_db: Database, wes: Server) -> Iterator[Server]:
    """The API alone, with reader/operator/admin keys, on the same schema as `wes`."""
    keys = ",".join(f"{key}:{role}" for role, key in KEYS.items())
    with serve(console_db, "--no-worker", "--no-projections", "--no-simulated-services",
               WES_API_KEYS=keys, POSTGRES_POOL_SIZE="2", POSTGRES_MAX_OVERFLOW="4") as running:
        yield running


@pytest.fixture(scope="class")
def quiet_db(server: Database) -> Database:
    scoped = server.with_schema(f"quiet_{uuid.uuid4().hex[:10]}")
    database.ensure_database(scoped)
    return scoped


@pytest.fixture(scope="class")
def quiet_wes(quiet_db: Database) -> Iterator[Server]:
    """`wes serve` on a schema of its own: no fault another test injected raises the error
    rate that pauses waveless release."""
    with serve(quiet_db) as running:
        yield running


@pytest.fixture(scope="class")
def misinformed_wes(quiet_db: Database, quiet_wes: Server) -> Iterator[Server]:
    """The API alone on `quiet_wes`'s schema, its settings saying every service ran capped
    at 1 (it did not): what it calibrates is not what ran."""
    caps = {s: 1 for s in ("inventory-service", "robotics-service", "warehouse-service",
                           "packing-service")}
    with serve(quiet_db, "--no-worker", "--no-projections", "--no-simulated-services",
               WES_WIP_CAPS=json.dumps(caps)) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as running:
        yield running


@pytest.fixture
def watched(browser: Any) -> Iterator[tuple[Any, Watch]]:
    """A fresh browser context's page, with its requests and errors recorded; no test may
    leave it with a request off 127.0.0.1 or an error in the console."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    watch = Watch()
    watch.attach(page)
    try:
        yield page, watch
    finally:
        context.close()
    assert watch.foreign() == [], f"requests left 127.0.0.1: {watch.foreign()}"
    assert watch.errors == [], f"errors in the browser console: {watch.errors}"
