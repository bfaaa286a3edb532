"""The progress read model, fed live by the projector, on real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from uuid import UUID, uuid4

import pytest
from psycopg.sql import SQL, Identifier

from application.database import Database
from application.workflows import Workflows
from bootstrap.container import projector_runner, read_model_views
from domain.exceptions import InvalidValue
from projections.progress import ADDED_COLUMNS, ProgressRow
from projections.read_models import ProjectionViews
from projections.rebuild import rebuild
from projections.runner import ProjectorRunner
from tests.support.projection_history import (
    ASSIGN,
    PACK,
    PICK,
    RESERVE,
    Projected,
    all_pages,
    out_of_stock,
    run_step,
    start,
    timeout,
)


@pytest.fixture
def history(projected: Projected) -> dict[str, UUID]:
    return projected.ids


@pytest.fixture
def own_models(db: Database, app: Workflows) -> Iterator[ProjectionViews]:
    """Read models on this test's own schema, for tests that write."""
    read_models = read_model_views(db, app)
    yield read_models
    read_models.close()


@pytest.fixture
def runner(own_models: ProjectionViews) -> Iterator[ProjectorRunner]:
    with projector_runner(own_models, standby_poll_seconds=0.1) as running:
        yield running


def steps(models: ProjectionViews, workflow_id: UUID) -> list[tuple[str, str, int]]:
    row = models.progress.get(workflow_id)
    assert row is not None
    return [(s.step_id, s.status, s.attempts) for s in row.steps]


