"""The Workflow aggregate's events: what each one records and what it means for the state.

`apply` only assigns state and never raises, so replaying any old history always succeeds.
The aggregate names each event as its own (`Workflow.Started = events.Started`); the
library then defines `Workflow.Started` as a subclass of this class and of `Workflow.Event`,
in module `domain.workflow`, so the stored topics stay `domain.workflow:Workflow.<Name>`
(tests/unit/test_workflow_topics.py).
"""

from __future__ import annotations

from dataclasses import field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, cast

from eventsourcing.domain import Aggregate

from domain.enums import DrivenBy, StepStatus, WorkflowPriority, WorkflowStatus, WorkflowType
from domain.step import StepExecution, recorded_specs
from domain.workflow.state import start_state
from domain.workflow_error import OUTPUT_TOO_LARGE, WorkflowError

if TYPE_CHECKING:
    from domain.workflow import Workflow

S = WorkflowStatus


class WorkflowEvent(Aggregate.Event):
    """Base of every workflow event: each carries the workflow's correlation id, and
    who recorded it (`actor`: an operator, an API key, the engine's worker)."""

    correlation_id: str
    # Optional, keyword-only and defaulting to None so that events stored before it
    # existed read as "not said" (the audit then names who triggered the workflow).
    actor: str | None = field(default=None, kw_only=True)


class Created(WorkflowEvent, Aggregate.Created):
    """A workflow was defined from a definition version; it waits in PENDING."""

    class_version: ClassVar[int] = 1
    definition_id: str
    definition_version: int
    name: str
    workflow_type: str
    priority: str
    steps: list[dict[str, Any]]
    input: dict[str, Any]
    triggered_by: str
    max_retries: int
    driven_by: str
    timeout_ms: int
    cut_off: str | None

    def apply(self, aggregate: Any) -> None:
        specs = recorded_specs(self.steps)
        # What the event gives; every other field starts at its declared initial value.
        start_state(aggregate, {
            "definition_id": self.definition_id,
            "definition_version": self.definition_version,
            "name": self.name,
            "workflow_type": WorkflowType(self.workflow_type),
            "priority": WorkflowPriority(self.priority),
            "steps": {spec.step_id: StepExecution(spec=spec) for spec in specs},
            "input": dict(self.input),
            "triggered_by": self.triggered_by,
            "correlation_id": self.correlation_id,
            "max_retries": self.max_retries,
            "driven_by": DrivenBy(self.driven_by),
            "timeout_ms": self.timeout_ms,
            "cut_off": datetime.fromisoformat(self.cut_off) if self.cut_off else None,
            "created_at": self.timestamp,
        })


class Started(WorkflowEvent):
    """The saga started: PENDING -> EXECUTING."""

    actor: str = field(kw_only=True)

    def apply(self, aggregate: Any) -> None:
        wf = cast("Workflow", aggregate)
        wf.status = S.EXECUTING
        wf.started_at = self.timestamp

class StepStarted(WorkflowEvent):
    """A step's attempt began; it must finish before `deadline` or it times out.

    Version 2 added `instance`: the service instance the call was routed to (None for
    a step the caller drives, a Python handler, or a start recorded before routing)."""

    class_version: ClassVar[int] = 2

    step_id: str
    attempt: int
    input_data: dict[str, Any]
    deadline: datetime
    instance: str | None

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["instance"] = None

    def apply(self, aggregate: Any) -> None:
        step = cast("Workflow", aggregate).steps[self.step_id]
        step.status = StepStatus.EXECUTING
        step.attempts = self.attempt
        step.input_data = dict(self.input_data)
        step.started_at = self.timestamp
        step.deadline = self.deadline
        step.next_attempt_at = None
        step.instance = self.instance

class StepExecuted(WorkflowEvent):
    """A step completed with an output (seed WorkflowStepExecutedEvent).

    Version 2 added `instance` (the service instance that answered)."""

    class_version: ClassVar[int] = 2
    step_id: str
    attempt: int
    output: dict[str, Any]
    execution_time_ms: int
    instance: str | None

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["instance"] = None

    def apply(self, aggregate: Any) -> None:
        wf = cast("Workflow", aggregate)
        step = wf.steps[self.step_id]
        step.status = StepStatus.COMPLETED
        step.output = dict(self.output)
        step.duration_ms = self.execution_time_ms
        step.completed_at = self.timestamp
        step.deadline = None
        step.last_error = None
        step.applied_in_run = None  # its answer is recorded now
        wf.executed_steps.append(self.step_id)
        wf._resolved(self.step_id, None)  # a retry succeeded: the failure is history

