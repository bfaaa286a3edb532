"""Compensation attempts: stale outcomes are refused; retries follow the action's budget."""

from __future__ import annotations

import pytest

from domain.exceptions import InvalidStepTransition
from domain.workflow_error import WorkflowError
from tests.unit.sagas import ASSIGN, NOW, RESERVE, completed_through, ms, unrecoverable


def compensating():
    wf = completed_through(RESERVE)
    wf.start_step(ASSIGN, NOW + ms(5000))
    wf.handle_step_failure(ASSIGN, unrecoverable(ASSIGN), NOW + ms(5100))
    return wf


def down() -> WorkflowError:
    return WorkflowError.create(RESERVE, "inventory-service", "DOWN", "inventory down",
                                "SERVICE_UNAVAILABLE", True)


class TestCompensationAttempts:
    def test_an_outcome_for_an_attempt_that_timed_out_is_refused(self):
        wf = compensating()
        wf.start_step_compensation(RESERVE, NOW + ms(6000))
        wf.handle_compensation_failure(RESERVE, down(), NOW + ms(11000), attempt=1)
        version = wf.version
        with pytest.raises(InvalidStepTransition, match="stale attempt 1"):
            wf.mark_step_compensated(RESERVE, NOW + ms(12000), {"released": True}, attempt=1)
        assert wf.version == version

    def test_retries_use_the_actions_own_budget_with_default_backoff(self):
        wf = compensating()
        budget = wf.get_compensation_action(RESERVE).max_retries
        delays = []
        at = NOW + ms(6000)
        for _ in range(budget):
            wf.start_step_compensation(RESERVE, at)
            decision = wf.handle_compensation_failure(RESERVE, down(), at)
            delays.append(decision.delay_ms)
            at += ms(60_000)
        assert delays == [1000, 2000, 4000]
        wf.start_step_compensation(RESERVE, at)
        decision = wf.handle_compensation_failure(RESERVE, down(), at)
        assert decision.decision == "fail" and wf.status == "COMPENSATION_FAILED"