class TestProgressRows:
    def test_a_completed_workflow(self, projected: Projected, models: ProjectionViews,
                                  history: dict[str, UUID]) -> None:
        events = projected.app.history(history["succeeded"])
        row = models.progress.get(history["succeeded"])
        assert row is not None
        assert (row.id, row.definition, row.definition_version, row.type, row.priority) == (
            history["succeeded"], "order-fulfillment", 2, "ORDER_FULFILLMENT", "HIGH")
        assert (row.status, row.current_step, row.steps_done, row.steps_total) == (
            "COMPLETED", None, 4, 4)
        assert (row.progress_percent, row.attempts, row.retries, row.retry_count) == (
            100.0, 4, 0, 0)
        assert (row.last_error, row.compensation_progress, row.waiting_reason) == (
            None, None, None)
        assert (row.correlation_id, row.triggered_by, row.driven_by) == (
            "ORD-corr-succeeded", "alice", "caller")
        assert (row.created_at, row.started_at, row.updated_at, row.finished_at) == (
            events[0].timestamp, events[1].timestamp, events[-1].timestamp,
            events[-1].timestamp)
        assert (row.version, row.position) == (events[-1].version, events[-1].position)
        assert (row.late, row.waveless, row.batch_id) == (False, False, None)
        assert steps(models, row.id) == [(RESERVE, "COMPLETED", 1), (ASSIGN, "COMPLETED", 1),
                                         (PICK, "COMPLETED", 1), (PACK, "COMPLETED", 1)]

    def test_a_retried_step_counts_its_attempts_and_keeps_the_error_as_history(
            self, models: ProjectionViews, history: dict[str, UUID]) -> None:
        row = models.progress.get(history["retried"])
        assert row is not None
        assert (row.status, row.current_step, row.steps_done, row.progress_percent) == (
            "EXECUTING", ASSIGN, 1, 25.0)
        assert (row.attempts, row.retries, row.finished_at, row.waiting_reason) == (
            3, 1, None, None)
        assert row.last_error is None  # the retry succeeded: no error is current
        assert row.last_failure is not None and row.last_failure["code"] == "TIMEOUT"
        assert steps(models, row.id) == [(RESERVE, "COMPLETED", 2), (ASSIGN, "EXECUTING", 1),
                                         (PICK, "PENDING", 0), (PACK, "PENDING", 0)]

    def test_a_failure_compensated_in_reverse(self, projected: Projected, models: ProjectionViews,
                                              history: dict[str, UUID]) -> None:
        app = projected.app
        row = models.progress.get(history["compensated"])
        assert row is not None
        assert (row.status, row.current_step, row.steps_done, row.progress_percent) == (
            "COMPENSATED", None, 0, 0.0)
        assert (row.attempts, row.compensation_progress) == (3, 100.0)
        assert row.last_error is not None and row.last_error["code"] == "OUT_OF_STOCK"
        assert row.last_failure == row.last_error
        assert row.finished_at == app.history(row.id)[-1].timestamp
        assert steps(models, row.id) == [(RESERVE, "COMPENSATED", 1),
                                         (ASSIGN, "COMPENSATED", 1), (PICK, "FAILED", 1),
                                         (PACK, "PENDING", 0)]

    def test_pause_resume_cancel_and_a_paused_one(self, models: ProjectionViews,
                                                  history: dict[str, UUID]) -> None:
        rows = {name: models.progress.get(history[name])
                for name in ("resumed", "cancelled", "paused")}
        shown = {name: (r.status, r.current_step, r.steps_done, r.paused_reason,
                        r.finished_at is not None) for name, r in rows.items() if r}
        assert shown == {
            "resumed": ("EXECUTING", ASSIGN, 1, None, False),
            "cancelled": ("CANCELLED", None, 1, None, True),
            "paused": ("PAUSED", RESERVE, 0, "inspection", False),
        }

    def test_rows_agree_with_the_workflows_folded_from_the_same_events(
            self, projected: Projected, models: ProjectionViews, history: dict[str, UUID]) -> None:
        app = projected.app
        for workflow_id in history.values():
            wf = app.get_workflow(workflow_id)
            row = models.progress.get(workflow_id)
            assert row is not None
            assert (row.status, row.current_step, row.progress_percent, row.version) == (
                wf.status.value, wf.current_step_id, wf.progress_percentage, wf.version)
            assert [s.status for s in row.steps] == [s.status.value for s in wf.steps.values()]
            if row.compensation_progress is not None:
                assert row.compensation_progress == wf.compensation_progress

    def test_a_step_waiting_for_its_retry_shows_when(self, app: Workflows,
                                                     own_models: ProjectionViews,
                                                     runner: ProjectorRunner) -> None:
        workflow_id = start(app, "ORD-wait")
        app.start_step(workflow_id, RESERVE)
        _, position = app.handle_step_failure(workflow_id, RESERVE, timeout(RESERVE))
        runner.wait(position or 0, timeout=10)
        row = own_models.progress.get(workflow_id)
        assert row is not None
        assert row.next_attempt_at == app.get_workflow(workflow_id).step(RESERVE).next_attempt_at
        assert row.next_attempt_at is not None

    def test_events_of_other_streams_only_move_the_position(
            self, app: Workflows, own_models: ProjectionViews, runner: ProjectorRunner) -> None:
        head = app.recorder.max_notification_id() or 0  # the definition catalog's events
        runner.wait(head, timeout=10)
        assert head > 0
        assert own_models.progress.max_tracking_id(app.name) == head
        assert own_models.progress.list().items == ()


