"""Saga decisions: retry with backoff, fail and compensate, and the original's bugs not repeated."""

from __future__ import annotations

from datetime import datetime

import pytest

from domain.enums import ErrorType, StepStatus, WorkflowStatus
from domain.exceptions import InvalidTransition
from domain.retry_policy import RetryPolicy
from domain.step import StepResult
from domain.workflow import FailureDecision, Workflow
from domain.workflow_error import WorkflowError
from tests.unit.sagas import (
    ASSIGN,
    NOW,
    PACK,
    PICK,
    RESERVE,
    completed_through,
    emitted,
    executing_workflow,
    ms,
    order_fulfillment_steps,
    recoverable,
    run_step,
    saved,
    unchanged,
    unrecoverable,
)


def fail_attempt(wf: Workflow, step_id: str, error: WorkflowError, started: datetime,
                 failed: datetime) -> FailureDecision:
    """Starts an attempt of the step and records its failure."""
    wf.start_step(step_id, started)
    return wf.handle_step_failure(step_id, error, failed)


class TestStepRetry:
    def test_recoverable_failure_with_retries_left_schedules_a_retry_after_the_policy_delay(
        self,
    ) -> None:
        wf = completed_through(RESERVE)
        wf.start_step(ASSIGN, NOW + ms(5000))
        saved(wf)
        failed_at = NOW + ms(5300)

        decision = wf.handle_step_failure(ASSIGN, recoverable(ASSIGN), failed_at)

        events = wf.collect_events()
        assert [type(e).__name__ for e in events] == ["StepFailed", "StepRetryScheduled"]
        scheduled = events[1]
        assert (scheduled.retry_number, scheduled.delay_ms) == (1, 1000)
        assert scheduled.due_at == failed_at + ms(1000)
        assert (decision.decision, decision.delay_ms) == ("retry", 1000)
        step = wf.step(ASSIGN)
        assert step.status == StepStatus.PENDING
        assert step.next_attempt_at == failed_at + ms(1000)
        assert wf.status == WorkflowStatus.EXECUTING

    def test_the_retry_counter_increments_with_each_failed_attempt(self) -> None:
        wf = executing_workflow()
        now = NOW
        seen = []
        for _ in range(3):
            fail_attempt(wf, RESERVE, recoverable(RESERVE), now, now + ms(100))
            scheduled = wf.collect_events()[-1]
            seen.append((wf.step(RESERVE).retries, scheduled.retry_number, scheduled.delay_ms))
            now = scheduled.due_at

        assert seen == [(0, 1, 1000), (1, 2, 2000), (2, 3, 4000)]

    def test_after_max_retries_a_recoverable_failure_fails_the_saga_and_compensates(
        self,
    ) -> None:
        wf = completed_through(RESERVE)
        now = NOW + ms(10_000)
        for _ in range(3):
            fail_attempt(wf, ASSIGN, recoverable(ASSIGN), now, now)
            now += ms(10_000)
        saved(wf)

        decision = fail_attempt(wf, ASSIGN, recoverable(ASSIGN), now, now + ms(50))

        assert emitted(wf) == ["StepStarted", "StepFailed", "Failed", "CompensationStarted"]
        assert decision.decision == "fail"
        assert wf.status == WorkflowStatus.COMPENSATING
        assert wf.compensation_queue == [RESERVE]
        assert wf.errors[-1].code == "RETRIES_EXHAUSTED"
        assert not wf.errors[-1].recoverable
        assert "after 3 retries" in wf.errors[-1].message

    def test_aggressive_policy_allows_five_retries(self) -> None:
        wf = executing_workflow(order_fulfillment_steps(RetryPolicy.aggressive()))
        now = NOW
        decisions = []
        for _ in range(6):
            decision = fail_attempt(wf, RESERVE, recoverable(RESERVE), now, now)
            decisions.append(decision.decision)
            now += ms(10_000)

        assert decisions == ["retry"] * 5 + ["fail"]

    def test_a_step_without_retries_fails_the_saga_on_its_first_recoverable_failure(
        self,
    ) -> None:
        steps = [{"step_id": RESERVE, "service": "inventory-service", "operation": "reserve",
                  "retry_policy": {"max_retries": 0}}]
        wf = executing_workflow(steps)

        decision = fail_attempt(wf, RESERVE, recoverable(RESERVE), NOW, NOW)

        assert decision.decision == "fail"
        assert wf.status == WorkflowStatus.COMPENSATED

    def test_a_recoverable_failure_while_paused_still_schedules_its_retry(self) -> None:
        wf = executing_workflow()
        wf.start_step(RESERVE, NOW)
        wf.pause(NOW + ms(10))
        saved(wf)

        decision = wf.handle_step_failure(RESERVE, recoverable(RESERVE), NOW + ms(100))

        assert emitted(wf) == ["StepFailed", "StepRetryScheduled"]
        assert decision.decision == "retry"
        assert wf.status == WorkflowStatus.PAUSED

    def test_an_unrecoverable_failure_while_paused_fails_the_saga_only_after_resume(
        self,
    ) -> None:
        wf = executing_workflow()
        wf.start_step(RESERVE, NOW)
        wf.pause(NOW + ms(10))
        saved(wf)

        decision = wf.handle_step_failure(RESERVE, unrecoverable(RESERVE), NOW + ms(100))

        assert emitted(wf) == ["StepFailed"]
        assert (decision.decision, decision.status) == ("fail", WorkflowStatus.PAUSED)
        assert wf.step(RESERVE).status == StepStatus.FAILED


