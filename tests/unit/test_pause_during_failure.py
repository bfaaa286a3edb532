"""A step that fails for good while its workflow is paused fails the saga on resume."""

from __future__ import annotations

from domain import decisions as d
from domain.retry_policy import RetryPolicy
from domain.step import StepResult
from tests.unit.sagas import (
    NOW,
    ms,
    order_fulfillment_steps,
    recoverable,
    saved,
)
from tests.unit.sagas import executing_workflow as executing


class TestPausedWorkflowWhoseStepRunsOutOfRetries:
    def test_waits_while_paused_then_fails_with_retries_exhausted_after_resume(self):
        wf = executing(order_fulfillment_steps(RetryPolicy(0, 10, 10, 1.0)))
        wf.start_step("reserve-inventory", NOW)
        wf.pause(NOW, reason="inspection")
        decision = wf.handle_step_failure("reserve-inventory", recoverable("reserve-inventory"),
                                          NOW + ms(5))
        saved(wf)
        assert decision.decision == "fail" and wf.status == "PAUSED"
        assert d.next_action(wf, NOW + ms(10)) == d.Idle()
        wf.resume(NOW + ms(20))
        # The resume takes the decision that waited: the saga fails, and with nothing
        # completed there is nothing to undo.
        assert wf.status == "COMPENSATED"
        assert wf.errors[-1].code == "RETRIES_EXHAUSTED"
        assert wf.errors[-1].recoverable is False
        assert d.next_action(wf, NOW + ms(30)) == d.Idle()

    def test_a_caller_driven_workflow_is_not_left_stuck_after_resume(self):
        wf = executing(order_fulfillment_steps(RetryPolicy(0, 10, 10, 1.0)), driven_by="caller")
        wf.start_step("reserve-inventory", NOW)
        wf.record_step_result("reserve-inventory",
                              StepResult.success("reserve-inventory", {}, 5), NOW)
        wf.start_step("assign-robot", NOW)
        wf.pause(NOW)
        wf.handle_step_failure("assign-robot", recoverable("assign-robot"), NOW + ms(5))
        wf.resume(NOW + ms(10))
        assert wf.status == "COMPENSATING"
        assert [s.step_id for s in wf.steps_requiring_compensation()] == ["reserve-inventory"]