class TestRowsSayWhatIsTrueNow:
    def row(self, app: Workflows, models: ProjectionViews, runner: ProjectorRunner,
            workflow_id: UUID) -> ProgressRow:
        runner.wait(app.recorder.max_notification_id() or 0, timeout=10)
        row = models.progress.get(workflow_id)
        assert row is not None
        wf = app.get_workflow(workflow_id)
        assert (row.status, row.current_step) == (wf.status.value, wf.current_step_id)
        return row

    def test_a_workflow_completed_after_a_retry_has_no_current_error(
            self, app: Workflows, own_models: ProjectionViews, runner: ProjectorRunner) -> None:
        workflow_id = start(app, "ORD-recovered")
        app.start_step(workflow_id, RESERVE)
        app.handle_step_failure(workflow_id, RESERVE, timeout(RESERVE))
        waiting = self.row(app, own_models, runner, workflow_id)
        assert waiting.last_error is not None and waiting.last_error["code"] == "TIMEOUT"
        for step_id in (RESERVE, ASSIGN, PICK, PACK):
            run_step(app, workflow_id, step_id)
        app.complete_saga(workflow_id)
        row = self.row(app, own_models, runner, workflow_id)
        assert (row.status, row.current_step, row.last_error) == ("COMPLETED", None, None)
        assert row.last_failure is not None and row.last_failure["code"] == "TIMEOUT"

    def test_a_resolved_compensation_failure_gives_way_to_the_sagas_failure(
            self, app: Workflows, own_models: ProjectionViews, runner: ProjectorRunner) -> None:
        workflow_id = start(app, "ORD-undo")
        run_step(app, workflow_id, RESERVE)
        app.start_step(workflow_id, ASSIGN)
        app.handle_step_failure(workflow_id, ASSIGN, out_of_stock(ASSIGN))
        # A compensation call that fails once, as the engine records it (the manual step
        # API has no compensation failure).
        app._command(workflow_id, lambda w, now: w.start_step_compensation(RESERVE, now))
        app._command(workflow_id, lambda w, now: w.handle_compensation_failure(
            RESERVE, timeout(RESERVE), now))
        failing = self.row(app, own_models, runner, workflow_id)
        assert failing.status == "COMPENSATING"
        assert failing.last_error is not None and failing.last_error["code"] == "TIMEOUT"
        app.mark_step_compensated(workflow_id, RESERVE, {"released": True})
        app.complete_compensation(workflow_id)
        row = self.row(app, own_models, runner, workflow_id)
        assert (row.status, row.current_step) == ("COMPENSATED", None)
        assert row.last_error is not None and row.last_error["code"] == "OUT_OF_STOCK"
        assert row.last_failure is not None and row.last_failure["code"] == "TIMEOUT"

    def test_a_step_applied_without_an_answer_stays_failed_while_its_undo_fails(
            self, app: Workflows, own_models: ProjectionViews, runner: ProjectorRunner) -> None:
        from domain.enums import ErrorType
        from domain.workflow_error import OUTPUT_TOO_LARGE, WorkflowError

        workflow_id = start(app, "ORD-too-big")
        run_step(app, workflow_id, RESERVE)
        app.start_step(workflow_id, ASSIGN)
        app.handle_step_failure(workflow_id, ASSIGN, WorkflowError.create(
            ASSIGN, "robotics-service", OUTPUT_TOO_LARGE, "over the limit",
            ErrorType.VALIDATION_ERROR, False))
        app._command(workflow_id, lambda w, now: w.start_step_compensation(ASSIGN, now))
        app._command(workflow_id, lambda w, now: w.handle_compensation_failure(
            ASSIGN, timeout(ASSIGN), now))
        row = self.row(app, own_models, runner, workflow_id)
        wf = app.get_workflow(workflow_id)
        statuses = {s.step_id: s.status for s in row.steps}
        assert statuses == {s.step_id: s.status.value for s in wf.steps.values()}
        assert statuses[ASSIGN] == "FAILED"

    def test_a_cancelled_or_retried_workflow_has_no_current_error_or_step(
            self, app: Workflows, own_models: ProjectionViews, runner: ProjectorRunner) -> None:
        workflow_id = start(app, "ORD-again")
        app.start_step(workflow_id, RESERVE)
        app.handle_step_failure(workflow_id, RESERVE, timeout(RESERVE))
        app.cancel(workflow_id, reason="re-plan")
        row = self.row(app, own_models, runner, workflow_id)
        assert (row.status, row.current_step, row.last_error) == ("CANCELLED", None, None)
        app.retry(workflow_id)
        row = self.row(app, own_models, runner, workflow_id)
        assert (row.status, row.current_step, row.last_error) == ("EXECUTING", RESERVE, None)
        assert row.last_failure is not None and row.last_failure["code"] == "TIMEOUT"