class StepFailed(WorkflowEvent):
    """A step's attempt failed (seed WorkflowStepFailedEvent).

    Version 2 added `instance` and `duration_ms` of the failed call."""

    class_version: ClassVar[int] = 2
    step_id: str
    attempt: int
    error: dict[str, Any]
    instance: str | None
    duration_ms: int | None

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["instance"] = None
        state["duration_ms"] = None

    def apply(self, aggregate: Any) -> None:
        wf = cast("Workflow", aggregate)
        step = wf.steps[self.step_id]
        error = WorkflowError.from_dict(self.error)
        step.status = StepStatus.FAILED
        # A failure before the step could start uses up an attempt too, so it counts
        # against the retry budget.
        step.attempts = max(step.attempts, self.attempt)
        step.last_error = error
        step.deadline = None
        wf.errors.append(error)
        wf._failed(error)
        if error.code == OUTPUT_TOO_LARGE and step.applied_in_run is None:
            # The service applied it; the first run's key is the one it stored under.
            step.applied_in_run = wf.retry_count

class StepRetryScheduled(WorkflowEvent):
    """A failed step will be tried again at `due_at` (a durable timer)."""

    step_id: str
    retry_number: int
    delay_ms: int
    due_at: datetime

    def apply(self, aggregate: Any) -> None:
        step = cast("Workflow", aggregate).steps[self.step_id]
        step.status = StepStatus.PENDING
        step.next_attempt_at = self.due_at

class Paused(WorkflowEvent):
    """EXECUTING -> PAUSED: no new step starts until resumed."""

    reason: str | None
    actor: str = field(kw_only=True)

    def apply(self, aggregate: Any) -> None:
        wf = cast("Workflow", aggregate)
        wf.status = S.PAUSED
        wf.paused_reason = self.reason

class Resumed(WorkflowEvent):
    """PAUSED -> EXECUTING."""

    actor: str = field(kw_only=True)

    def apply(self, aggregate: Any) -> None:
        wf = cast("Workflow", aggregate)
        wf.status = S.EXECUTING
        wf.paused_reason = None

class Cancelled(WorkflowEvent):
    """The workflow was cancelled; with `compensate`, completed steps are undone."""

    reason: str | None
    actor: str = field(kw_only=True)
    compensate: bool

    def apply(self, aggregate: Any) -> None:
        wf = cast("Workflow", aggregate)
        wf.status = S.CANCELLED
        wf.current_error = None  # an operator's decision, not an error
        wf.cancel_reason = self.reason
        wf.cancel_compensate = self.compensate
        wf.finished_at = self.timestamp

class Failed(WorkflowEvent):
    """EXECUTING -> FAILED: a step failed for good (seed WorkflowFailedEvent)."""

    step_id: str | None
    error: dict[str, Any]

    def apply(self, aggregate: Any) -> None:
        wf = cast("Workflow", aggregate)
        wf.status = S.FAILED
        error = WorkflowError.from_dict(self.error)
        if not wf.errors or wf.errors[-1] != error:
            wf.errors.append(error)
        wf._failed(error)
        wf.saga_error = error

class CompensationStarted(WorkflowEvent):
    """Compensation began; `step_ids` are undone in this (reverse completion) order."""

    step_ids: list[str]
    reason: str

    def apply(self, aggregate: Any) -> None:
        wf = cast("Workflow", aggregate)
        wf.status = S.COMPENSATING
        wf.compensation_queue = list(self.step_ids)
        wf.finished_at = None

class StepCompensationStarted(WorkflowEvent):
    """The compensation call of a completed step began.

    Version 2 added `instance`, as for StepStarted."""

    class_version: ClassVar[int] = 2

    step_id: str
    attempt: int
    operation: str
    deadline: datetime
    instance: str | None

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["instance"] = None

    def apply(self, aggregate: Any) -> None:
        step = cast("Workflow", aggregate).steps[self.step_id]
        step.status = StepStatus.COMPENSATING
        step.compensation_attempts = self.attempt
        step.compensation_deadline = self.deadline
        step.compensation_next_attempt_at = None

class StepCompensationFailed(WorkflowEvent):
    """A compensation attempt failed; `retry_at` is set when it will be tried again."""

    step_id: str
    attempt: int
    error: dict[str, Any]
    retry_at: datetime | None

    def apply(self, aggregate: Any) -> None:
        wf = cast("Workflow", aggregate)
        step = wf.steps[self.step_id]
        error = WorkflowError.from_dict(self.error)
        # The step is still done in the world: it stays COMPLETED (or applied without
        # an answer: FAILED) until undone.
        step.status = StepStatus.FAILED if step.applied_in_run is not None \
            else StepStatus.COMPLETED
        step.last_error = error
        step.compensation_deadline = None
        step.compensation_next_attempt_at = self.retry_at
        wf.errors.append(error)
        wf._failed(error)