class TestSagaFailure:
    def test_unrecoverable_failure_records_failed_exactly_once_and_starts_compensation(
        self,
    ) -> None:
        wf = completed_through(RESERVE, ASSIGN)
        wf.start_step(PICK, NOW + ms(5000))
        saved(wf)

        decision = wf.handle_step_failure(PICK, unrecoverable(PICK), NOW + ms(5200))

        events = emitted(wf)
        assert events == ["StepFailed", "Failed", "CompensationStarted"]
        assert events.count("Failed") == 1
        assert len(wf.errors) == 1
        assert wf.errors[0].code == "ROBOT_UNAVAILABLE"
        assert (decision.decision, decision.status) == ("fail", WorkflowStatus.COMPENSATING)

    def test_compensates_completed_steps_in_reverse_order(self) -> None:
        wf = completed_through(RESERVE, ASSIGN, PICK)

        wf.fail(unrecoverable(PACK), NOW + ms(5000))

        assert wf.compensation_queue == [PICK, ASSIGN, RESERVE]
        assert [s.step_id for s in wf.steps_requiring_compensation()] == [PICK, ASSIGN, RESERVE]

    def test_compensation_queue_follows_completion_order_after_a_retried_workflow(
        self,
    ) -> None:
        wf = completed_through(RESERVE)
        wf.cancel(NOW + ms(2000))
        wf.retry(NOW + ms(3000))
        run_step(wf, ASSIGN, NOW + ms(4000))

        wf.fail(unrecoverable(PICK), NOW + ms(6000))

        assert wf.compensation_queue == [ASSIGN, RESERVE]

    def test_failing_with_nothing_to_undo_completes_compensation_at_once(self) -> None:
        wf = executing_workflow()
        wf.start_step(RESERVE, NOW)
        saved(wf)

        decision = wf.handle_step_failure(RESERVE, unrecoverable(RESERVE), NOW + ms(100))

        assert emitted(wf) == ["StepFailed", "Failed", "CompensationStarted",
                               "CompensationCompleted"]
        assert (decision.decision, decision.status) == ("fail", WorkflowStatus.COMPENSATED)
        assert wf.status == WorkflowStatus.COMPENSATED
        assert wf.finished_at == NOW + ms(100)

    def test_a_failure_before_the_step_could_start_is_recorded_against_the_next_step(
        self,
    ) -> None:
        wf = completed_through(RESERVE)

        decision = wf.handle_step_failure(ASSIGN, unrecoverable(ASSIGN), NOW + ms(5000))

        assert emitted(wf) == ["StepFailed", "Failed", "CompensationStarted"]
        assert decision.decision == "fail"
        assert wf.step(ASSIGN).status == StepStatus.FAILED

    def test_the_failing_error_is_stamped_with_its_step_and_time(self) -> None:
        wf = executing_workflow()
        wf.start_step(RESERVE, NOW)
        error = WorkflowError.create(None, "inventory-service", "BOOM", "boom", "INTERNAL_ERROR")

        wf.handle_step_failure(RESERVE, error, NOW + ms(100))

        assert (wf.errors[0].step_id, wf.errors[0].occurred_at) == (RESERVE, NOW + ms(100))


