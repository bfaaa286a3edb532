"""The projector runner: one active per projection, standby takeover, errors, status, waits."""

from __future__ import annotations

import time
from collections.abc import Iterator
from uuid import uuid4

import pytest
from eventsourcing.persistence import StoredEvent

from application.database import Database
from application.locks import LockRole, LockSession
from application.workflows import Workflows
from bootstrap.container import read_model_views
from domain.workflow import Workflow
from projections.base import to_events
from projections.read_models import PROJECTION_NAMES, ProjectionViews
from projections.rebuild import rebuild
from projections.runner import ProjectorRunner, _DecodedEvents
from tests.support.projection_history import completed_orders, dump, mixed_history
from tests.support.waiting import wait_for

FUTURE_TOPIC = "domain.shipping:Shipment.Dispatched"


@pytest.fixture
def models(db: Database, app: Workflows) -> Iterator[ProjectionViews]:
    read_models = read_model_views(db, app)
    yield read_models
    read_models.close()


def head(app: Workflows) -> int:
    return app.recorder.max_notification_id() or 0


def states(models: ProjectionViews) -> dict[str, str]:
    return {s.name: s.state for s in models.status()}


def runner_for(db: Database, app: Workflows) -> ProjectorRunner:
    """A runner with read models (and so lock sessions) of its own, like another process."""
    return ProjectorRunner(read_models=ProjectionViews(db.env(), app=app),
                           standby_poll_seconds=0.05, health_check_seconds=0.2)


class TestActiveAndStandby:
    def test_one_runner_is_active_the_other_takes_over_when_it_stops(
            self, db: Database, app: Workflows, models: ProjectionViews) -> None:
        first = runner_for(db, app)
        second = runner_for(db, app)
        first.start()
        try:
            wait_for(lambda: set(first.states().values()) == {"running"}, 10)
            second.start()
            wait_for(lambda: set(second.states().values()) == {"standby"}, 10)
            mixed_history(app, prefix="A")
            first.wait(head(app), timeout=10)
            assert set(states(models).values()) == {"running"}
            first.stop()
            wait_for(lambda: set(second.states().values()) == {"running"}, 10)
            completed_orders(app, 3)
            second.wait(head(app), timeout=10)
        finally:
            for runner in (first, second):
                runner.stop()
                runner.read_models.close()
        live = dump(models)
        rebuild(models)
        assert dump(models) == live

    def test_two_active_writers_still_apply_each_event_once(
            self, app: Workflows, models: ProjectionViews) -> None:
        mixed_history(app)
        events = models.app.recorder.select_notifications(start=0, limit=1000)
        items, _ = to_events(app, "test", events)
        projection = models.projection("progress")
        assert projection.process_batch(items[:10]) == 10
        assert projection.process_batch(items) == len(items) - 10  # the overlap is skipped
        assert projection.process_batch(items[5:20]) == 0
        live = dump(models)
        rebuild(models, ["progress"])
        assert dump(models)["wes_progress"] == live["wes_progress"]


class TestUnhandledEvents:
    def test_the_projection_stops_before_an_event_it_cannot_read(
            self, app: Workflows, models: ProjectionViews) -> None:
        before = completed_orders(app, 2)
        app.recorder.insert_events([StoredEvent(uuid4(), 1, FUTURE_TOPIC, b"{}")])
        bad = head(app)
        after = completed_orders(app, 1, prefix="AFTER")
        with ProjectorRunner(read_models=models, standby_poll_seconds=0.05) as runner:
            wait_for(lambda: all(s.startswith("error: ") for s in runner.states().values()),
                     10)
        statuses = {s.name: s for s in models.status()}
        for name in PROJECTION_NAMES:
            status = statuses[name]
            assert status.state.startswith(f"error: {name} cannot handle event {FUTURE_TOPIC}"
                                           f" at position {bad}")
            assert (status.position, status.error_position) == (bad - 1, bad)
            assert status.lag_events == head(app) - (bad - 1)
            assert status.lag_seconds is None  # the waiting event cannot be read
        assert {r.id for r in models.progress.list().items} == set(before)
        assert models.progress.get(after[0]) is None

    def test_an_event_the_fold_cannot_apply_is_reported_with_its_position(
            self, app: Workflows, models: ProjectionViews) -> None:
        completed_orders(app, 1)
        # A Started event of a workflow no Created event announced: the fold has no row.
        orphan = Workflow.Started(originator_id=uuid4(), originator_version=2,
                                  timestamp=app.clock(), correlation_id="orphan", actor="x")
        app.recorder.insert_events([app.mapper.to_stored_event(orphan)])
        bad = head(app)
        with ProjectorRunner(read_models=models, names=["progress"],
                             standby_poll_seconds=0.05) as runner:
            wait_for(lambda: runner.states()["progress"].startswith("error: "), 10)
        status = models.status(["progress"])[0]
        assert (status.position, status.error_position) == (bad - 1, bad)
        assert "KeyError" in status.state

    def test_a_new_process_tries_again_and_clears_the_error(
            self, app: Workflows, models: ProjectionViews) -> None:
        completed_orders(app, 1)
        models.progress.record_error("an earlier process failed here", 1)
        with ProjectorRunner(read_models=models, names=["progress"],
                             standby_poll_seconds=0.05) as runner:
            runner.wait(head(app), timeout=10)
            assert states(models)["progress"] == "running"