class StepCompensated(WorkflowEvent):
    """A completed step was undone."""

    step_id: str
    output: dict[str, Any]

    def apply(self, aggregate: Any) -> None:
        wf = cast("Workflow", aggregate)
        step = wf.steps[self.step_id]
        step.status = StepStatus.COMPENSATED
        step.compensation_output = dict(self.output)
        step.applied_in_run = None  # undone: a later run calls it afresh
        step.compensation_deadline = None
        step.compensation_next_attempt_at = None
        wf.compensated_steps.append(self.step_id)
        wf._resolved(self.step_id, wf.saga_error)

class CompensationCompleted(WorkflowEvent):
    """COMPENSATING -> COMPENSATED (seed WorkflowCompensationCompletedEvent)."""

    def apply(self, aggregate: Any) -> None:
        wf = cast("Workflow", aggregate)
        wf.status = S.COMPENSATED
        wf.finished_at = self.timestamp
        wf.current_error = wf.saga_error  # why it was compensated (None: a cancel asked)

class CompensationFailed(WorkflowEvent):
    """A compensation exhausted its retries: COMPENSATING -> COMPENSATION_FAILED."""

    step_id: str
    error: dict[str, Any]

    def apply(self, aggregate: Any) -> None:
        wf = cast("Workflow", aggregate)
        wf.status = S.COMPENSATION_FAILED
        wf._failed(WorkflowError.from_dict(self.error))

class CompensationRetried(WorkflowEvent):
    """An operator retried a failed compensation: back to COMPENSATING."""

    actor: str = field(kw_only=True)

    def apply(self, aggregate: Any) -> None:
        wf = cast("Workflow", aggregate)
        wf.status = S.COMPENSATING
        for step_id in wf.compensation_queue:
            step = wf.steps[step_id]
            if step.status != StepStatus.COMPENSATED:
                step.compensation_attempts = 0
                step.compensation_next_attempt_at = None

class Completed(WorkflowEvent):
    """EXECUTING -> COMPLETED: every step is done."""

    def apply(self, aggregate: Any) -> None:
        wf = cast("Workflow", aggregate)
        wf.status = S.COMPLETED
        wf.finished_at = self.timestamp
        wf.current_error = None

class Retried(WorkflowEvent):
    """An operator retried the workflow (seed WorkflowRetryEvent): steps not completed
    start again from PENDING."""

    retry_count: int
    actor: str = field(kw_only=True)
    reset_steps: list[str]

    def apply(self, aggregate: Any) -> None:
        wf = cast("Workflow", aggregate)
        wf.status = S.EXECUTING
        wf.retry_count = self.retry_count
        wf.finished_at = None
        wf.cancel_reason = None
        wf.cancel_compensate = False
        wf.compensation_queue = []
        wf.current_error = wf.saga_error = None  # a new run; last_failure keeps history
        for step_id in self.reset_steps:
            step = wf.steps[step_id]
            step.status = StepStatus.PENDING
            step.attempts = 0
            step.next_attempt_at = None
            step.deadline = None
            step.output = None
            step.compensation_attempts = 0
            step.compensation_next_attempt_at = None
            step.compensation_deadline = None
            if step_id in wf.executed_steps:
                wf.executed_steps.remove(step_id)
            if step_id in wf.compensated_steps:
                wf.compensated_steps.remove(step_id)

class WavelessEnabled(WorkflowEvent):
    """Waveless processing enabled (seed WavelessProcessingEnabledEvent)."""

    batch_size: int
    interval_ms: int

    def apply(self, aggregate: Any) -> None:
        cast("Workflow", aggregate).waveless = {
            "batch_size": self.batch_size,
            "interval_ms": self.interval_ms,
        }

class ReleasedInBatch(WorkflowEvent):
    """A waveless batch released this workflow for execution."""

    batch_id: str
    position_in_batch: int

    def apply(self, aggregate: Any) -> None:
        wf = cast("Workflow", aggregate)
        wf.batch_id = self.batch_id
        wf.waiting_reason = None

class WaitingReasonChanged(WorkflowEvent):
    """Why a waiting (waveless) workflow is not released yet, when that changes."""

    reason: str | None

    def apply(self, aggregate: Any) -> None:
        cast("Workflow", aggregate).waiting_reason = self.reason

class MarkedLate(WorkflowEvent):
    """The workflow can no longer make its cut-off time."""

    cut_off: datetime
    expected_finish: datetime

    def apply(self, aggregate: Any) -> None:
        cast("Workflow", aggregate).late = True