class TestCompensationFailure:
    def _compensating(self) -> Workflow:
        wf = completed_through(RESERVE)
        wf.fail(unrecoverable(ASSIGN), NOW + ms(2000))
        return saved(wf)

    def test_a_recoverable_compensation_failure_is_retried_with_backoff(self) -> None:
        wf = self._compensating()
        wf.start_step_compensation(RESERVE, NOW + ms(3000))

        decision = wf.handle_compensation_failure(RESERVE, recoverable(RESERVE), NOW + ms(3100))

        assert emitted(wf) == ["StepCompensationStarted", "StepCompensationFailed"]
        assert (decision.decision, decision.delay_ms) == ("retry", 1000)
        step = wf.step(RESERVE)
        assert step.status == StepStatus.COMPLETED
        assert step.compensation_next_attempt_at == NOW + ms(4100)
        assert wf.status == WorkflowStatus.COMPENSATING

    def test_a_compensation_that_exhausts_its_retries_ends_in_compensation_failed(
        self,
    ) -> None:
        wf = self._compensating()
        now = NOW + ms(3000)
        decisions = []
        for _ in range(4):
            wf.start_step_compensation(RESERVE, now)
            decision = wf.handle_compensation_failure(RESERVE, recoverable(RESERVE), now)
            decisions.append((decision.decision, decision.delay_ms))
            now += ms(10_000)

        assert decisions == [("retry", 1000), ("retry", 2000), ("retry", 4000), ("fail", None)]
        assert emitted(wf)[-2:] == ["StepCompensationFailed", "CompensationFailed"]
        assert wf.status == WorkflowStatus.COMPENSATION_FAILED
        assert wf.step(RESERVE).status == StepStatus.COMPLETED
        assert not wf.is_terminal

    def test_an_unrecoverable_compensation_failure_fails_the_compensation_at_once(
        self,
    ) -> None:
        wf = self._compensating()
        wf.start_step_compensation(RESERVE, NOW + ms(3000))

        decision = wf.handle_compensation_failure(RESERVE, unrecoverable(RESERVE),
                                                  NOW + ms(3100))

        assert decision.decision == "fail"
        assert wf.status == WorkflowStatus.COMPENSATION_FAILED
        final = wf.collect_events()[-1]
        assert final.error["error_type"] == ErrorType.COMPENSATION_FAILED.value

    def test_retry_compensation_goes_back_to_compensating_with_fresh_retries(self) -> None:
        wf = self._compensating()
        wf.start_step_compensation(RESERVE, NOW + ms(3000))
        wf.handle_compensation_failure(RESERVE, unrecoverable(RESERVE), NOW + ms(3100))
        saved(wf)

        wf.retry_compensation(NOW + ms(60_000))

        assert emitted(wf) == ["CompensationRetried"]
        assert wf.status == WorkflowStatus.COMPENSATING
        assert wf.step(RESERVE).compensation_attempts == 0
        assert wf.pending_compensation() == [RESERVE]

    def test_a_retried_compensation_can_finish(self) -> None:
        wf = self._compensating()
        wf.start_step_compensation(RESERVE, NOW + ms(3000))
        wf.handle_compensation_failure(RESERVE, unrecoverable(RESERVE), NOW + ms(3100))
        wf.retry_compensation(NOW + ms(60_000))

        wf.start_step_compensation(RESERVE, NOW + ms(61_000))
        wf.mark_step_compensated(RESERVE, NOW + ms(61_500), attempt=1)
        wf.complete_compensation(NOW + ms(62_000))

        assert wf.status == WorkflowStatus.COMPENSATED

    def test_compensation_cannot_complete_while_steps_remain(self) -> None:
        wf = self._compensating()

        with unchanged(wf), pytest.raises(InvalidTransition, match=r"not yet compensated: \['reserve"):
            wf.complete_compensation(NOW + ms(3000))