class TestDecodingOnce:
    def test_the_projections_of_one_process_share_each_decoded_event(
            self, app: Workflows) -> None:
        completed_orders(app, 2)
        notifications = app.recorder.select_notifications(start=1, limit=1000)
        decoded = _DecodedEvents(app)
        progress, unreadable = decoded.items("progress", notifications[:5])
        audit, _ = decoded.items("audit", notifications)
        assert unreadable is None
        direct, _ = to_events(app, "audit", notifications)
        assert [(e.__dict__, t) for e, t in audit] == [(e.__dict__, t) for e, t in direct]
        assert all(a is p for (a, _), (p, _) in zip(audit, progress, strict=False))

    def test_each_projection_stops_before_an_event_it_cannot_read(
            self, app: Workflows) -> None:
        completed_orders(app, 1)
        app.recorder.insert_events([StoredEvent(uuid4(), 1, FUTURE_TOPIC, b"{}")])
        bad = head(app)
        completed_orders(app, 1, prefix="AFTER")
        notifications = app.recorder.select_notifications(start=1, limit=1000)
        decoded = _DecodedEvents(app)
        decoded.items("progress", notifications[-2:])  # events after the bad one, cached
        for name in ("progress", "audit"):
            items, unreadable = decoded.items(name, notifications)
            assert [t.notification_id for _, t in items] == list(range(1, bad))
            assert unreadable is not None
            assert (unreadable.projection, unreadable.position) == (name, bad)


class TestStatus:
    def test_lag_while_no_projector_runs(self, app: Workflows, models: ProjectionViews) -> None:
        completed_orders(app, 1)
        time.sleep(0.2)
        statuses = models.status()
        assert {(s.position, s.head, s.lag_events, s.state) for s in statuses} == {
            (0, head(app), head(app), "stopped")}
        assert all(s.lag_seconds is not None and s.lag_seconds >= 0.2 for s in statuses)

    def test_no_lag_once_caught_up(self, app: Workflows, models: ProjectionViews) -> None:
        completed_orders(app, 1)
        with ProjectorRunner(read_models=models) as runner:
            runner.wait(head(app), timeout=10)
            assert {(s.position, s.head, s.lag_events, s.lag_seconds, s.state, s.generation)
                    for s in models.status()} == {
                (head(app), head(app), 0, 0.0, "running", 1)}
        assert set(states(models).values()) == {"stopped"}

    def test_standby_when_only_waiting_processes_are_left(
            self, models: ProjectionViews) -> None:
        view = models.view("load")
        with LockSession(view.datastore) as waiting_process:
            waiting_process.lock_shared(view.lock_key(LockRole.PRESENCE))
            assert states(models)["load"] == "standby"
        assert states(models)["load"] == "stopped"


class TestWait:
    def test_read_your_writes_from_another_process(self, db: Database, app: Workflows,
                                                   models: ProjectionViews) -> None:
        elsewhere = ProjectionViews(db.env(), app=app)  # no projector in this one
        try:
            completed_orders(app, 1)
            position = head(app)
            with pytest.raises(TimeoutError, match=f"reach position {position}"):
                elsewhere.wait(position, timeout=0.2)
            with ProjectorRunner(read_models=models):
                started = time.monotonic()
                elsewhere.wait(position, timeout=10)
                assert time.monotonic() - started < 5
            assert {s.position for s in elsewhere.status()} == {position}
        finally:
            elsewhere.close()
