"""The audit read model: one row per workflow event, searchable, on real PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID, uuid4

import pytest

from domain.exceptions import InvalidValue
from projections.read_models import ProjectionViews
from tests.support.projection_history import (
    ASSIGN,
    PICK,
    RESERVE,
    Projected,
    all_pages,
)


class TestAuditRows:
    def test_one_row_per_event_of_a_compensated_workflow(self, projected: Projected,
                                                          models: ProjectionViews) -> None:
        workflow_id = projected.ids["compensated"]
        rows = models.audit.for_workflow(workflow_id, limit=100).items
        assert [(r.version, r.event_type, r.step_id, r.actor) for r in rows] == [
            (1, "Created", None, "alice"),
            (2, "Started", None, "alice"),
            (3, "StepStarted", RESERVE, "alice"),
            (4, "StepExecuted", RESERVE, "alice"),
            (5, "StepStarted", ASSIGN, "alice"),
            (6, "StepExecuted", ASSIGN, "alice"),
            (7, "StepStarted", PICK, "alice"),
            (8, "StepFailed", PICK, "alice"),
            (9, "Failed", PICK, "alice"),
            (10, "CompensationStarted", None, "alice"),
            (11, "StepCompensationStarted", ASSIGN, "alice"),
            (12, "StepCompensated", ASSIGN, "alice"),
            (13, "StepCompensationStarted", RESERVE, "alice"),
            (14, "StepCompensated", RESERVE, "alice"),
            (15, "CompensationCompleted", None, "alice"),
        ]

    def test_rows_carry_the_events_positions_times_and_data(self, projected: Projected,
                                                            models: ProjectionViews) -> None:
        for workflow_id in projected.ids.values():
            history = projected.app.history(workflow_id)
            rows = models.audit.for_workflow(workflow_id, limit=100).items
            assert [(r.position, r.workflow_id, r.version, r.event_type, r.timestamp, r.data)
                    for r in rows] == [
                (e.position, workflow_id, e.version, e.event_type, e.timestamp, e.data)
                for e in history]
            correlation = projected.app.get_workflow(workflow_id).correlation_id
            assert {r.correlation_id for r in rows} == {correlation}

    def test_the_actor_is_who_did_it_when_the_event_says(self, projected: Projected,
                                                         models: ProjectionViews) -> None:
        actors = {(r.event_type, r.actor) for name in ("resumed", "cancelled")
                  for r in models.audit.for_workflow(projected.ids[name]).items}
        assert {("Paused", "bob"), ("Resumed", "bob"), ("Cancelled", "carol"),
                ("StepExecuted", "alice")} <= actors

    def test_only_workflow_events_are_audited(self, projected: Projected,
                                              models: ProjectionViews) -> None:
        rows = all_pages(lambda cursor: models.audit.search(limit=7, cursor=cursor))
        expected = sorted(e.position for i in projected.ids.values()
                          for e in projected.app.history(i))
        assert [r.position for r in rows] == expected
        head = projected.app.recorder.max_notification_id()
        assert models.audit.max_tracking_id(projected.app.name) == head


class TestAuditSearch:
    def test_by_workflow_and_by_correlation_id(self, projected: Projected,
                                               models: ProjectionViews) -> None:
        workflow_id = projected.ids["paused"]
        by_workflow = models.audit.search(workflow_id=workflow_id).items
        by_correlation = models.audit.search(correlation_id="ORD-corr-paused").items
        assert [r.event_type for r in by_workflow] == ["Created", "Started", "Paused"]
        assert by_correlation == by_workflow

    def test_by_event_types(self, projected: Projected, models: ProjectionViews) -> None:
        rows = models.audit.search(event_type=["Paused", "Resumed"]).items
        assert [(r.workflow_id, r.event_type) for r in rows] == [
            (projected.ids["resumed"], "Paused"), (projected.ids["resumed"], "Resumed"),
            (projected.ids["paused"], "Paused")]
        assert models.audit.search(event_type="Completed").items[0].workflow_id == \
            projected.ids["succeeded"]

    def test_by_time_range_half_open(self, projected: Projected, models: ProjectionViews) -> None:
        every = all_pages(lambda cursor: models.audit.search(limit=500, cursor=cursor))
        middle = every[len(every) // 2].timestamp
        later = models.audit.search(after=middle, limit=500).items
        earlier = models.audit.search(before=middle, limit=500).items
        assert [r.position for r in earlier + later] == [r.position for r in every]
        assert later[0].timestamp == middle
        one = models.audit.search(after=middle, before=middle + timedelta(microseconds=1))
        assert [r.timestamp for r in one.items] == [middle]

    def test_newest_first_pages(self, models: ProjectionViews) -> None:
        oldest_first = all_pages(lambda cursor: models.audit.search(limit=9, cursor=cursor))
        newest_first = all_pages(lambda cursor: models.audit.search(
            limit=9, cursor=cursor, descending=True))
        assert newest_first == oldest_first[::-1]

    def test_a_workflows_rows_page_in_order(self, projected: Projected,
                                            models: ProjectionViews) -> None:
        workflow_id = projected.ids["succeeded"]
        paged = all_pages(lambda cursor: models.audit.for_workflow(workflow_id, 4, cursor))
        assert [r.version for r in paged] == list(range(1, len(paged) + 1))
        assert len(paged) == len(projected.app.history(workflow_id))

    def test_nothing_for_an_unknown_workflow(self, models: ProjectionViews) -> None:
        page = models.audit.for_workflow(uuid4())
        assert (page.items, page.next_cursor) == ((), None)

    def test_a_cursor_only_fits_its_own_query(self, projected: Projected,
                                              models: ProjectionViews) -> None:
        workflow_cursor = models.audit.for_workflow(projected.ids["succeeded"], 1).next_cursor
        search_cursor = models.audit.search(limit=1).next_cursor
        assert workflow_cursor is not None and search_cursor is not None
        with pytest.raises(InvalidValue, match="cursor"):
            models.audit.search(cursor=workflow_cursor)
        with pytest.raises(InvalidValue, match="cursor"):
            models.audit.search(cursor=search_cursor, descending=True)
        with pytest.raises(InvalidValue, match="cursor"):
            models.audit.for_workflow(projected.ids["paused"], cursor=workflow_cursor)
        with pytest.raises(InvalidValue, match="limit"):
            models.audit.search(limit=1000)


def test_unknown_ids_are_just_absent(models: ProjectionViews) -> None:
    assert models.audit.search(workflow_id=UUID(int=1)).items == ()
