"""Pre-ping at most once a second per connection, and still replace a dropped connection."""

from __future__ import annotations

import time

from application.connection_check import check_now_and_then
from application.database import Database
from application.workflows import Workflows


def _checkouts(app: Workflows, n: int) -> None:
    for _ in range(n):
        with app.store.datastore.transaction(commit=False) as curs:
            curs.execute("SELECT 1")


def test_a_busy_connection_is_pinged_once_not_on_every_checkout(app: Workflows) -> None:
    check = check_now_and_then(app.store.datastore)
    assert check is not None  # the engine's settings pre-ping
    _checkouts(app, 1)
    before = check.pings
    _checkouts(app, 200)
    assert check.pings - before <= 1  # one connection, reused within the second


def test_a_connection_idle_past_the_interval_is_pinged_before_use(app: Workflows) -> None:
    check = check_now_and_then(app.store.datastore)
    assert check is not None
    _checkouts(app, 1)
    before = check.pings
    time.sleep(check.interval + 0.1)
    _checkouts(app, 1)
    assert check.pings == before + 1


def test_a_connection_the_server_dropped_is_replaced_before_the_caller_uses_it(
        db: Database, app: Workflows) -> None:
    check = check_now_and_then(app.store.datastore)
    assert check is not None
    check.interval = 0.05
    with app.store.datastore.transaction(commit=False) as curs:
        curs.execute("SELECT pg_backend_pid() AS pid")
        row = curs.fetchone()
        assert row is not None
        pid = row["pid"]
    with db.connect(autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    time.sleep(0.1)
    # Every pooled connection is pinged now; the dropped one is discarded, not handed out.
    for _ in range(20):  # more than the pool holds: the dropped one comes round again
        with app.store.datastore.transaction(commit=False) as curs:
            curs.execute("SELECT pg_backend_pid() AS pid")
            row = curs.fetchone()
            assert row is not None and row["pid"] != pid


def test_asking_twice_keeps_one_check(app: Workflows) -> None:
    assert check_now_and_then(app.store.datastore) is check_now_and_then(app.store.datastore)