def drop_added_columns(models: ProjectionViews) -> None:
    """Makes the live progress table look as an earlier release left it."""
    view = models.progress
    with view.datastore.transaction(commit=True) as curs:
        for column, _ in ADDED_COLUMNS:
            curs.execute(SQL("DROP VIEW {}").format(view.stable_name()))
            curs.execute(SQL("ALTER TABLE {}.{} DROP COLUMN {}").format(
                Identifier(view.schema), Identifier(view.prefix + "_g1"), Identifier(column)))
            curs.execute(SQL("CREATE VIEW {} AS SELECT * FROM {}.{}").format(
                view.stable_name(), Identifier(view.schema), Identifier(view.prefix + "_g1")))


class TestUpgrade:
    def test_rows_of_an_earlier_release_mark_the_projection_until_a_rebuild(
            self, db: Database, app: Workflows, caplog: pytest.LogCaptureFixture) -> None:
        models = read_model_views(db, app)
        try:
            with projector_runner(models, standby_poll_seconds=0.1) as running:
                workflow_id = start(app, "ORD-before-upgrade")
                app.start_step(workflow_id, RESERVE)
                _, position = app.handle_step_failure(workflow_id, RESERVE, timeout(RESERVE))
                running.wait(position or 0, timeout=60)  # generous: a loaded machine
            assert models.progress.status(app).rebuild_needed is None
            drop_added_columns(models)
        finally:
            models.close()
        with caplog.at_level("WARNING", logger="projections.progress"):
            upgraded = read_model_views(db, app)
        try:
            warned = [r for r in caplog.records if r.name == "projections.progress"
                      and "rebuild" in r.getMessage()]
            assert [r.projection for r in warned] == ["progress"]
            again = read_model_views(db, app)  # the mark outlives the process that set it
            try:
                needed = again.progress.status(app).rebuild_needed
            finally:
                again.close()
            assert needed is not None and "last_failure" in needed and "rebuild" in needed
            row = upgraded.progress.get(workflow_id)
            assert row is not None and row.last_failure is None  # what the mark warns of
            rebuild(upgraded, ["progress"])
            assert upgraded.progress.status(app).rebuild_needed is None
            row = upgraded.progress.get(workflow_id)
            assert row is not None and row.last_failure is not None
            assert row.last_failure["code"] == "TIMEOUT"
        finally:
            upgraded.close()

    def test_a_table_of_an_earlier_release_gains_the_new_columns(
            self, db: Database, app: Workflows) -> None:
        models = read_model_views(db, app)
        view = models.progress
        with view.datastore.transaction(commit=True) as curs:
            for column, _ in ADDED_COLUMNS:
                curs.execute(SQL("DROP VIEW {}").format(view.stable_name()))
                curs.execute(SQL("ALTER TABLE {}.{} DROP COLUMN {}").format(
                    Identifier(view.schema), Identifier(view.prefix + "_g1"),
                    Identifier(column)))
                curs.execute(SQL("CREATE VIEW {} AS SELECT * FROM {}.{}").format(
                    view.stable_name(), Identifier(view.schema),
                    Identifier(view.prefix + "_g1")))
        models.close()
        upgraded = read_model_views(db, app)
        try:
            with projector_runner(upgraded, standby_poll_seconds=0.1) as running:
                workflow_id = start(app, "ORD-upgrade")
                app.start_step(workflow_id, RESERVE)
                _, position = app.handle_step_failure(workflow_id, RESERVE, timeout(RESERVE))
                running.wait(position or 0, timeout=10)
            row = upgraded.progress.get(workflow_id)
            assert row is not None and row.last_failure is not None
            # An empty table had nothing to backfill: no rebuild is asked for.
            assert upgraded.progress.status(app).rebuild_needed is None
        finally:
            upgraded.close()


