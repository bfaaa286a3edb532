"""What the engine does next (`next_action`) and when it looks again (`wakeup_at`)."""

from __future__ import annotations

from domain import decisions
from domain.decisions import next_action, wakeup_at
from domain.enums import ErrorType
from domain.step import StepResult
from domain.workflow import Workflow
from domain.workflow_error import WorkflowError
from tests.unit.sagas import (
    ASSIGN,
    NOW,
    PACK,
    PICK,
    RESERVE,
    completed_through,
    executing_workflow,
    ms,
    order_fulfillment_steps,
    pending_workflow,
    recoverable,
    replay,
    run_step,
    unrecoverable,
)


def compensating() -> Workflow:
    """Reserve and assign done, then the saga failed: both wait to be undone."""
    wf = completed_through(RESERVE, ASSIGN)
    wf.fail(unrecoverable(PICK), NOW + ms(5000))
    return wf


class TestBeforeAndOutsideTheEngine:
    def test_a_pending_workflow_is_started(self) -> None:
        wf = pending_workflow()

        assert next_action(wf, NOW) == decisions.Start()
        assert wakeup_at(wf, NOW) == NOW

    def test_a_pending_waveless_workflow_waits_for_its_batch(self) -> None:
        wf = pending_workflow()
        wf.enable_waveless(NOW)

        assert next_action(wf, NOW) == decisions.Idle()
        assert wakeup_at(wf, NOW) is None

    def test_a_caller_driven_workflow_is_left_to_its_caller(self) -> None:
        wf = executing_workflow(driven_by="caller")

        assert next_action(wf, NOW) == decisions.Idle()
        assert wakeup_at(wf, NOW) is None


class TestExecuting:
    def test_runs_the_first_step(self) -> None:
        wf = executing_workflow()

        assert next_action(wf, NOW) == decisions.RunStep(RESERVE, 1)
        assert wakeup_at(wf, NOW) == NOW

    def test_runs_the_next_step_after_one_completed(self) -> None:
        wf = completed_through(RESERVE)

        assert next_action(wf, NOW + ms(2000)) == decisions.RunStep(ASSIGN, 1)

    def test_waits_for_the_retry_timer_then_runs_the_next_attempt(self) -> None:
        wf = executing_workflow()
        wf.start_step(RESERVE, NOW)
        wf.handle_step_failure(RESERVE, recoverable(RESERVE), NOW + ms(100))
        due = NOW + ms(1100)

        assert next_action(wf, NOW + ms(100)) == decisions.Wait(RESERVE, 2, due)
        assert wakeup_at(wf, NOW + ms(100)) == due
        assert isinstance(next_action(wf, due - ms(1)), decisions.Wait)
        assert next_action(wf, due) == decisions.RunStep(RESERVE, 2)

    def test_resumes_a_step_in_flight_before_its_deadline(self) -> None:
        wf = executing_workflow()
        wf.start_step(RESERVE, NOW)
        deadline = NOW + ms(5000)

        assert next_action(wf, NOW + ms(4999)) == decisions.ResumeStep(RESERVE, 1,
                                                         deadline)
        assert wakeup_at(wf, NOW + ms(4999)) == NOW + ms(4999)

    def test_times_out_a_step_at_its_deadline(self) -> None:
        wf = executing_workflow()
        wf.start_step(RESERVE, NOW)

        assert next_action(wf, NOW + ms(5000)) == decisions.TimeoutStep(RESERVE, 1)

    def test_a_step_timeout_recorded_as_a_failure_is_retried(self) -> None:
        wf = executing_workflow()
        wf.start_step(RESERVE, NOW)
        timeout = WorkflowError.create(RESERVE, "inventory-service", "TIMEOUT",
                                       "no answer within 5000 ms", ErrorType.TIMEOUT)

        wf.handle_step_failure(RESERVE, timeout, NOW + ms(5000), attempt=1)

        assert next_action(wf, NOW + ms(6000)) == decisions.RunStep(RESERVE, 2)

    def test_completes_when_every_step_is_done(self) -> None:
        wf = completed_through(RESERVE, ASSIGN, PICK, PACK)

        assert next_action(wf, NOW + ms(10_000)) == decisions.Complete()

    def test_a_completed_workflow_has_nothing_to_do(self) -> None:
        wf = completed_through(RESERVE, ASSIGN, PICK, PACK)
        wf.complete(NOW + ms(10_000))

        assert next_action(wf, NOW + ms(10_000)) == decisions.Idle()
        assert wakeup_at(wf, NOW + ms(10_000)) is None


