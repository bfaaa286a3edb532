"""What the engine should do next for a workflow: a pure function of its state and the time.

The engine's workers call `next_action`; the work queue's due time is `wakeup_at`. Keeping
this here, beside the aggregate, means every scheduling rule is tested without a database.

An action is one of a small set of frozen classes, matched by type (`match action: case
RunStep(step_id=s)`): each carries exactly the fields its kind needs, so no caller has to
check for a missing step id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain.enums import DrivenBy, StepStatus, WorkflowStatus
from domain.step import StepExecution
from domain.workflow import Workflow


@dataclass(frozen=True, slots=True)
class Start:
    """PENDING -> EXECUTING."""


@dataclass(frozen=True, slots=True)
class RunStep:
    """Start a new attempt of a step, then call its handler."""

    step_id: str
    attempt: int


@dataclass(frozen=True, slots=True)
class ResumeStep:
    """An attempt is recorded as started but its worker is gone: call it again (same key)."""

    step_id: str
    attempt: int
    deadline: datetime


@dataclass(frozen=True, slots=True)
class TimeoutStep:
    """The running attempt passed its deadline (or has none)."""

    step_id: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Fail:
    """A step failed for good: fail the saga (after a resume, say)."""

    step_id: str


@dataclass(frozen=True, slots=True)
class Complete:
    """Every step is done: the workflow completes."""


@dataclass(frozen=True, slots=True)
class StartCompensation:
    """Begin undoing the completed steps (a failed saga, or a cancel that compensates)."""


@dataclass(frozen=True, slots=True)
class CompensateStep:
    """Start a new attempt of a step's compensation, then call it."""

    step_id: str
    attempt: int


@dataclass(frozen=True, slots=True)
class ResumeCompensation:
    """A compensation attempt is recorded as started but its worker is gone: call it again."""

    step_id: str
    attempt: int
    deadline: datetime


@dataclass(frozen=True, slots=True)
class TimeoutCompensation:
    """The running compensation attempt passed its deadline (or has none)."""

    step_id: str
    attempt: int


@dataclass(frozen=True, slots=True)
class CompleteCompensation:
    """Every compensation is done: the workflow is compensated."""


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to do before `at`, when attempt `attempt` of `step_id` (or its undo) is due."""

    step_id: str
    attempt: int
    at: datetime


@dataclass(frozen=True, slots=True)
class Idle:
    """Nothing to do until a command arrives."""


Action = (Start | RunStep | ResumeStep | TimeoutStep | Fail | Complete | StartCompensation
          | CompensateStep | ResumeCompensation | TimeoutCompensation | CompleteCompensation
          | Wait | Idle)
# The actions that call a step's (or a compensation's) operation.
CallAction = RunStep | ResumeStep | CompensateStep | ResumeCompensation

_DONE = (StepStatus.COMPLETED, StepStatus.SKIPPED)
_DRIVING = (WorkflowStatus.EXECUTING, WorkflowStatus.PAUSED, WorkflowStatus.CANCELLED)


def next_action(wf: Workflow, now: datetime) -> Action:
    """The next thing the engine must do for `wf` at `now`."""
    if wf.driven_by == DrivenBy.CALLER:
        return Idle()
    status = wf.status
    if status == WorkflowStatus.PENDING:
        # A waveless workflow waits for the release loop to admit it in a batch.
        return Idle() if wf.waveless is not None else Start()
    if status in _DRIVING:
        return _while_driving(wf, now)
    if status == WorkflowStatus.FAILED:
        return StartCompensation()
    if status == WorkflowStatus.COMPENSATING:
        return _while_compensating(wf, now)
    return Idle()


def wakeup_at(wf: Workflow, now: datetime) -> datetime | None:
    """When a worker should next look at `wf`: now, a timer's due time, or never (None).

    A step in flight is due at once: the worker running it holds a lease on the work item
    (renewed while the handler runs), so nobody else takes it; if that worker dies, whoever
    claims the item after the lease expires re-invokes the same attempt with the same
    idempotency key, or records a TIMEOUT once the step's deadline has passed.
    """
    match next_action(wf, now):
        case Idle():
            return None
        case Wait(at=at):
            return at
        case _:
            return now


def _while_driving(wf: Workflow, now: datetime) -> Action:
    """EXECUTING, PAUSED or CANCELLED: an attempt in flight is seen to first."""
    running = _running(wf)
    if running is not None:
        if running.deadline is None or now >= running.deadline:
            return TimeoutStep(running.step_id, running.attempts)
        return ResumeStep(running.step_id, running.attempts, running.deadline)
    if wf.status == WorkflowStatus.CANCELLED:
        if wf.cancel_compensate and not wf.compensation_queue:
            return StartCompensation()
        return Idle()
    if wf.status == WorkflowStatus.PAUSED:
        return Idle()
    return _next_step(wf, now)


def _next_step(wf: Workflow, now: datetime) -> Action:
    """EXECUTING with nothing in flight: the first step not done, in order."""
    for step in wf.steps.values():
        if step.status in _DONE:
            continue
        if step.status == StepStatus.FAILED:
            return Fail(step.step_id)
        if step.next_attempt_at is not None and now < step.next_attempt_at:
            return Wait(step.step_id, step.attempts + 1, step.next_attempt_at)
        return RunStep(step.step_id, step.attempts + 1)
    return Complete()


def _while_compensating(wf: Workflow, now: datetime) -> Action:
    """COMPENSATING: the first step in the compensation queue not yet compensated."""
    for step_id in wf.compensation_queue:
        step = wf.steps[step_id]
        if step.status == StepStatus.COMPENSATED:
            continue
        if step.status == StepStatus.COMPENSATING:
            deadline = step.compensation_deadline
            if deadline is None or now >= deadline:
                return TimeoutCompensation(step_id, step.compensation_attempts)
            return ResumeCompensation(step_id, step.compensation_attempts, deadline)
        due = step.compensation_next_attempt_at
        if due is not None and now < due:
            return Wait(step_id, step.compensation_attempts + 1, due)
        return CompensateStep(step_id, step.compensation_attempts + 1)
    return CompleteCompensation()


def _running(wf: Workflow) -> StepExecution | None:
    for step in wf.steps.values():
        if step.status == StepStatus.EXECUTING:
            return step
    return None
