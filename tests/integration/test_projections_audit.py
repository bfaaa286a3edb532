"""The audit read model: one row per workflow event, searchable, on real PostgreSQL."""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from application.database import Database
from application.workflows import Workflows
from domain.exceptions import InvalidValue
from projections.audit import EPOCH, AuditCounts
from projections.read_models import ProjectionViews
from tests.support.projection_history import (
    ASSIGN,
    PICK,
    RESERVE,
    Projected,
    all_pages,
    completed_orders,
    live_projection,
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


# ---------------------------------------------------------------------- counts

START = datetime(2026, 3, 1, 0, 0, 3, tzinfo=UTC)  # not on a minute: buckets must align
TICK = timedelta(seconds=7)
MIDNIGHT = datetime(2026, 3, 1, tzinfo=UTC)


class SevenSecondClock:
    """Readings 7 s apart from START: a few workflows' events spread over minutes."""

    def __init__(self) -> None:
        self._ticks = itertools.count()
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return START + TICK * next(self._ticks)


def three_completed(app: Workflows) -> dict[str, UUID]:
    return {f"order-{n}": i for n, i in enumerate(completed_orders(app, 3, prefix="CNT"))}


@pytest.fixture(scope="module")
def spread(server: Database) -> Iterator[Projected]:
    with live_projection(server, three_completed, clock=SevenSecondClock()) as done:
        yield done


def every_row(models: ProjectionViews) -> list[tuple[datetime, str]]:
    rows = all_pages(lambda cursor: models.audit.search(limit=500, cursor=cursor))
    return [(r.timestamp, r.event_type) for r in rows]


def by_python(rows: list[tuple[datetime, str]], types: set[str], after: datetime,
              before: datetime, width: int) -> Counter[tuple[datetime, str]]:
    """The oracle: each row in the epoch-aligned bucket its time falls in."""
    step = timedelta(seconds=width)
    return Counter((EPOCH + ((t - EPOCH) // step) * step, kind) for t, kind in rows
                   if kind in types and after <= t < before)


def sparse(counts: AuditCounts) -> Counter[tuple[datetime, str]]:
    return Counter({(start, kind): n for start, per in counts.buckets()
                    for kind, n in per.items() if n})


class TestAuditCounts:
    def test_counts_what_the_rows_hold_per_aligned_bucket(self, spread: Projected) -> None:
        rows = every_row(spread.models)
        first, last = rows[0][0], rows[-1][0]
        assert last - first > timedelta(minutes=2)  # several minute buckets
        types = {"Created", "StepExecuted", "Completed"}
        for width in (1, 60, 600, 86_400):
            counts = spread.models.audit.counts(sorted(types), first, last + TICK, width)
            assert sparse(counts) == by_python(rows, types, first, last + TICK, width), width
            assert counts.totals() == {"Completed": 3, "Created": 3, "StepExecuted": 12}

    def test_buckets_are_aligned_to_the_epoch_and_cover_the_window(
            self, spread: Projected) -> None:
        after, before = START + timedelta(seconds=30), START + timedelta(minutes=10)
        counts = spread.models.audit.counts(["Completed"], after, before, 60)
        starts = [start for start, _ in counts.buckets()]
        # 00:00:33 is in the bucket of 00:00; the last bucket starts at 00:10, before 00:10:03.
        assert starts[0] == datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
        assert starts == [starts[0] + timedelta(minutes=i) for i in range(11)]
        assert all((s - EPOCH) % timedelta(seconds=60) == timedelta(0) for s in starts)
        # A window starting elsewhere in the same minute answers the same buckets.
        later = spread.models.audit.counts(["Completed"], after + timedelta(seconds=20),
                                           before, 60)
        assert [start for start, _ in later.buckets()] == starts

    def test_every_bucket_is_answered_zeros_included(self, spread: Projected) -> None:
        rows = every_row(spread.models)
        after = rows[-1][0] - timedelta(hours=1, microseconds=-1)  # not on a bucket
        counts = spread.models.audit.counts(["Completed", "MarkedLate"], after,
                                            after + timedelta(hours=3), 600)
        buckets = counts.buckets()
        assert len(buckets) == 19  # 3 hours from an unaligned start: 18 full and a partial one
        assert all(set(per) == {"Completed", "MarkedLate"} for _, per in buckets)
        assert sum(per["Completed"] for _, per in buckets) == 3
        assert sum(1 for _, per in buckets if per == {"Completed": 0, "MarkedLate": 0}) >= 17
        assert counts.totals() == {"Completed": 3, "MarkedLate": 0}

    def test_only_the_types_asked_for(self, spread: Projected) -> None:
        rows = every_row(spread.models)
        window = (rows[0][0], rows[-1][0] + TICK)
        counts = spread.models.audit.counts(["StepStarted", "StepStarted"], *window, 3600)
        assert counts.totals() == {"StepStarted": 12}
        assert {k for _, per in counts.buckets() for k in per} == {"StepStarted"}
        assert spread.models.audit.counts(["Failed"], *window, 3600).totals() == {"Failed": 0}

    def test_the_window_is_after_inclusive_before_exclusive(self, spread: Projected) -> None:
        done = [t for t, kind in every_row(spread.models) if kind == "Completed"]
        at = done[1]

        def completed(after: datetime, before: datetime) -> int:
            return spread.models.audit.counts(["Completed"], after, before, 1).totals()[
                "Completed"]

        assert completed(at, at + timedelta(microseconds=1)) == 1
        assert completed(at - timedelta(seconds=1), at) == 0
        assert completed(at + timedelta(microseconds=1), at + timedelta(seconds=1)) == 0
        assert completed(done[0], done[2]) == 2
        assert completed(done[0], done[2] + timedelta(microseconds=1)) == 3

    @pytest.mark.parametrize(("types", "after", "before", "width", "field"), [
        (["Completed"], START, START, 60, "before"),
        (["Completed"], START, START - timedelta(seconds=1), 60, "before"),
        (["Completed"], START, START + timedelta(days=31, microseconds=1), 86_400, "after"),
        (["Completed"], MIDNIGHT, MIDNIGHT + timedelta(days=1, microseconds=1), 60,
         "bucket_seconds"),
        (["Completed"], START, START + timedelta(days=1), 60, "bucket_seconds"),
        (["Completed"], START, START + timedelta(hours=1), 0, "bucket_seconds"),
        (["Completed"], START, START + timedelta(hours=1), 86_401, "bucket_seconds"),
        ([], START, START + timedelta(hours=1), 60, "event_type"),
        (["Completed", "Finished"], START, START + timedelta(hours=1), 60, "event_type"),
        ([f"T{n}" for n in range(11)], START, START + timedelta(hours=1), 60, "event_type"),
        (["Completed"], datetime(1, 1, 1, tzinfo=UTC),
         datetime(1, 1, 1, 0, 1, tzinfo=UTC), 7, "after"),
    ])
    def test_a_window_it_does_not_take_is_invalid(
            self, spread: Projected, types: list[str], after: datetime, before: datetime,
            width: int, field: str) -> None:
        with pytest.raises(InvalidValue) as refused:
            spread.models.audit.counts(types, after, before, width)
        assert refused.value.field == field

    def test_the_largest_windows_it_takes(self, spread: Projected) -> None:
        day = spread.models.audit.counts(["Completed"], MIDNIGHT, MIDNIGHT + timedelta(days=1),
                                         60)
        assert len(day.buckets()) == 1440 and day.totals() == {"Completed": 3}
        month = spread.models.audit.counts(["Completed"], START, START + timedelta(days=31),
                                           86_400)
        assert month.totals() == {"Completed": 3} and len(month.buckets()) == 32