class TestWorkflowRetry:
    def test_retry_is_refused_while_executing(self) -> None:
        wf = executing_workflow()

        with unchanged(wf), pytest.raises(InvalidTransition, match="cannot retry while EXECUTING"):
            wf.retry(NOW)

    def test_retry_is_bounded_by_max_retries(self) -> None:
        wf = executing_workflow(max_retries=1)
        wf.cancel(NOW)
        wf.retry(NOW + ms(1))
        wf.cancel(NOW + ms(2))
        saved(wf)

        with unchanged(wf), pytest.raises(InvalidTransition, match="reached max retries 1"):
            wf.retry(NOW + ms(3))

    def test_retry_after_compensation_runs_every_step_again(self) -> None:
        wf = completed_through(RESERVE, ASSIGN)
        wf.fail(unrecoverable(PICK), NOW + ms(5000))
        for step in wf.steps_requiring_compensation():
            wf.mark_step_compensated(step.step_id, NOW + ms(6000))
        wf.complete_compensation(NOW + ms(7000))
        saved(wf)

        wf.retry(NOW + ms(8000))

        assert emitted(wf) == ["Retried"]
        assert wf.status == WorkflowStatus.EXECUTING
        assert wf.retry_count == 1
        assert {s.status for s in wf.steps.values()} == {StepStatus.PENDING}
        assert (wf.executed_steps, wf.compensated_steps, wf.compensation_queue) == ([], [], [])
        assert wf.finished_at is None
        wf.start_step(RESERVE, NOW + ms(9000))
        assert wf.step(RESERVE).attempts == 1

    def test_retry_after_cancel_keeps_completed_steps(self) -> None:
        wf = completed_through(RESERVE)
        wf.cancel(NOW + ms(2000))

        wf.retry(NOW + ms(3000))

        assert wf.step(RESERVE).status == StepStatus.COMPLETED
        assert wf.current_step_id == ASSIGN

    def test_retry_gives_failed_steps_a_fresh_retry_budget(self) -> None:
        wf = executing_workflow()
        now = NOW
        for _ in range(4):
            fail_attempt(wf, RESERVE, recoverable(RESERVE), now, now)
            now += ms(10_000)
        assert wf.status == WorkflowStatus.COMPENSATED

        wf.retry(now)
        decision = fail_attempt(wf, RESERVE, recoverable(RESERVE), now, now)

        assert (decision.decision, decision.delay_ms) == ("retry", 1000)


class TestCancel:
    def test_cancel_while_a_step_runs_defers_compensation_until_its_outcome(self) -> None:
        wf = completed_through(RESERVE)
        wf.start_step(ASSIGN, NOW + ms(2000))
        saved(wf)

        wf.cancel(NOW + ms(2100), "Cancelled by user", compensate=True)
        assert emitted(wf) == ["Cancelled"]
        wf.record_step_result(ASSIGN, StepResult.success(ASSIGN, {}, 300), NOW + ms(2300))
        wf.compensate(NOW + ms(2400))

        assert wf.compensation_queue == [ASSIGN, RESERVE]

    def test_a_failure_after_cancel_is_only_recorded(self) -> None:
        wf = executing_workflow()
        wf.start_step(RESERVE, NOW)
        wf.cancel(NOW + ms(10))
        saved(wf)

        decision = wf.handle_step_failure(RESERVE, recoverable(RESERVE), NOW + ms(100))

        assert emitted(wf) == ["StepFailed"]
        assert (decision.decision, decision.status) == ("recorded", WorkflowStatus.CANCELLED)


class TestFailureBeforeTheStepStarted:
    def test_a_recoverable_failure_before_the_start_uses_up_a_retry(self) -> None:
        wf = executing_workflow()
        now = NOW
        scheduled = []
        decision = wf.handle_step_failure(RESERVE, recoverable(RESERVE), now)
        scheduled.append((wf.collect_events()[-1].retry_number, decision.delay_ms))
        for _ in range(2):
            now += ms(10_000)
            decision = fail_attempt(wf, RESERVE, recoverable(RESERVE), now, now)
            scheduled.append((wf.collect_events()[-1].retry_number, decision.delay_ms))

        decision = fail_attempt(wf, RESERVE, recoverable(RESERVE), now + ms(10_000),
                                now + ms(10_000))

        assert scheduled == [(1, 1000), (2, 2000), (3, 4000)]
        assert decision.decision == "fail"
        assert wf.step(RESERVE).attempts == 4
