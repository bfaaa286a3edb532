"""A step that fails for good while its workflow is paused fails the saga on resume."""

from __future__ import annotations

from domain import decisions as d
from domain.retry_policy import RetryPolicy
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
        assert d.next_action(wf, NOW + ms(10)).kind == d.IDLE
        wf.resume(NOW + ms(20))
        action = d.next_action(wf, NOW + ms(30))
        assert (action.kind, action.step_id) == (d.FAIL, "reserve-inventory")
        wf.fail_failed_step("reserve-inventory", NOW + ms(30))
        assert wf.status == "COMPENSATED"  # nothing was completed, so nothing to undo
        assert wf.errors[-1].code == "RETRIES_EXHAUSTED"
        assert wf.errors[-1].recoverable is False
