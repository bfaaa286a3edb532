"""The Workflow aggregate (seed: WorkflowInstance): a saga folded from its events.

Commands check first and then trigger an event; an event's `apply` only assigns state and
never raises, so replaying any old history always succeeds. Time is passed in (`now`) and
becomes the event's timestamp, which keeps the model deterministic under test and replay.

The package holds one concept a module: this one the aggregate (its state and commands),
`events` what each event records and means, `state` the state fields' declaration helper
and the snapshot codec, `transitions` the lifecycle table and the current-step rule.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, ClassVar, cast

from eventsourcing.domain import Aggregate

from domain.compensation import CompensationAction
from domain.copying import copy_value
from domain.enums import (
    DrivenBy,
    ErrorType,
    StepStatus,
    WorkflowPriority,
    WorkflowStatus,
    WorkflowType,
)
from domain.exceptions import (
    InvalidStepTransition,
    InvalidTransition,
    InvalidValue,
    StepNotFound,
)
from domain.input_mapping import UnresolvedReference, resolve
from domain.retry_policy import RetryPolicy
from domain.step import StepExecution, StepResult, StepSpec
from domain.waveless import MIN_INTERVAL_MS, can_transition_to_waveless
from domain.workflow import events
from domain.workflow.state import (
    DICT,
    ERROR,
    ERRORS,
    LIST,
    STEPS,
    TIME,
    decode_state,
    encode_state,
    enum_codec,
    state_field,
)
from domain.workflow.transitions import current_step, transition_allowed
from domain.workflow_error import OUTPUT_TOO_LARGE, WorkflowError

DEFAULT_WORKFLOW_TIMEOUT_MS = 300_000
DEFAULT_MAX_RETRIES = 3
DEFAULT_WAVELESS_BATCH_SIZE = 10
DEFAULT_WAVELESS_INTERVAL_MS = 1000

S = WorkflowStatus


@dataclass(frozen=True, slots=True)
class FailureDecision:
    """What handling a step failure decided: retry after a delay, or fail the saga."""

    decision: str  # "retry" | "fail" | "recorded" | "compensated"
    delay_ms: int | None = None
    status: WorkflowStatus | None = None


class Workflow(Aggregate):
    """A warehouse workflow run as a saga, event-sourced."""

    class Event(events.WorkflowEvent):
        """Base of every workflow event (domain.workflow.events.WorkflowEvent)."""

    # The events, defined in domain.workflow.events. Named here, each becomes the library's
    # subclass `Workflow.<Name>` of its class and of `Workflow.Event`: the one triggered and
    # stored, under the topic `domain.workflow:Workflow.<Name>` it always had.
    Created = events.Created
    Started = events.Started
    StepStarted = events.StepStarted
    StepExecuted = events.StepExecuted
    StepFailed = events.StepFailed
    StepRetryScheduled = events.StepRetryScheduled
    Paused = events.Paused
    Resumed = events.Resumed
    Cancelled = events.Cancelled
    Failed = events.Failed
    CompensationStarted = events.CompensationStarted
    StepCompensationStarted = events.StepCompensationStarted
    StepCompensationFailed = events.StepCompensationFailed
    StepCompensated = events.StepCompensated
    CompensationCompleted = events.CompensationCompleted
    CompensationFailed = events.CompensationFailed
    CompensationRetried = events.CompensationRetried
    Completed = events.Completed
    Retried = events.Retried
    WavelessEnabled = events.WavelessEnabled
    ReleasedInBatch = events.ReleasedInBatch
    WaitingReasonChanged = events.WaitingReasonChanged
    MarkedLate = events.MarkedLate

    class Snapshot(Aggregate.Snapshot):
        """A snapshot stores the workflow's state as plain JSON-able data."""

        @classmethod
        def take(cls, aggregate: Any) -> Workflow.Snapshot:
            wf = cast(Workflow, aggregate)
            return cls(  # type: ignore[call-arg]
                originator_id=wf.id,
                originator_version=wf.version,
                timestamp=wf.modified_on,
                topic=Workflow.TOPIC_NAME,
                state=wf.snapshot_state(),
            )

        def mutate(self, _: None) -> Workflow:
            return Workflow.from_snapshot_state(
                self.originator_id, self.originator_version, self.state
            )

    TOPIC_NAME: ClassVar[str] = "domain.workflow:Workflow"

    # ------------------------------------------------------------------ state
    # Each field once: its type, how a snapshot keeps it, and what a new workflow starts
    # with (no `initial`: the Created event gives it). Created.apply and the snapshot codec
    # go through these declarations (domain.workflow.state), so a field is one line here.
    definition_id: str = state_field()
    definition_version: int = state_field()
    name: str = state_field()
    workflow_type: WorkflowType = state_field(enum_codec(WorkflowType))
    priority: WorkflowPriority = state_field(enum_codec(WorkflowPriority))
    status: WorkflowStatus = state_field(enum_codec(WorkflowStatus), initial=S.PENDING)
    steps: dict[str, StepExecution] = state_field(STEPS)
    input: dict[str, Any] = state_field(DICT)
    triggered_by: str = state_field()
    correlation_id: str = state_field()
    max_retries: int = state_field()
    retry_count: int = state_field(initial=0)
    driven_by: DrivenBy = state_field(enum_codec(DrivenBy))
    timeout_ms: int = state_field()
    cut_off: datetime | None = state_field(TIME)
    executed_steps: list[str] = state_field(LIST, initial=[])
    compensated_steps: list[str] = state_field(LIST, initial=[])
    compensation_queue: list[str] = state_field(LIST, initial=[])
    errors: list[WorkflowError] = state_field(ERRORS, initial=[])
    created_at: datetime = state_field(TIME)
    started_at: datetime | None = state_field(TIME, initial=None)
    finished_at: datetime | None = state_field(TIME, initial=None)
    paused_reason: str | None = state_field(initial=None)
    cancel_reason: str | None = state_field(initial=None)
    cancel_compensate: bool = state_field(initial=False)
    waveless: dict[str, int] | None = state_field(initial=None)
    batch_id: str | None = state_field(initial=None)
    late: bool = state_field(initial=False)
    waiting_reason: str | None = state_field(initial=None)
    # The error that explains the present state (None when none does): a step's failure
    # until that step succeeds, the saga's failure while it is compensated, a
    # compensation's failure until it succeeds. `saga_error` is the error this run failed
    # with; `last_failure` the latest error ever recorded (history).
    current_error: WorkflowError | None = state_field(ERROR, initial=None)
    saga_error: WorkflowError | None = state_field(ERROR, initial=None)
    last_failure: WorkflowError | None = state_field(ERROR, initial=None)

    def __init__(self) -> None:
        """State comes from Created.apply."""

    def __deepcopy__(self, memo: dict[int, Any]) -> Workflow:
        # The aggregate cache hands out a copy on every load; the generic deepcopy was a
        # third of a command's CPU. Immutable values are shared, the rest copied
        # (domain.copying), whatever attributes a later version adds.
        copied = object.__new__(type(self))
        copied.__dict__.update({name: copy_value(value, memo)
                                for name, value in self.__dict__.items()})
        return copied

    # ------------------------------------------------------------------ creation

    @classmethod
    def create(
        cls,
        *,
        steps: Sequence[StepSpec | Mapping[str, Any]],
        now: datetime,
        workflow_type: str | WorkflowType = WorkflowType.ORDER_FULFILLMENT,
        priority: str | WorkflowPriority = WorkflowPriority.NORMAL,
        definition_id: str = "inline",
        definition_version: int = 1,
        name: str | None = None,
        input: Mapping[str, Any] | None = None,
        triggered_by: str = "system",
        correlation_id: str | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        driven_by: str | DrivenBy = DrivenBy.ENGINE,
        timeout_ms: int = DEFAULT_WORKFLOW_TIMEOUT_MS,
        cut_off: datetime | None = None,
        workflow_id: uuid.UUID | None = None,
    ) -> Workflow:
        """Validates everything, then records Created (status PENDING)."""
        kind = _parse(WorkflowType, workflow_type, "type")
        prio = _parse(WorkflowPriority, priority, "priority")
        mode = _parse(DrivenBy, driven_by, "driven_by")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise InvalidValue("max_retries", max_retries, "must be an integer >= 0")
        if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms <= 0:
            raise InvalidValue("timeout_ms", timeout_ms, "must be an integer > 0")
        if cut_off is not None and cut_off.tzinfo is None:
            raise InvalidValue("cut_off", cut_off, "must carry a time zone")
        if input is not None and not isinstance(input, Mapping):
            raise InvalidValue("input", input, "must be an object")
        specs = _specs(steps)
        workflow_id = workflow_id or cls.create_id()
        return cls._create(
            cls.Created,
            id=workflow_id,
            timestamp=now,
            correlation_id=correlation_id or f"wf-{workflow_id}",
            definition_id=definition_id,
            definition_version=definition_version,
            name=name or definition_id,
            workflow_type=kind.value,
            priority=prio.value,
            steps=[s.to_dict() for s in specs],
            input=dict(input or {}),
            triggered_by=triggered_by or "system",
            max_retries=max_retries,
            driven_by=mode.value,
            timeout_ms=timeout_ms,
            cut_off=cut_off.isoformat() if cut_off else None,
        )

    def _trigger(self, event_class: type[Any], now: datetime, **kwargs: Any) -> None:
        # A stream's times never go backwards, whatever the clock of the process deciding
        # (clocks differ between processes; the release loop decides with the time its
        # round began): replay at a point in time searches the stream by time.
        self.trigger_event(event_class, timestamp=max(now, self.modified_on),
                           correlation_id=self.correlation_id, **kwargs)

    # ------------------------------------------------------------------ lifecycle

    def start(self, now: datetime, actor: str = "system") -> None:
        """PENDING -> EXECUTING (seed startSaga)."""
        self._check("start")
        self._trigger(self.Started, now, actor=actor)

    def pause(self, now: datetime, reason: str | None = None, actor: str = "operator") -> None:
        """EXECUTING -> PAUSED; a step already running may still record its outcome."""
        self._check("pause")
        self._trigger(self.Paused, now, reason=reason, actor=actor)

    def resume(self, now: datetime, actor: str = "operator") -> None:
        """PAUSED -> EXECUTING. A step that failed for good while paused fails the saga
        now (its decision waited for the resume), for engine and caller alike."""
        self._check("resume")
        self._trigger(self.Resumed, now, actor=actor)
        if self._step_in_flight() is None:
            failed = next((s for s in self.steps.values() if s.status == StepStatus.FAILED),
                          None)
            if failed is not None:
                self.fail_failed_step(failed.step_id, now, actor=actor)

    def cancel(self, now: datetime, reason: str | None = None, actor: str = "operator",
               compensate: bool = False) -> None:
        """Stops further steps; with `compensate`, completed steps are undone afterwards."""
        self._check("cancel")
        self._trigger(self.Cancelled, now, reason=reason, actor=actor, compensate=compensate)
        if compensate and not self._step_in_flight():
            self._start_compensation(now, reason=f"cancelled: {reason or 'no reason given'}",
                                     actor=actor)

    def retry(self, now: datetime, actor: str = "operator") -> None:
        """Runs a FAILED, COMPENSATED or CANCELLED workflow again (seed WorkflowRetryEvent)."""
        self._check("retry")
        if self.retry_count >= self.max_retries:
            raise InvalidTransition(
                self.id, self.status, "retry",
                f"retry count {self.retry_count} has reached max retries {self.max_retries}",
            )
        if self._step_in_flight():
            raise InvalidTransition(self.id, self.status, "retry", "a step is still executing")
        reset = [s.step_id for s in self.steps.values()
                 if s.status not in (StepStatus.COMPLETED, StepStatus.SKIPPED)]
        self._trigger(self.Retried, now, retry_count=self.retry_count + 1, actor=actor,
                      reset_steps=reset)

    def complete(self, now: datetime, actor: str | None = None) -> None:
        """EXECUTING -> COMPLETED, once every step is COMPLETED or SKIPPED (seed completeSaga)."""
        self._check("complete")
        unfinished = [s.step_id for s in self.steps.values()
                      if s.status not in (StepStatus.COMPLETED, StepStatus.SKIPPED)]
        if unfinished:
            raise InvalidTransition(self.id, self.status, "complete",
                                    f"steps not completed: {unfinished}")
        self._trigger(self.Completed, now, actor=actor)

    def fail(self, error: WorkflowError, now: datetime, actor: str | None = None) -> None:
        """Seed failSaga: EXECUTING -> FAILED, then compensation starts at once.

        A step still executing is recorded as failed first: its outcome can no longer be
        accepted, and a step left EXECUTING would block `retry` for good."""
        self._check("fail")
        running = self._step_in_flight()
        if running is not None:
            error = replace(error, occurred_at=error.occurred_at or now)
            step_error = error if error.step_id == running.step_id \
                else replace(error, step_id=running.step_id)
            self._trigger(self.StepFailed, now, step_id=running.step_id,
                          attempt=running.attempts, error=step_error.to_dict(),
                          instance=None, duration_ms=None, actor=actor)
        self._trigger(self.Failed, now, step_id=error.step_id, error=error.to_dict(), actor=actor)
        self._start_compensation(now, reason=f"{error.code}: {error.message}", actor=actor)

    def compensate(self, now: datetime, reason: str = "compensation requested",
                   actor: str | None = None) -> None:
        """FAILED (or cancelled with compensation) -> COMPENSATING (seed workflow.compensate())."""
        self._check("compensate")
        self._start_compensation(now, reason=reason, actor=actor)

    def _start_compensation(self, now: datetime, reason: str, actor: str | None) -> None:
        to_undo = [s.step_id for s in self.steps_requiring_compensation()]
        self._trigger(self.CompensationStarted, now, step_ids=to_undo, reason=reason,
                      actor=actor)
        if not to_undo:
            # Nothing was done, so nothing needs undoing: compensation is complete at once.
            self._trigger(self.CompensationCompleted, now, actor=actor)

    def enable_waveless(self, now: datetime, batch_size: int = DEFAULT_WAVELESS_BATCH_SIZE,
                        interval_ms: int = DEFAULT_WAVELESS_INTERVAL_MS) -> None:
        """Records WavelessEnabled with its settings (seed section 6)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidValue("batch_size", batch_size, "must be an integer >= 1")
        if isinstance(interval_ms, bool) or not isinstance(interval_ms, int) \
                or interval_ms < MIN_INTERVAL_MS:
            raise InvalidValue("interval_ms", interval_ms, f"must be an integer >= {MIN_INTERVAL_MS}")
        if not self.can_transition_to_waveless():
            raise InvalidTransition(
                self.id, self.status, "enable waveless",
                f"needs a waveless-capable type (ORDER_FULFILLMENT, PICKING, PACKING) that is "
                f"PENDING or EXECUTING; this one is {self.workflow_type}",
            )
        if self.waveless is not None:
            raise InvalidTransition(self.id, self.status, "enable waveless", "already enabled")
        self._trigger(self.WavelessEnabled, now, batch_size=batch_size, interval_ms=interval_ms)

    def release_in_batch(self, now: datetime, batch_id: str, position: int) -> None:
        """A waveless batch admits this PENDING workflow: records the batch, then starts it."""
        if self.waveless is None:
            raise InvalidTransition(self.id, self.status, "release in batch", "not waveless")
        self._check("start")
        self._trigger(self.ReleasedInBatch, now, batch_id=batch_id, position_in_batch=position)
        self._trigger(self.Started, now, actor=f"waveless:{batch_id}")

    def note_waiting(self, now: datetime, reason: str | None) -> bool:
        """Records why a PENDING workflow still waits, only when the reason changes."""
        if self.status != S.PENDING or reason == self.waiting_reason:
            return False
        # Recorded as plain text, as replay gives it back (a WaitingReason is a str).
        self._trigger(self.WaitingReasonChanged, now,
                      reason=None if reason is None else str(reason))
        return True

    def mark_late(self, now: datetime, expected_finish: datetime) -> None:
        """Flags that the cut-off can no longer be met (recorded once)."""
        if self.cut_off is None or self.late or self.status.is_terminal:
            return
        self._trigger(self.MarkedLate, now, cut_off=self.cut_off, expected_finish=expected_finish)

    # ------------------------------------------------------------------ steps

    def start_step(self, step_id: str, now: datetime, instance: str | None = None,
                   actor: str | None = None) -> StepExecution:
        """Seed startStepExecution: the next step in order begins an attempt (routed to
        `instance`, when the engine knows it)."""
        step = self._step(step_id)
        if self.status != S.EXECUTING:
            raise InvalidTransition(self.id, self.status, f"start step {step_id!r}")
        if step.status != StepStatus.PENDING:
            raise InvalidStepTransition(self.id, step_id, step.status, "start")
        self._check_turn_of(step, "start")
        input_data = self.resolve_step_input(step_id)
        self._trigger(
            self.StepStarted, now, step_id=step_id, attempt=step.attempts + 1,
            input_data=input_data, deadline=now + timedelta(milliseconds=step.spec.timeout_ms),
            instance=instance, actor=actor,
        )
        return step

    def resolve_step_input(self, step_id: str) -> dict[str, Any]:
        """The step's input with references to the workflow input and outputs resolved."""
        step = self._step(step_id)
        outputs = {s.step_id: s.output for s in self.steps.values() if s.output is not None}
        try:
            return cast(dict[str, Any], resolve(step.spec.input, self.input, outputs))
        except UnresolvedReference as e:
            raise InvalidValue(f"steps[{step_id}].input", dict(step.spec.input), str(e)) from None

    def record_step_result(self, step_id: str, result: StepResult, now: datetime,
                           attempt: int | None = None, instance: str | None = None,
                           actor: str | None = None) -> None:
        """Seed executeStep: the running step completed with `result`."""
        step = self._step(step_id)
        if result.step_id != step_id:
            raise InvalidValue("result.step_id", result.step_id, f"does not match {step_id!r}")
        self._check_step_outcome_allowed(step, "record a result", attempt)
        self._trigger(self.StepExecuted, now, step_id=step_id, attempt=step.attempts,
                      output=dict(result.output), execution_time_ms=result.execution_time_ms,
                      instance=instance, actor=actor)

    def handle_step_failure(self, step_id: str, error: WorkflowError, now: datetime,
                            attempt: int | None = None, instance: str | None = None,
                            duration_ms: int | None = None, actor: str | None = None
                            ) -> FailureDecision:
        """Seed handleStepFailure: retry with backoff if recoverable and retries remain,
        otherwise fail the saga and start compensation."""
        step = self._step(step_id)
        if step.status == StepStatus.PENDING and step.next_attempt_at is None \
                and self.status == S.EXECUTING and attempt is None:
            # A failure before the step could start (e.g. its input does not resolve): only
            # for the step whose turn it is, or a failure could overtake a running step.
            self._check_turn_of(step, "record a failure")
        else:
            self._check_step_outcome_allowed(step, "record a failure", attempt)
        if error.step_id != step_id:
            error = WorkflowError(step_id, error.service, error.code, error.message,
                                  error.error_type, error.recoverable, error.occurred_at,
                                  error.detail)
        if error.occurred_at is None:
            error = WorkflowError(error.step_id, error.service, error.code, error.message,
                                  error.error_type, error.recoverable, now, error.detail)
        self._trigger(self.StepFailed, now, step_id=step_id, attempt=max(step.attempts, 1),
                      error=error.to_dict(), instance=instance, duration_ms=duration_ms,
                      actor=actor)
        if self.status == S.CANCELLED:
            return FailureDecision("recorded", status=self.status)
        policy = step.spec.retry_policy
        retries_so_far = max(step.attempts, 1) - 1
        if error.recoverable and policy.can_retry(retries_so_far):
            delay = policy.calculate_delay(retries_so_far)
            self._trigger(self.StepRetryScheduled, now, step_id=step_id,
                          retry_number=retries_so_far + 1, delay_ms=delay,
                          due_at=now + timedelta(milliseconds=delay), actor=actor)
            return FailureDecision("retry", delay_ms=delay, status=self.status)
        if self.status == S.PAUSED:
            # The saga fails when resumed: a paused workflow takes no new decisions.
            return FailureDecision("fail", status=self.status)
        self.fail(_final_error(error, retries_so_far, now), now, actor=actor)
        return FailureDecision("fail", status=self.status)

    def fail_failed_step(self, step_id: str, now: datetime, actor: str | None = None) -> None:
        """Fails the saga for a step that failed for good while the workflow was paused
        (the decision waits for the resume)."""
        step = self._step(step_id)
        if step.status != StepStatus.FAILED or step.last_error is None:
            raise InvalidStepTransition(self.id, step_id, step.status, "fail the saga")
        self.fail(_final_error(step.last_error, step.retries, now), now, actor=actor)

    def _check_turn_of(self, step: StepExecution, action: str) -> None:
        """Steps run one at a time, in order: none in flight, every earlier one done."""
        running = self._step_in_flight()
        if running is not None:
            raise InvalidStepTransition(self.id, step.step_id, step.status,
                                        f"{action} while step {running.step_id!r} is executing")
        for earlier in self.steps.values():
            if earlier.step_id == step.step_id:
                break
            if earlier.status not in (StepStatus.COMPLETED, StepStatus.SKIPPED):
                raise InvalidStepTransition(
                    self.id, step.step_id, step.status,
                    f"{action} before earlier step {earlier.step_id!r} is completed",
                )

    def _check_step_outcome_allowed(self, step: StepExecution, action: str,
                                    attempt: int | None) -> None:
        if self.status not in (S.EXECUTING, S.PAUSED, S.CANCELLED):
            raise InvalidTransition(self.id, self.status, f"{action} for step {step.step_id!r}")
        if step.status != StepStatus.EXECUTING:
            raise InvalidStepTransition(self.id, step.step_id, step.status, action)
        if attempt is not None and attempt != step.attempts:
            raise InvalidStepTransition(
                self.id, step.step_id, step.status,
                f"{action} for attempt {attempt}: the current attempt is {step.attempts}",
            )

    # ------------------------------------------------------------------ compensation

    def start_step_compensation(self, step_id: str, now: datetime,
                                instance: str | None = None, actor: str | None = None
                                ) -> CompensationAction:
        """Begins undoing a completed step (routed to `instance`, when known); returns the
        action to execute."""
        step = self._step(step_id)
        if self.status != S.COMPENSATING:
            raise InvalidTransition(self.id, self.status, f"compensate step {step_id!r}")
        if step_id not in self.compensation_queue or not self._undoable(step):
            raise InvalidStepTransition(self.id, step_id, step.status, "start compensation")
        action = self.get_compensation_action(step_id)
        self._trigger(
            self.StepCompensationStarted, now, step_id=step_id,
            attempt=step.compensation_attempts + 1, operation=action.operation,
            deadline=now + timedelta(milliseconds=action.timeout_ms), instance=instance,
            actor=actor,
        )
        return action

    def mark_step_compensated(self, step_id: str, now: datetime,
                              output: Mapping[str, Any] | None = None,
                              attempt: int | None = None, actor: str | None = None) -> None:
        """A step was undone. A COMPLETED step has its compensation start recorded first."""
        step = self._step(step_id)
        if self.status != S.COMPENSATING:
            raise InvalidTransition(self.id, self.status, f"mark step {step_id!r} compensated")
        if self._undoable(step) and step_id in self.compensation_queue:
            if attempt is not None:
                # An outcome for a given attempt, but that attempt is over (timed out):
                # it must not start and complete a new one behind the caller's back.
                raise InvalidStepTransition(self.id, step_id, step.status,
                                            f"mark compensated for stale attempt {attempt}")
            self.start_step_compensation(step_id, now, actor=actor)
        elif step.status != StepStatus.COMPENSATING:
            raise InvalidStepTransition(self.id, step_id, step.status, "mark compensated")
        elif attempt is not None and attempt != step.compensation_attempts:
            raise InvalidStepTransition(self.id, step_id, step.status,
                                        f"mark compensated for stale attempt {attempt}")
        self._trigger(self.StepCompensated, now, step_id=step_id, output=dict(output or {}),
                      actor=actor)

    def handle_compensation_failure(self, step_id: str, error: WorkflowError, now: datetime,
                                    attempt: int | None = None, actor: str | None = None
                                    ) -> FailureDecision:
        """A compensation attempt failed: retry with backoff, or COMPENSATION_FAILED."""
        step = self._step(step_id)
        if self.status != S.COMPENSATING:
            raise InvalidTransition(self.id, self.status, f"fail compensation of {step_id!r}")
        if step.status != StepStatus.COMPENSATING:
            raise InvalidStepTransition(self.id, step_id, step.status, "fail compensation")
        if attempt is not None and attempt != step.compensation_attempts:
            raise InvalidStepTransition(self.id, step_id, step.status,
                                        f"fail compensation for stale attempt {attempt}")
        if error.code == OUTPUT_TOO_LARGE:
            # The service applied the undo (it answered 2xx); only its answer is too big to
            # keep, and nothing reads a compensation's output. Failing it would fail for
            # ever: every retry under its key gets the same stored answer.
            self._trigger(self.StepCompensated, now, step_id=step_id,
                          output={"output_not_recorded": error.message}, actor=actor)
            return FailureDecision("compensated", status=self.status)
        action = self.get_compensation_action(step_id)
        retries_so_far = step.compensation_attempts - 1
        # The compensation's own budget (max_retries of its action), with the default
        # backoff: 1 s, 2 s, 4 s, ... capped at 10 s.
        policy = RetryPolicy(max_retries=action.max_retries)
        can_retry = error.recoverable and policy.can_retry(retries_so_far)
        delay = policy.calculate_delay(retries_so_far) if can_retry else None
        error = WorkflowError(step_id, error.service or action.service, error.code, error.message,
                              error.error_type, error.recoverable, error.occurred_at or now,
                              error.detail)
        self._trigger(
            self.StepCompensationFailed, now, step_id=step_id,
            attempt=step.compensation_attempts, error=error.to_dict(),
            retry_at=now + timedelta(milliseconds=delay) if delay is not None else None,
            actor=actor,
        )
        if can_retry:
            return FailureDecision("retry", delay_ms=delay, status=self.status)
        final = WorkflowError(step_id, error.service, "COMPENSATION_FAILED",
                              f"compensation of {step_id!r} failed: {error.message}",
                              ErrorType.COMPENSATION_FAILED, False, now, error.detail)
        self._trigger(self.CompensationFailed, now, step_id=step_id, error=final.to_dict(),
                      actor=actor)
        return FailureDecision("fail", status=self.status)

    def complete_compensation(self, now: datetime, actor: str | None = None) -> None:
        """COMPENSATING -> COMPENSATED once every queued step is undone."""
        self._check("complete_compensation")
        remaining = [s for s in self.compensation_queue
                     if self.steps[s].status != StepStatus.COMPENSATED]
        if remaining:
            raise InvalidTransition(self.id, self.status, "complete compensation",
                                    f"steps not yet compensated: {remaining}")
        self._trigger(self.CompensationCompleted, now, actor=actor)

    def retry_compensation(self, now: datetime, actor: str = "operator") -> None:
        """COMPENSATION_FAILED -> COMPENSATING, with fresh compensation retries."""
        self._check("retry_compensation")
        self._trigger(self.CompensationRetried, now, actor=actor)

    def compensation_request(self, step_id: str) -> dict[str, Any]:
        """The compensation call's body: parameters resolved against input and outputs."""
        action = self.get_compensation_action(step_id)
        outputs = {s.step_id: s.output for s in self.steps.values() if s.output is not None}
        try:
            return cast(dict[str, Any], resolve(action.request_body(), self.input, outputs))
        except UnresolvedReference as e:
            raise InvalidValue(f"steps[{step_id}].compensation.parameters",
                               action.request_body(), str(e)) from None

    def get_compensation_action(self, step_id: str) -> CompensationAction:
        """The step's compensation action (seed getCompensationAction)."""
        step = self._step(step_id)
        if step.spec.compensation is None:
            raise InvalidStepTransition(self.id, step_id, step.status,
                                        "be compensated: it has no compensation action")
        return step.spec.compensation

    def idempotency_key(self, step_id: str, compensation: bool = False) -> str:
        """The key a service deduplicates a step's call by: `<workflow_id>:<step_id>`, the
        same for every attempt of one execution; `:<run>` once a workflow-level retry has
        started the step afresh (the run is the retry count: only `retry` raises it, and
        it resets every step not completed, so no execution spans two runs); a
        compensation adds `:compensate`. A step the service applied without its answer
        being recorded keeps the key of the run it was applied in until it is undone, so a
        later run's call is replayed by the service instead of applied again."""
        step = self._step(step_id)
        key = f"{self.id}:{step_id}"
        run = step.applied_in_run if step.applied_in_run is not None else self.retry_count
        if run:
            key = f"{key}:{run}"
        return f"{key}:compensate" if compensation else key

    # ------------------------------------------------------------------ queries (seed section 9)

    @property
    def progress_percentage(self) -> float:
        """(COMPLETED + SKIPPED steps) / all steps x 100; 0 with no steps."""
        if not self.steps:
            return 0.0
        done = sum(1 for s in self.steps.values()
                   if s.status in (StepStatus.COMPLETED, StepStatus.SKIPPED))
        return done * 100.0 / len(self.steps)

    @property
    def is_active(self) -> bool:
        return self.status.is_active

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    def has_timed_out(self, timeout_ms: int, now: datetime) -> bool:
        """Running longer than `timeout_ms`; never for a terminal or not-yet-started one."""
        if self.is_terminal or self.started_at is None:
            return False
        return now - self.started_at > timedelta(milliseconds=timeout_ms)

    @property
    def current_step_id(self) -> str | None:
        """The step in flight, else the next one to run; None when all are done or the
        workflow is finished (see `current_step`)."""
        return current_step(self.status, ((s.step_id, s.status) for s in self.steps.values()))

    def steps_requiring_compensation(self) -> list[StepExecution]:
        """Steps done in the world with a compensation action, last done first: a step
        applied without a recorded answer (it ran last: it failed the saga), then the
        COMPLETED ones, last completed first."""
        applied = [s for s in self.steps.values()
                   if self.applied_unrecorded(s) and s.spec.compensation is not None]
        return applied + [self.steps[s] for s in reversed(self.executed_steps)
                          if self.steps[s].status == StepStatus.COMPLETED
                          and self.steps[s].spec.compensation is not None]

    @staticmethod
    def applied_unrecorded(step: StepExecution) -> bool:
        """The service applied the step's call (answered 2xx) but the answer could not be
        recorded (OUTPUT_TOO_LARGE): FAILED for the saga (or PENDING again after a workflow
        retry, to be called under the same key), done in the world until undone."""
        return step.applied_in_run is not None \
            and step.status in (StepStatus.FAILED, StepStatus.PENDING)

    def _undoable(self, step: StepExecution) -> bool:
        return step.status == StepStatus.COMPLETED or self.applied_unrecorded(step)

    @property
    def compensation_progress(self) -> float:
        """compensated / executed x 100; 100 when nothing was executed."""
        if not self.executed_steps:
            return 100.0
        return len(self.compensated_steps) * 100.0 / len(self.executed_steps)

    def can_transition_to_waveless(self) -> bool:
        """Waveless-capable type and PENDING or EXECUTING, any priority (see SEED-FACTS)."""
        return can_transition_to_waveless(self)

    def step(self, step_id: str) -> StepExecution:
        return self._step(step_id)

    def pending_compensation(self) -> list[str]:
        return [s for s in self.compensation_queue
                if self.steps[s].status != StepStatus.COMPENSATED]

    # ------------------------------------------------------------------ helpers

    def _failed(self, error: WorkflowError) -> None:
        """An error was recorded: it is current, and the latest in the history."""
        self.current_error = self.last_failure = error

    def _resolved(self, step_id: str, fallback: WorkflowError | None) -> None:
        """The step succeeded (or was undone): its error is no longer current, unless it is
        the error the saga failed with."""
        if self.current_error is not None and self.current_error.step_id == step_id \
                and self.current_error != self.saga_error:
            self.current_error = fallback

    def _check(self, action: str) -> None:
        if not transition_allowed(action, self.status):
            raise InvalidTransition(self.id, self.status, action.replace("_", " "))

    def _step(self, step_id: str) -> StepExecution:
        try:
            return self.steps[step_id]
        except KeyError:
            raise StepNotFound(self.id, step_id) from None

    def _step_in_flight(self) -> StepExecution | None:
        for step in self.steps.values():
            if step.status in (StepStatus.EXECUTING, StepStatus.COMPENSATING):
                return step
        return None

    # ------------------------------------------------------------------ snapshots

    def snapshot_state(self) -> dict[str, Any]:
        """The whole state as JSON-able data (used by Workflow.Snapshot)."""
        return encode_state(self)

    @classmethod
    def from_snapshot_state(cls, workflow_id: uuid.UUID, version: int,
                            state: Mapping[str, Any]) -> Workflow:
        return decode_state(cls, workflow_id, version, state)


def _final_error(error: WorkflowError, retries_so_far: int, now: datetime) -> WorkflowError:
    """The error a saga fails with: a recoverable one means its retries ran out."""
    if not error.recoverable:
        return error
    return WorkflowError(error.step_id, error.service, "RETRIES_EXHAUSTED",
                         f"{error.message} (after {retries_so_far} retries)",
                         error.error_type, False, now, error.detail)


def _parse(enum: Any, value: Any, field: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        raise InvalidValue(field, value, f"must be one of {[e.value for e in enum]}") from None


def _specs(steps: Iterable[StepSpec | Mapping[str, Any]]) -> list[StepSpec]:
    from domain.definition import validate_steps

    return validate_steps(list(steps))
