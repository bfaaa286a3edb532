"""Read models on a server of their own, and queries from its hot standby.

The event store is the test session's database; the read models live on a PostgreSQL
cluster the test makes (`tests/support/clusters.py`), with a streaming standby made by
`pg_basebackup -R`. The projector reads events from one server and writes rows and
tracking, in one transaction, to the other.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from api.query_routing import QueryRouter, RoutedQueries
from application import database
from application.database import Database
from application.workflows import Workflows
from bootstrap.container import open_workflows, projector_runner, read_model_views
from projections.read_models import PROJECTION_NAMES, ProjectionViews
from projections.rebuild import rebuild
from tests.support import clusters
from tests.support.projection_history import StepClock, completed_orders, dump, mixed_history

pytestmark = pytest.mark.skipif(clusters.unavailable_reason() is not None,
                                reason=clusters.unavailable_reason() or "")


@pytest.fixture(scope="module")
def read_server() -> Iterator[clusters.Cluster]:
    with clusters.primary() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def read_standby(read_server: clusters.Cluster) -> Iterator[clusters.Cluster]:
    with clusters.standby(read_server) as cluster:
        yield cluster


@pytest.fixture
def split(db: Database, read_server: clusters.Cluster) -> Iterator[tuple[Workflows, ProjectionViews,
                                                                        Database]]:
    """Events in the test's schema; read models in the same-named schema on the other
    server."""
    read_db = read_server.database("wes").with_schema(db.schema)
    database.ensure_database(read_db)
    app = open_workflows(db, clock=StepClock())
    models = read_model_views(db, app, read_db=read_db)
    yield app, models, read_db
    models.close()
    app.close()


def tables_on(server: Database, schema: str) -> set[str]:
    import psycopg

    with psycopg.connect(server.conninfo) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s",
                            (schema,)).fetchall()
    return {r[0] for r in rows}


class TestReadModelsOnTheirOwnServer:
    def test_rows_and_tracking_live_there_and_equal_a_rebuild(self, split, db) -> None:
        app, models, read_db = split
        with projector_runner(models):
            ids = mixed_history(app)
            head = app.recorder.max_notification_id()
            models.wait(head, timeout=60)
            statuses = {s.name: s for s in models.status()}
        # The tables and their tracking are on the read-model server only.
        assert {"wes_progress_g1", "wes_progress_g1_tracking"} <= tables_on(read_db, db.schema)
        assert not any(t.startswith("wes_progress") for t in tables_on(db, db.schema))
        assert {s.position for s in statuses.values()} == {head}
        assert all(s.lag_events == 0 for s in statuses.values())
        live = dump(models)
        assert live["wes_progress"], "the progress rows were written"
        row = models.progress.get(ids["succeeded"])
        assert row is not None and row.status == "COMPLETED"
        rebuild(models, batch_size=50)
        assert dump(models) == live

    def test_lag_is_measured_against_the_event_store_head(self, split) -> None:
        app, models, _ = split
        completed_orders(app, 3)
        head = app.recorder.max_notification_id()
        before = {s.name: s for s in models.status()}
        assert {s.lag_events for s in before.values()} == {head}
        assert all(s.lag_seconds is not None and s.lag_seconds >= 0 for s in before.values())
        with projector_runner(models):
            models.wait(head, timeout=60)
        assert {s.lag_events for s in models.status()} == {0}

    def test_a_projector_killed_mid_way_resumes_without_applying_twice(self, split) -> None:
        app, models, _ = split
        completed_orders(app, 4, prefix="A")
        with projector_runner(models):
            models.wait(app.recorder.max_notification_id(), timeout=60)
        first = dump(models)
        completed_orders(app, 4, prefix="B")
        with projector_runner(models):
            models.wait(app.recorder.max_notification_id(), timeout=60)
        after = dump(models)
        assert len(after["wes_progress"]) == len(first["wes_progress"]) + 4
        rebuild(models, batch_size=10)
        assert dump(models) == after


def replica_models(app: Workflows, event_store: Database,
                   standby: clusters.Cluster, schema: str) -> ProjectionViews:
    replica = standby.database("wes").with_schema(schema)
    return read_model_views(event_store, app, read_db=replica,
                            env={"WES_PROJECTIONS_CREATE_TABLE": "n",
                                 "WES_PROJECTIONS_POSTGRES_CONNECT_TIMEOUT": "2"})


@pytest.fixture
def routed(split, db, read_server, read_standby) -> Iterator[dict[str, Any]]:
    app, models, _ = split
    runner = projector_runner(models)
    runner.start()
    completed_orders(app, 2, prefix="SEED")
    models.wait(app.recorder.max_notification_id(), timeout=60)
    clusters.wait_replayed(read_server, read_standby)
    replica = replica_models(app, db, read_standby, db.schema)
    router = QueryRouter(models, [("standby", replica)], max_lag_events=20,
                         replica_wait_seconds=1.0, check_seconds=0.2)
    router.start()
    try:
        yield {"app": app, "models": models, "router": router,
               "progress": RoutedQueries(router, "progress")}
    finally:
        router.close()
        runner.stop()


def wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


class TestQueriesFromAHotStandby:
    def test_queries_and_min_position_are_answered_by_the_standby(self, routed) -> None:
        app, router, progress = routed["app"], routed["router"], routed["progress"]
        [wf_id] = completed_orders(app, 1, prefix="RYW")
        position = app.recorder.max_notification_id()
        reached, target = router.wait(list(PROJECTION_NAMES), position, timeout=10)
        assert reached == position and target.name == "standby"
        router.pin(target)
        row = progress.get(wf_id)
        assert row is not None and row.status == "COMPLETED"
        page = progress.list(limit=10)
        assert len(page.items) >= 3
        assert router.served.get("standby", 0) == 2 and "primary" not in router.served
        # The audit counts go where audit searches go.
        now = datetime.now(UTC)
        counts = RoutedQueries(router, "audit").counts(
            ["Completed"], now - timedelta(hours=1), now + timedelta(minutes=1), 3600)
        assert counts.totals() == {"Completed": 3}
        assert router.served.get("standby", 0) == 3 and "primary" not in router.served
        # What the standby answered is what it has applied itself.
        replica = router.replicas[0].models
        assert (replica.view("progress").max_tracking_id(app.name) or 0) >= position

    def test_a_lagging_standby_sends_read_your_writes_to_the_primary(
            self, routed, read_standby) -> None:
        app, router, progress = routed["app"], routed["router"], routed["progress"]
        read_standby.execute("SELECT pg_wal_replay_pause()")
        try:
            [wf_id] = completed_orders(app, 1, prefix="LAG")
            position = app.recorder.max_notification_id()
            # Within the lag limit: the standby is still chosen, but it has not applied the
            # position, so after its share of the wait the primary answers.
            reached, target = router.wait(list(PROJECTION_NAMES), position, timeout=10)
            assert reached == position and target.primary
            router.pin(target)
            assert progress.get(wf_id).status == "COMPLETED"
            # Beyond the limit the health check skips it: plain queries go to the primary.
            completed_orders(app, 4, prefix="LAG-MORE")
            routed["models"].wait(app.recorder.max_notification_id(), timeout=60)
            wait_until(lambda: not router.replicas[0].healthy)
            assert router.replicas[0].lag_events > 20
            router.pin(None)
            served = dict(router.served)
            assert progress.get(wf_id).status == "COMPLETED"
            assert router.served["primary"] == served.get("primary", 0) + 1
        finally:
            read_standby.execute("SELECT pg_wal_replay_resume()")
        wait_until(lambda: router.replicas[0].healthy)
        router.pin(None)
        before = router.served.get("standby", 0)
        progress.get(wf_id)
        assert router.served["standby"] == before + 1

    def test_a_stopped_standby_falls_back_to_the_primary(self, routed, read_standby) -> None:
        app, router, progress = routed["app"], routed["router"], routed["progress"]
        [wf_id] = completed_orders(app, 1, prefix="DOWN")
        routed["models"].wait(app.recorder.max_notification_id(), timeout=60)
        read_standby.stop()
        try:
            router.pin(None)
            row = progress.get(wf_id)  # the standby fails the query: the primary answers
            assert row is not None and row.status == "COMPLETED"
            assert not router.replicas[0].healthy
            position = app.recorder.max_notification_id()
            reached, target = router.wait(list(PROJECTION_NAMES), position, timeout=10)
            assert reached == position and target.primary
        finally:
            read_standby.start()
        wait_until(lambda: router.replicas[0].healthy, timeout=60)


class TestTheApiOnAStandby:
    def test_reads_with_min_position_are_served_by_the_standby_over_http(self, routed) -> None:
        from fastapi.testclient import TestClient

        from api.app import create_app
        from api.query_side import QuerySide
        from tests.e2e.api_support import TEST_CONFIG

        app, router = routed["app"], routed["router"]
        read_models = QuerySide(routed["models"], router)
        [wf_id] = completed_orders(app, 1, prefix="HTTP")
        position = app.recorder.max_notification_id()
        with TestClient(create_app(workflows=app, queries=read_models.ports,
                                   config=TEST_CONFIG)) as client:
            got = client.get(f"/v1/workflows/{wf_id}", params={"min_position": position})
            assert got.status_code == 200, got.text
            assert got.json()["status"] == "COMPLETED"
            listed = client.get("/v1/workflows", params={"min_position": position})
            assert listed.status_code == 200, listed.text
            assert str(wf_id) in {w["id"] for w in listed.json()["items"]}
        assert router.served.get("standby", 0) >= 2, router.served
        assert "primary" not in router.served, router.served
