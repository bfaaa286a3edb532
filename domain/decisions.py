"""What the engine should do next for a workflow: a pure function of its state and the time.

The engine's workers call `next_action`; the work queue's due time is `wakeup_at`. Keeping
this here, beside the aggregate, means every scheduling rule is tested without a database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain.enums import DrivenBy, StepStatus, WorkflowStatus
from domain.step import StepExecution
from domain.workflow import Workflow


@dataclass(frozen=True, slots=True)
class Action:
    """One thing to do. `kind` is one of the constants below; `at` is when (for WAIT)."""

    kind: str
    step_id: str | None = None
    attempt: int | None = None
    at: datetime | None = None


START = "start"  # PENDING -> EXECUTING
RUN_STEP = "run_step"  # start a new attempt of a step, then call its handler
RESUME_STEP = "resume_step"  # an attempt is recorded as started but its worker is gone
TIMEOUT_STEP = "timeout_step"  # the running attempt passed its deadline
FAIL = "fail"  # a step failed for good: fail the saga (after a resume, say)
COMPLETE = "complete"
START_COMPENSATION = "start_compensation"
COMPENSATE_STEP = "compensate_step"
RESUME_COMPENSATION = "resume_compensation"
TIMEOUT_COMPENSATION = "timeout_compensation"
COMPLETE_COMPENSATION = "complete_compensation"
WAIT = "wait"  # nothing to do before `at`
IDLE = "idle"  # nothing to do until a command arrives

_DONE = (StepStatus.COMPLETED, StepStatus.SKIPPED)


def next_action(wf: Workflow, now: datetime) -> Action:
    """The next thing the engine must do for `wf` at `now`."""
    if wf.driven_by == DrivenBy.CALLER:
        return Action(IDLE)
    status = wf.status
    if status == WorkflowStatus.PENDING:
        # A waveless workflow waits for the release loop to admit it in a batch.
        return Action(IDLE) if wf.waveless is not None else Action(START)
    if status in (WorkflowStatus.EXECUTING, WorkflowStatus.PAUSED, WorkflowStatus.CANCELLED):
        running = _running(wf)
        if running is not None:
            if running.deadline is None or now >= running.deadline:
                return Action(TIMEOUT_STEP, running.step_id, running.attempts)
            return Action(RESUME_STEP, running.step_id, running.attempts, running.deadline)
        if status == WorkflowStatus.CANCELLED:
            if wf.cancel_compensate and not wf.compensation_queue:
                return Action(START_COMPENSATION)
            return Action(IDLE)
        if status == WorkflowStatus.PAUSED:
            return Action(IDLE)
        for step in wf.steps.values():
            if step.status in _DONE:
                continue
            if step.status == StepStatus.FAILED:
                return Action(FAIL, step.step_id)
            if step.next_attempt_at is not None and now < step.next_attempt_at:
                return Action(WAIT, step.step_id, step.attempts + 1, step.next_attempt_at)
            return Action(RUN_STEP, step.step_id, step.attempts + 1)
        return Action(COMPLETE)
    if status == WorkflowStatus.FAILED:
        return Action(START_COMPENSATION)
    if status == WorkflowStatus.COMPENSATING:
        for step_id in wf.compensation_queue:
            step = wf.steps[step_id]
            if step.status == StepStatus.COMPENSATED:
                continue
            if step.status == StepStatus.COMPENSATING:
                deadline = step.compensation_deadline
                if deadline is None or now >= deadline:
                    return Action(TIMEOUT_COMPENSATION, step_id, step.compensation_attempts)
                return Action(RESUME_COMPENSATION, step_id, step.compensation_attempts,
                              step.compensation_deadline)
            nxt = step.compensation_next_attempt_at
            if nxt is not None and now < nxt:
                return Action(WAIT, step_id, step.compensation_attempts + 1, nxt)
            return Action(COMPENSATE_STEP, step_id, step.compensation_attempts + 1)
        return Action(COMPLETE_COMPENSATION)
    return Action(IDLE)


def wakeup_at(wf: Workflow, now: datetime) -> datetime | None:
    """When a worker should next look at `wf`: now, a timer's due time, or never (None).

    A step in flight is due at once: the worker running it holds a lease on the work item
    (renewed while the handler runs), so nobody else takes it; if that worker dies, whoever
    claims the item after the lease expires re-invokes the same attempt with the same
    idempotency key, or records a TIMEOUT once the step's deadline has passed.
    """
    action = next_action(wf, now)
    if action.kind == IDLE:
        return None
    if action.kind == WAIT:
        return action.at
    return now


def _running(wf: Workflow) -> StepExecution | None:
    for step in wf.steps.values():
        if step.status == StepStatus.EXECUTING:
            return step
    return None
