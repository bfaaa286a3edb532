"""Snapshots: a workflow restored from its snapshot equals the one folded from its events."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from domain.compensation import CompensationAction
from domain.step import StepResult, StepSpec
from domain.workflow import Workflow
from tests.unit.sagas import (
    ASSIGN,
    NOW,
    PICK,
    RESERVE,
    completed_through,
    executing_workflow,
    ms,
    pending_workflow,
    recoverable,
    unrecoverable,
)


def mid_step() -> Workflow:
    wf = completed_through(RESERVE)
    wf.start_step(ASSIGN, NOW + ms(2000))
    return wf


def waiting_to_retry() -> Workflow:
    wf = executing_workflow()
    wf.start_step(RESERVE, NOW)
    wf.handle_step_failure(RESERVE, recoverable(RESERVE), NOW + ms(100))
    return wf


def compensating() -> Workflow:
    wf = completed_through(RESERVE, ASSIGN)
    wf.fail(unrecoverable(PICK), NOW + ms(5000))
    wf.mark_step_compensated(ASSIGN, NOW + ms(6000), output={"unassigned": True})
    wf.start_step_compensation(RESERVE, NOW + ms(7000))
    return wf


def compensation_failed() -> Workflow:
    wf = completed_through(RESERVE)
    wf.fail(unrecoverable(ASSIGN), NOW + ms(2000))
    wf.start_step_compensation(RESERVE, NOW + ms(3000))
    wf.handle_compensation_failure(RESERVE, unrecoverable(RESERVE), NOW + ms(3100))
    return wf


def completed() -> Workflow:
    wf = completed_through(RESERVE, ASSIGN, PICK, "pack-items")
    wf.complete(NOW + ms(9000))
    return wf


def cancelled_and_retried() -> Workflow:
    wf = completed_through(RESERVE)
    wf.cancel(NOW + ms(2000), "operator mistake")
    wf.retry(NOW + ms(3000))
    return wf


def waveless_with_cut_off() -> Workflow:
    wf = pending_workflow(priority="HIGH", cut_off=NOW + ms(3_600_000))
    wf.enable_waveless(NOW + ms(1), batch_size=5, interval_ms=500)
    wf.release_in_batch(NOW + ms(1000), "batch-1", 0)
    return wf


def restore_state_compensation() -> Workflow:
    step = StepSpec("adjust", "Adjust stock", "inventory-service", "adjust", 1,
                    compensation=CompensationAction.restore_state(
                        "adjust", "inventory-service", {"sku": "SKU-1", "onHand": 42}))
    wf = executing_workflow([step])
    wf.start_step("adjust", NOW)
    wf.record_step_result("adjust", StepResult.success("adjust", {"onHand": 40}, 5), NOW)
    return wf


POINTS: dict[str, Callable[[], Workflow]] = {
    "pending": pending_workflow,
    "mid-step": mid_step,
    "waiting-to-retry": waiting_to_retry,
    "compensating": compensating,
    "compensation-failed": compensation_failed,
    "completed": completed,
    "cancelled-and-retried": cancelled_and_retried,
    "waveless-with-cut-off": waveless_with_cut_off,
    "restore-state-compensation": restore_state_compensation,
}


@pytest.mark.parametrize("build", POINTS.values(), ids=POINTS.keys())
def test_restored_snapshot_has_equal_state(build: Callable[[], Workflow]) -> None:
    wf = build()

    restored = Workflow.Snapshot.take(wf).mutate(None)

    assert restored.snapshot_state() == wf.snapshot_state()
    assert (restored.id, restored.version) == (wf.id, wf.version)
    assert restored.pending_events == []


@pytest.mark.parametrize("build", POINTS.values(), ids=POINTS.keys())
def test_snapshot_state_survives_a_json_round_trip(build: Callable[[], Workflow]) -> None:
    wf = build()
    snapshot = Workflow.Snapshot.take(wf)

    state = json.loads(json.dumps(snapshot.state))
    restored = Workflow.from_snapshot_state(wf.id, wf.version, state)

    assert restored.snapshot_state() == wf.snapshot_state()


def test_a_restored_workflow_carries_on_like_the_original() -> None:
    wf = mid_step()
    restored = Workflow.Snapshot.take(wf).mutate(None)
    result = StepResult.success(ASSIGN, {"robotId": "R-7"}, 800)

    for each in (wf, restored):
        each.record_step_result(ASSIGN, result, NOW + ms(2800))
        each.start_step(PICK, NOW + ms(3000))

    assert restored.snapshot_state() == wf.snapshot_state()
    assert restored.version == wf.version
    assert restored.step(PICK).input_data == {"orderId": "ORD-12345"}