class TestPausedAndCancelled:
    def test_a_paused_workflow_starts_nothing(self) -> None:
        wf = completed_through(RESERVE)
        wf.pause(NOW + ms(2000))

        assert next_action(wf, NOW + ms(3000)) == decisions.Idle()

    def test_a_step_in_flight_when_paused_is_still_followed_to_its_end(self) -> None:
        wf = executing_workflow()
        wf.start_step(RESERVE, NOW)
        wf.pause(NOW + ms(10))

        assert isinstance(next_action(wf, NOW + ms(20)), decisions.ResumeStep)
        assert isinstance(next_action(wf, NOW + ms(5000)), decisions.TimeoutStep)

    def test_fails_the_saga_after_resuming_a_paused_workflow_whose_step_failed(self) -> None:
        wf = executing_workflow()
        wf.start_step(RESERVE, NOW)
        wf.pause(NOW + ms(10))
        wf.handle_step_failure(RESERVE, unrecoverable(RESERVE), NOW + ms(100))
        assert next_action(wf, NOW + ms(200)) == decisions.Idle()

        before = Workflow.from_snapshot_state(wf.id, wf.version, wf.snapshot_state())
        wf.collect_events()
        wf.resume(NOW + ms(300))
        assert wf.status == "COMPENSATED"  # resume fails the saga itself now

        # A history recorded before resume did that (Resumed with the step still FAILED)
        # is finished by the engine's FAIL decision.
        resumed = next(e for e in wf.collect_events() if type(e).__name__ == "Resumed")
        old = resumed.mutate(before)
        assert next_action(old, NOW + ms(300)) == decisions.Fail(RESERVE)

    def test_a_cancelled_workflow_has_nothing_to_do(self) -> None:
        wf = completed_through(RESERVE)
        wf.cancel(NOW + ms(2000))

        assert next_action(wf, NOW + ms(3000)) == decisions.Idle()

    def test_a_cancel_with_compensation_starts_it_once_the_running_step_ends(self) -> None:
        wf = completed_through(RESERVE)
        wf.start_step(ASSIGN, NOW + ms(2000))
        wf.cancel(NOW + ms(2100), compensate=True)
        assert isinstance(next_action(wf, NOW + ms(2200)), decisions.ResumeStep)

        wf.record_step_result(ASSIGN, StepResult.success(ASSIGN, {}, 300), NOW + ms(2300))

        assert next_action(wf, NOW + ms(2400)) == decisions.StartCompensation()


class TestCompensation:
    def test_a_failed_workflow_starts_compensation(self) -> None:
        wf = Workflow.create(steps=order_fulfillment_steps(), now=NOW, input={"orderId": "O-1"})
        wf.start(NOW)
        run_step(wf, RESERVE)
        wf.fail(unrecoverable(ASSIGN), NOW + ms(5000))
        history = list(wf.collect_events())
        failed_at = next(i for i, e in enumerate(history) if isinstance(e, Workflow.Failed))
        # FAILED is only ever seen as of a version (compensation starts in the same command).
        as_failed = replay(history[: failed_at + 1])

        assert next_action(as_failed, NOW + ms(6000)) == decisions.StartCompensation()

    def test_compensates_the_last_completed_step_first(self) -> None:
        wf = compensating()

        assert next_action(wf, NOW + ms(6000)) == decisions.CompensateStep(ASSIGN, 1)

    def test_resumes_then_times_out_a_compensation_in_flight(self) -> None:
        wf = compensating()
        wf.start_step_compensation(ASSIGN, NOW + ms(6000))
        deadline = NOW + ms(11_000)

        assert next_action(wf, NOW + ms(7000)) == decisions.ResumeCompensation(ASSIGN,
                                                         1, deadline)
        assert next_action(wf, deadline) == decisions.TimeoutCompensation(ASSIGN, 1)

    def test_waits_for_a_compensation_retry_timer(self) -> None:
        wf = compensating()
        wf.start_step_compensation(ASSIGN, NOW + ms(6000))
        wf.handle_compensation_failure(ASSIGN, recoverable(ASSIGN), NOW + ms(6500))
        due = NOW + ms(7500)

        assert next_action(wf, NOW + ms(7000)) == decisions.Wait(ASSIGN, 2, due)
        assert wakeup_at(wf, NOW + ms(7000)) == due
        assert next_action(wf, due) == decisions.CompensateStep(ASSIGN, 2)

    def test_moves_on_to_the_next_step_to_undo(self) -> None:
        wf = compensating()
        wf.mark_step_compensated(ASSIGN, NOW + ms(6000))

        assert next_action(wf, NOW + ms(6500)) == decisions.CompensateStep(RESERVE, 1)

    def test_completes_compensation_once_every_step_is_undone(self) -> None:
        wf = compensating()
        wf.mark_step_compensated(ASSIGN, NOW + ms(6000))
        wf.mark_step_compensated(RESERVE, NOW + ms(6500))

        assert next_action(wf, NOW + ms(7000)) == decisions.CompleteCompensation()

    def test_a_failed_compensation_waits_for_an_operator(self) -> None:
        wf = compensating()
        wf.start_step_compensation(ASSIGN, NOW + ms(6000))
        wf.handle_compensation_failure(ASSIGN, unrecoverable(ASSIGN), NOW + ms(6500))

        assert next_action(wf, NOW + ms(7000)) == decisions.Idle()
        assert wakeup_at(wf, NOW + ms(7000)) is None