class TestProgressQueries:
    def test_unknown_workflow_is_none(self, models: ProjectionViews) -> None:
        assert models.progress.get(uuid4()) is None

    def test_filters(self, models: ProjectionViews, history: dict[str, UUID]) -> None:
        def ids(**filters: object) -> set[UUID]:
            return {r.id for r in models.progress.list(**filters).items}  # type: ignore[arg-type]

        assert ids(status="EXECUTING") == {history["retried"], history["resumed"]}
        assert ids(status=["PAUSED", "CANCELLED"]) == {history["paused"], history["cancelled"]}
        assert ids(priority="HIGH") == {history["succeeded"]}
        assert ids(correlation_id="ORD-corr-paused") == {history["paused"]}
        assert ids(type="ORDER_FULFILLMENT", definition="order-fulfillment") == set(
            history.values())
        assert ids(type="PICKING") == set()
        created = {name: models.progress.get(i).created_at  # type: ignore[union-attr]
                   for name, i in history.items()}
        middle = created["compensated"]
        assert ids(created_after=middle) == {history[n] for n, t in created.items()
                                             if t >= middle}
        assert ids(created_before=middle) == {history[n] for n, t in created.items()
                                              if t < middle}

    @pytest.mark.parametrize("sort", ["created_at", "updated_at", "priority", "status"])
    @pytest.mark.parametrize("descending", [True, False])
    def test_pages_follow_one_stable_order(self, models: ProjectionViews, history: dict[str, UUID],
                                           sort: str, descending: bool) -> None:
        whole = models.progress.list(sort=sort, descending=descending, limit=500).items
        paged = all_pages(lambda cursor: models.progress.list(
            sort=sort, descending=descending, limit=2, cursor=cursor))
        assert [r.id for r in paged] == [r.id for r in whole]
        assert len(whole) == len(history)
        rank = {"HIGH": 1, "NORMAL": 2, "LOW": 3}
        key = {"created_at": lambda r: r.created_at, "updated_at": lambda r: r.updated_at,
               "priority": lambda r: -rank[r.priority], "status": lambda r: r.status}[sort]
        values = [key(r) for r in whole]
        assert values == sorted(values, reverse=descending)

    def test_newest_first_by_default(self, models: ProjectionViews,
                                     history: dict[str, UUID]) -> None:
        rows = models.progress.list().items
        assert [r.created_at for r in rows] == sorted((r.created_at for r in rows),
                                                      reverse=True)

    def test_a_page_ends_with_no_cursor(self, models: ProjectionViews,
                                        history: dict[str, UUID]) -> None:
        assert models.progress.list(limit=6).next_cursor is None
        assert models.progress.list(limit=5).next_cursor is not None

    def test_bad_queries_are_refused(self, models: ProjectionViews,
                                     history: dict[str, UUID]) -> None:
        cursor = models.progress.list(limit=1).next_cursor
        with pytest.raises(InvalidValue, match="sort"):
            models.progress.list(sort="name")
        with pytest.raises(InvalidValue, match="limit"):
            models.progress.list(limit=0)
        with pytest.raises(InvalidValue, match="limit"):
            models.progress.list(limit=501)
        with pytest.raises(InvalidValue, match="cursor"):
            models.progress.list(cursor="not-a-cursor")
        with pytest.raises(InvalidValue, match="different query"):
            models.progress.list(sort="status", cursor=cursor)

    def test_created_window_is_half_open(self, models: ProjectionViews,
                                         history: dict[str, UUID]) -> None:
        row = models.progress.get(history["paused"])
        assert row is not None
        exact = models.progress.list(created_after=row.created_at,
                                     created_before=row.created_at + timedelta(microseconds=1))
        assert [r.id for r in exact.items] == [row.id]
