"""Blue/green rebuilds of the read models, on real PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import StoredEvent

from application.database import Database
from application.locks import LockRole, LockSession
from application.workflows import Workflows
from bootstrap.container import open_workflows, projector_runner, read_model_views
from domain.workflow import Workflow
from projections.base import UnhandledEvent
from projections.read_models import PROJECTION_NAMES, ProjectionViews
from projections.rebuild import RebuildInProgress, rebuild
from tests.integration.test_projections_load import instances_history
from tests.support.projection_history import (
    StepClock,
    all_pages,
    completed_orders,
    dump,
    fresh_schema,
    live_projection,
    mixed_history,
)

FUTURE_TOPIC = "domain.shipping:Shipment.Dispatched"


def everything(app: Workflows) -> dict[str, UUID]:
    """The mixed history, instance load events and a run of completed orders."""
    ids = mixed_history(app)
    ids.update(instances_history(app))
    for n, workflow_id in enumerate(completed_orders(app, 15)):
        ids[f"bulk-{n}"] = workflow_id
    return ids


def generations(models: ProjectionViews) -> dict[str, tuple[int, int | None, list[int]]]:
    return {name: (models.view(name).pointer().generation, models.view(name).pointer().building,
                   models.view(name).generations_on_disk()) for name in PROJECTION_NAMES}


class TestRebuild:
    def test_rebuilt_tables_equal_the_live_ones_row_for_row(self, server: Database) -> None:
        with live_projection(server, everything) as done:
            live = dump(done.models)
            head = done.app.recorder.max_notification_id()
            reports = rebuild(done.models, batch_size=100)
            assert dump(done.models) == live
            assert {r.name: (r.generation, r.position) for r in reports} == {
                name: (2, head) for name in PROJECTION_NAMES}
            assert reports[0].events == head
            assert generations(done.models) == {name: (2, None, [2])
                                                for name in PROJECTION_NAMES}
            assert {s.position for s in done.models.status()} == {head}

    def test_one_projection_alone(self, server: Database) -> None:
        with live_projection(server) as done:
            live = dump(done.models)
            rebuild(done.models, ["audit"], batch_size=7)
            assert dump(done.models) == live
            assert {n: g[0] for n, g in generations(done.models).items()} == {
                "progress": 1, "load": 1, "audit": 2}

    def test_rebuild_while_workflows_are_written_misses_nothing(self, db: Database) -> None:
        app = open_workflows(db, clock=StepClock())
        models = read_model_views(db, app)
        stop = threading.Event()
        written: list[UUID] = []

        def write() -> None:
            while not stop.is_set():
                written.extend(completed_orders(app, 1, prefix=f"W{len(written)}"))

        try:
            with projector_runner(models, standby_poll_seconds=0.1) as runner:
                writer = threading.Thread(target=write)
                written.extend(completed_orders(app, 10))
                writer.start()
                before = len(written)
                reports = rebuild(models, batch_size=20)
                during = len(written) - before
                written.extend(completed_orders(app, 2, prefix="AFTER"))  # on the new tables
                stop.set()
                writer.join()
                runner.wait(app.recorder.max_notification_id() or 0, timeout=20)
                assert during > 0, "the writer wrote nothing while the rebuild ran"
                assert {r.generation for r in reports} == {2}
                rows = all_pages(lambda cursor: models.progress.list(limit=500, cursor=cursor))
                assert sorted(r.id for r in rows) == sorted(written)
                assert {r.status for r in rows} == {"COMPLETED"}
                audited = all_pages(lambda cursor: models.audit.search(limit=500,
                                                                       cursor=cursor))
                assert len(audited) == sum(len(app.history(i)) for i in written)
                live = dump(models)
            rebuild(models, batch_size=1000)
            assert dump(models) == live
        finally:
            models.close()
            app.close()

    def test_the_switch_catches_up_what_the_live_projector_applied_after_the_last_batch(
            self, db: Database) -> None:
        app = open_workflows(db, clock=StepClock())
        models = read_model_views(db, app)
        written = completed_orders(app, 3)
        try:
            with projector_runner(models, standby_poll_seconds=0.1) as runner:

                def write_and_project(events: int, position: int, head: int) -> None:
                    # After every batch, even the last: the live tables get ahead.
                    written.extend(completed_orders(app, 1, prefix=f"L{len(written)}"))
                    runner.wait(app.recorder.max_notification_id() or 0, timeout=10)

                rebuild(models, batch_size=20, on_progress=write_and_project)
                written.extend(completed_orders(app, 1, prefix="AFTER"))
                runner.wait(app.recorder.max_notification_id() or 0, timeout=10)
                rows = all_pages(lambda cursor: models.progress.list(limit=500, cursor=cursor))
                assert sorted(r.id for r in rows) == sorted(written)
        finally:
            models.close()
            app.close()

    def test_the_switch_ends_at_the_live_position_however_fast_writers_append(
            self, server: Database, monkeypatch: pytest.MonkeyPatch) -> None:
        with live_projection(server, everything) as done:
            app = done.app
            read = app.recorder.select_notifications
            live = done.models.progress.max_tracking_id(app.name)

            def read_then_append(*args: Any, **kwargs: Any) -> Any:
                # A writer that always has appended more by the next read: chasing the
                # head would never end (and held the switch's transaction open meanwhile).
                found = read(*args, **kwargs)
                app.start_workflow(definition="order-fulfillment", driven_by="caller",
                                   input={"orderId": "ORD-1"})
                return found

            monkeypatch.setattr(app.recorder, "select_notifications", read_then_append)
            reports = rebuild(done.models, ["progress"], batch_size=100)
            assert live is not None and reports[0].position >= live
            assert reports[0].position < (app.recorder.max_notification_id() or 0)

    def test_an_interrupted_rebuild_leaves_the_live_model_and_resumes(
            self, server: Database) -> None:
        with live_projection(server, everything) as done:
            live = dump(done.models)

            def interrupt(events: int, position: int, head: int) -> None:
                raise KeyboardInterrupt

            with pytest.raises(KeyboardInterrupt):
                rebuild(done.models, batch_size=50, on_progress=interrupt)
            assert generations(done.models) == {name: (1, 2, [1, 2])
                                                for name in PROJECTION_NAMES}
            assert dump(done.models) == live
            assert {s.state for s in done.models.status()} == {"stopped"}

            reports = rebuild(done.models, batch_size=50)
            assert {r.resumed_from for r in reports} == {50}
            assert dump(done.models) == live
            assert generations(done.models) == {name: (2, None, [2])
                                                for name in PROJECTION_NAMES}

    def test_a_restart_discards_what_an_interrupted_rebuild_left(
            self, server: Database) -> None:
        with live_projection(server) as done:
            live = dump(done.models)

            def interrupt(events: int, position: int, head: int) -> None:
                raise KeyboardInterrupt

            with pytest.raises(KeyboardInterrupt):
                rebuild(done.models, ["progress"], batch_size=10, on_progress=interrupt)
            reports = rebuild(done.models, ["progress"], batch_size=10, restart=True)
            assert (reports[0].generation, reports[0].resumed_from) == (3, None)
            assert generations(done.models)["progress"] == (3, None, [3])
            assert dump(done.models) == live

    def test_only_one_rebuild_at_a_time(self, db: Database, app: Workflows) -> None:
        models = read_model_views(db, app)
        try:
            view = models.view("load")
            with LockSession(view.datastore) as other_process:
                assert other_process.try_lock(view.lock_key(LockRole.REBUILD))
                assert {s.name: s.state for s in models.status()}["load"] == "rebuilding"
                with pytest.raises(RebuildInProgress, match="load"):
                    rebuild(models)
            assert generations(models)["load"] == (1, None, [1])
        finally:
            models.close()

    def test_a_table_an_earlier_release_kept_goes_with_its_generation(
            self, db: Database) -> None:
        app = open_workflows(db)
        completed_orders(app, 2)
        models = read_model_views(db, app)
        try:
            live = models.load.pointer().generation
            retired = models.load._table_name(live, "_workflows")
            with models.load.datastore.transaction(commit=True) as curs:
                curs.execute(f'CREATE TABLE "{db.schema}"."{retired}" (id uuid)')
            rebuild(models, names=["load"])
            with models.load.datastore.transaction(commit=False) as curs:
                curs.execute("SELECT to_regclass(%s) AS found", (f'"{db.schema}"."{retired}"',))
                row = curs.fetchone()
            assert row is not None and row["found"] is None
            assert models.load.generations_on_disk() == [live + 1]
        finally:
            models.close()
            app.close()

    def test_an_event_it_cannot_read_stops_the_rebuild_before_it(self, db: Database) -> None:
        app = open_workflows(db)
        completed_orders(app, 2)
        app.recorder.insert_events([StoredEvent(uuid4(), 1, FUTURE_TOPIC, b"{}")])
        position = app.recorder.max_notification_id()
        completed_orders(app, 1)
        models = read_model_views(db, app)
        try:
            with pytest.raises(UnhandledEvent) as raised:
                rebuild(models, batch_size=5)
            assert (raised.value.position, raised.value.topic) == (position, FUTURE_TOPIC)
            assert models.progress.list().items == ()  # the live tables: untouched
            pointer = models.progress.pointer()
            assert (pointer.generation, pointer.building) == (1, 2)
            building = models.progress.generation_position(2, app.name)
            assert building is not None and building < position
        finally:
            models.close()
            app.close()

    def test_an_event_a_fold_cannot_apply_stops_that_projection_before_it(
            self, db: Database) -> None:
        app = open_workflows(db)
        completed_orders(app, 2)
        orphan = Workflow.Started(originator_id=uuid4(), originator_version=2,
                                  timestamp=datetime.now(UTC), correlation_id="c", actor="a")
        app.recorder.insert_events([app.mapper.to_stored_event(orphan)])  # no Created
        position = app.recorder.max_notification_id()
        assert position is not None
        completed_orders(app, 1)
        models = read_model_views(db, app)
        try:
            with pytest.raises(UnhandledEvent) as raised:
                rebuild(models, batch_size=7)
            assert (raised.value.projection, raised.value.position) == ("progress", position)
            for name in ("progress", "load"):  # both fold into the row Created would make
                building = models.view(name).generation_position(2, app.name)
                assert building is not None and building < position
            assert models.progress.list().items == ()  # the live tables: untouched
        finally:
            models.close()
            app.close()


def test_fresh_schemas_start_at_generation_one(server: Database) -> None:
    db = fresh_schema(server)
    models = read_model_views(db)
    try:
        assert {n: g[:2] for n, g in generations(models).items()} == {
            name: (1, None) for name in PROJECTION_NAMES}
    finally:
        models.close()
