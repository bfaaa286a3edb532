"""Seed section 6: eligibility, dynamic batches and their adaptive size and interval."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from domain.enums import WorkflowPriority, WorkflowStatus, WorkflowType
from domain.exceptions import InvalidValue
from domain.waveless import (
    Candidate,
    adapt_batch_size,
    adapt_interval,
    can_transition_to_waveless,
    create_dynamic_batch,
    plan_batch,
    release_order,
)

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def candidate(priority: str, seconds: float = 0, cut_off: datetime | None = None,
              service: str | None = None, expected_ms: float = 0) -> Candidate:
    return Candidate(uuid.uuid4(), WorkflowPriority(priority), T0 + timedelta(seconds=seconds),
                     service, cut_off, expected_ms)


class Shape:
    def __init__(self, workflow_type: WorkflowType, status: WorkflowStatus) -> None:
        self.workflow_type = workflow_type
        self.status = status


class TestSection6Eligibility:
    @pytest.mark.parametrize("status", list(WorkflowStatus))
    @pytest.mark.parametrize("kind", list(WorkflowType))
    def test_capable_types_that_are_pending_or_executing_qualify_at_any_priority(self, kind,
                                                                                 status):
        expected = kind in (WorkflowType.ORDER_FULFILLMENT, WorkflowType.PICKING,
                            WorkflowType.PACKING) and status in (WorkflowStatus.PENDING,
                                                                 WorkflowStatus.EXECUTING)
        assert can_transition_to_waveless(Shape(kind, status)) is expected


class TestSection6DynamicBatch:
    def test_batch_is_high_then_normal_then_low_and_fifo_within_a_priority(self):
        pending = [candidate("LOW", 1), candidate("NORMAL", 2), candidate("HIGH", 3),
                   candidate("HIGH", 4), candidate("NORMAL", 5), candidate("LOW", 6)]
        batch = create_dynamic_batch(pending, 10, T0 + timedelta(seconds=10))
        assert [c.priority for c in batch] == ["HIGH", "HIGH", "NORMAL", "NORMAL", "LOW", "LOW"]
        assert batch[0] is pending[2] and batch[1] is pending[3]

    def test_batch_is_cut_to_its_size(self):
        assert len(create_dynamic_batch([candidate("HIGH") for _ in range(15)], 10, T0)) == 10

    def test_work_waiting_over_60_seconds_goes_first_whatever_its_priority(self):
        old_low = candidate("LOW", 0)
        fresh_high = candidate("HIGH", 61)
        batch = create_dynamic_batch([fresh_high, old_low], 1, T0 + timedelta(seconds=61))
        assert batch == [old_low]

    def test_least_slack_first_within_a_priority_and_before_no_cut_off(self):
        none = candidate("NORMAL", 0)
        loose = candidate("NORMAL", 1, cut_off=T0 + timedelta(hours=2))
        tight = candidate("NORMAL", 2, cut_off=T0 + timedelta(hours=1), expected_ms=3_000_000)
        assert create_dynamic_batch([none, loose, tight], 3, T0) == [tight, loose, none]

    @pytest.mark.parametrize("size", [0, -1, 1.5, True])
    def test_invalid_batch_size_is_rejected(self, size):
        with pytest.raises(InvalidValue, match="batch_size"):
            create_dynamic_batch([], size, T0)


class TestAdaptiveSettings:
    @pytest.mark.parametrize(("score", "size"), [(96, 2), (95, 2), (90, 5), (85, 5), (70, 10),
                                                 (50, 10), (49.9, 20), (None, 10)])
    def test_batch_size_follows_the_load_score(self, score, size):
        assert adapt_batch_size(10, score) == size

    @pytest.mark.parametrize(("depth", "interval"), [(101, 500), (100, 1000), (51, 1000),
                                                     (50, 1000), (10, 1000), (9, 2000), (0, 2000)])
    def test_interval_follows_the_queue_depth(self, depth, interval):
        assert adapt_interval(1000, depth) == interval

    def test_release_pauses_at_score_95_or_error_rate_half(self):
        pending = [candidate("HIGH")]
        assert plan_batch(pending, T0, load_score=95).released == ()
        assert plan_batch(pending, T0, error_rate=0.5).released == ()
        assert len(plan_batch(pending, T0, load_score=94, error_rate=0.4).released) == 1

    def test_wip_cap_holds_back_only_the_capped_service(self):
        capped = candidate("HIGH", 0, service="warehouse-service")
        free = candidate("LOW", 1, service="packing-service")
        plan = plan_batch([capped, free], T0, in_flight={"warehouse-service": 3},
                          wip_caps={"warehouse-service": 3})
        assert plan.released == (free,)
        assert plan.waiting[capped.workflow_id] == "cap reached: warehouse-service"


class TestCutoffUrgency:
    """`cutoff_urgency_ms`: work close to missing its cut-off goes ahead of priority."""

    def window(self) -> tuple[datetime, list[Candidate]]:
        now = T0 + timedelta(seconds=10)
        # Two HIGH with far cut-offs (or none), two NORMAL with 5 s and 20 s of slack, a LOW
        # that can no longer make its cut-off.
        pending = [candidate("HIGH", 1, now + timedelta(hours=1)), candidate("HIGH", 2),
                   candidate("NORMAL", 3, now + timedelta(seconds=20)),
                   candidate("NORMAL", 4, now + timedelta(seconds=6), expected_ms=1000),
                   candidate("LOW", 5, now - timedelta(seconds=1))]
        return now, pending

    def test_without_it_priority_always_dominates(self):
        now, p = self.window()
        order = plan_batch(p, now).order
        assert order == tuple(c.workflow_id for c in (p[0], p[1], p[3], p[2], p[4]))

    def test_default_and_zero_change_nothing(self):
        now, p = self.window()
        expected = release_order(p, now)
        assert release_order(p, now, cutoff_urgency_ms=None) == expected
        assert release_order(p, now, cutoff_urgency_ms=0) == expected
        assert plan_batch(p, now, cutoff_urgency_ms=0).order == plan_batch(p, now).order

    def test_slack_below_the_urgency_goes_ahead_of_priority_least_slack_first(self):
        now, p = self.window()
        order = release_order(p, now, cutoff_urgency_ms=30_000)
        assert order == [p[3], p[2], p[0], p[1], p[4]]

    def test_only_slack_below_the_urgency_moves_up(self):
        now, p = self.window()
        order = release_order(p, now, cutoff_urgency_ms=10_000)
        assert order == [p[3], p[0], p[1], p[2], p[4]]

    def test_work_that_cannot_make_its_cut_off_keeps_its_priority_place(self):
        now, p = self.window()
        assert release_order(p, now, cutoff_urgency_ms=10**9)[-1] is p[4]

    def test_aged_work_still_goes_first(self):
        now, p = self.window()
        old_low = candidate("LOW", -60)
        order = release_order([*p, old_low], now, cutoff_urgency_ms=30_000)
        assert order[0] is old_low and order[1] is p[3]

    def test_a_full_batch_takes_the_urgent_normal_orders(self):
        now, p = self.window()
        plan = plan_batch(p, now, batch_size=2, cutoff_urgency_ms=30_000)
        assert plan.released == (p[3], p[2])

    @pytest.mark.parametrize("value", [-1, 1.5, "100", True])
    def test_invalid_urgency_is_rejected(self, value):
        now, p = self.window()
        with pytest.raises(InvalidValue):
            plan_batch(p, now, cutoff_urgency_ms=value)
