"""A step the service applied whose answer was too big to record (OUTPUT_TOO_LARGE): it is
undone by the saga, a later run's call is replayed under its key, and a compensation whose
answer is too big counts as done."""

from __future__ import annotations

from domain.enums import ErrorType, StepStatus, WorkflowStatus
from domain.step import StepResult
from domain.workflow import Workflow
from domain.workflow_error import OUTPUT_TOO_LARGE, WorkflowError
from tests.unit.sagas import (
    ASSIGN,
    NOW,
    PICK,
    RESERVE,
    completed_through,
    ms,
    order_fulfillment_steps,
    replay,
    run_step,
)


def too_large(step_id: str) -> WorkflowError:
    return WorkflowError.create(step_id, "warehouse-service", OUTPUT_TOO_LARGE,
                                "the output is 9000 bytes, over the limit of 2048 bytes",
                                ErrorType.VALIDATION_ERROR, False)


def applied_without_answer(wf: Workflow, step_id: str) -> None:
    wf.start_step(step_id, NOW + ms(10_000))
    wf.handle_step_failure(step_id, too_large(step_id), NOW + ms(10_100), attempt=1)


def compensate_all(wf: Workflow) -> list[str]:
    undone = []
    for step_id in list(wf.pending_compensation()):
        wf.start_step_compensation(step_id, NOW + ms(11_000))
        wf.mark_step_compensated(step_id, NOW + ms(11_100))
        undone.append(step_id)
    wf.complete_compensation(NOW + ms(11_200))
    return undone


class TestAppliedWithoutAnswer:
    def test_the_saga_undoes_it_first_then_the_completed_steps(self) -> None:
        wf = completed_through(RESERVE, ASSIGN)
        applied_without_answer(wf, PICK)
        assert wf.status == WorkflowStatus.COMPENSATING
        assert wf.step(PICK).status == StepStatus.FAILED
        assert wf.pending_compensation() == [PICK, ASSIGN, RESERVE]
        assert compensate_all(wf) == [PICK, ASSIGN, RESERVE]
        assert wf.status == WorkflowStatus.COMPENSATED

    def test_replaying_its_history_gives_the_same_state(self) -> None:
        wf = Workflow.create(steps=order_fulfillment_steps(), now=NOW,
                             input={"orderId": "ORD-1"}, definition_id="order-fulfillment")
        wf.start(NOW)
        run_step(wf, RESERVE, NOW + ms(1_000))
        applied_without_answer(wf, ASSIGN)
        events = list(wf.collect_events())
        halfway = replay(events)
        assert halfway.snapshot_state() == wf.snapshot_state()
        assert Workflow.from_snapshot_state(wf.id, wf.version, wf.snapshot_state()).step(
            ASSIGN).applied_in_run == 0
        compensate_all(wf)
        events += wf.collect_events()
        assert replay(events).snapshot_state() == wf.snapshot_state()
        assert wf.step(ASSIGN).applied_in_run is None  # undone

    def test_once_undone_a_workflow_retry_calls_it_afresh(self) -> None:
        wf = completed_through(RESERVE, ASSIGN)
        applied_without_answer(wf, PICK)
        compensate_all(wf)
        wf.retry(NOW + ms(12_000))
        assert wf.idempotency_key(PICK) == f"{wf.id}:{PICK}:1"

    def test_not_undone_a_workflow_retry_calls_it_under_the_key_it_was_applied_with(
            self) -> None:
        wf = completed_through(RESERVE, ASSIGN)
        wf.start_step(PICK, NOW + ms(10_000))
        wf.cancel(NOW + ms(10_050), reason="stop")  # no compensation asked for
        wf.handle_step_failure(PICK, too_large(PICK), NOW + ms(10_100), attempt=1)
        assert wf.status == WorkflowStatus.CANCELLED
        wf.retry(NOW + ms(12_000))
        # The service replays its stored answer instead of picking a second time.
        assert wf.idempotency_key(PICK) == f"{wf.id}:{PICK}"
        assert wf.idempotency_key(PICK, compensation=True) == f"{wf.id}:{PICK}:compensate"
        assert wf.idempotency_key(RESERVE) == f"{wf.id}:{RESERVE}:1"
        # Reached again and recorded this time (a higher limit): an ordinary completed step.
        wf.start_step(PICK, NOW + ms(13_000))
        wf.record_step_result(PICK, StepResult.success(PICK, {"picked": True}, 5),
                              NOW + ms(13_100))
        assert wf.step(PICK).applied_in_run is None
        assert wf.idempotency_key(PICK) == f"{wf.id}:{PICK}:1"

    def test_a_cancel_with_compensation_undoes_it(self) -> None:
        wf = completed_through(RESERVE)
        wf.start_step(ASSIGN, NOW + ms(10_000))
        wf.cancel(NOW + ms(10_050), reason="stop", compensate=True)
        wf.handle_step_failure(ASSIGN, too_large(ASSIGN), NOW + ms(10_100), attempt=1)
        wf.compensate(NOW + ms(10_200), reason="cancelled")
        assert wf.pending_compensation() == [ASSIGN, RESERVE]

    def test_its_compensation_failing_leaves_it_to_undo_not_completed(self) -> None:
        wf = completed_through(RESERVE, ASSIGN)
        applied_without_answer(wf, PICK)
        wf.start_step_compensation(PICK, NOW + ms(11_000))
        error = WorkflowError.create(PICK, "warehouse-service", "DOWN", "down",
                                     ErrorType.NETWORK_ERROR, True)
        assert wf.handle_compensation_failure(PICK, error, NOW + ms(11_100)).decision == "retry"
        assert wf.step(PICK).status == StepStatus.FAILED
        assert wf.progress_percentage == 50.0
        wf.start_step_compensation(PICK, NOW + ms(13_000))  # the retry may start it again
        assert wf.step(PICK).status == StepStatus.COMPENSATING


class TestCompensationAnswerTooLarge:
    def test_a_compensation_answered_2xx_but_too_big_counts_as_done(self) -> None:
        wf = completed_through(RESERVE, ASSIGN)
        wf.start_step(PICK, NOW + ms(10_000))
        wf.fail(WorkflowError.create(PICK, "warehouse-service", "DAMAGED", "item damaged",
                                     ErrorType.INTERNAL_ERROR, False), NOW + ms(10_100))
        wf.start_step_compensation(ASSIGN, NOW + ms(11_000))
        decision = wf.handle_compensation_failure(ASSIGN, too_large(ASSIGN), NOW + ms(11_100),
                                                  attempt=1)
        assert decision.decision == "compensated"
        assert wf.step(ASSIGN).status == StepStatus.COMPENSATED
        assert "over the limit" in wf.step(ASSIGN).compensation_output["output_not_recorded"]
        assert wf.pending_compensation() == [RESERVE]
