"""Driving one claimed workflow: decide, act, save, until it must wait.

The driver asks the domain what to do next (`domain.decisions.next_action`) and does it,
saving every decision as events. Decisions that call nothing (start, complete, fail, time
out, begin or finish compensating) and local steps (Python handlers registered as local
activities) are applied to the aggregate in memory and saved together, in one transaction,
before the next remote call or when the workflow must wait. A remote call always has its
start saved first, so that a worker dying during the call leaves an attempt in flight that
the next one re-invokes with the same idempotency key. Optimistic concurrency on the
aggregate is the final arbiter: whoever saves second reloads and decides again, so a step
outcome is recorded exactly once (unsaved local results are dropped and their handlers run
again: at-least-once).

A step and its compensation are carried out the same way, locally or remotely: a `_Target`
says which operation an action calls, and one path starts, calls and records it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import assert_never
from uuid import UUID

import orjson

from application.engine.ports import StepCall, StepHandler, StepOutcome, output_too_large
from application.engine.retrying import Backoff, retry
from application.errors import ConcurrencyConflict, WorkflowNotFound
from application.logs import workflow_context
from application.metrics import STEP_DURATION, STEPS_RUN
from application.pool import UNAVAILABLE
from application.wip import Slot, WipGate
from application.workflows import Workflows
from domain import decisions as d
from domain.enums import ErrorType
from domain.exceptions import DomainError, InvalidValue
from domain.step import StepResult
from domain.workflow import Workflow
from domain.workflow_error import WorkflowError

log = logging.getLogger(__name__)

MAX_ACTIONS_PER_CLAIM = 64
RECORD_ATTEMPTS = 50

# How a drive ended, for handing its work item back (see Worker._hand_back).

@dataclass(frozen=True, slots=True)
class Removed:
    """Its last save deleted the work item (finished, or waiting for an operator)."""


@dataclass(frozen=True, slots=True)
class NothingDone:
    """Nothing to do and nothing saved: the item may be stale (a repair, say); settle it
    to when the workflow next has work (`wakeup`; None: never)."""

    wakeup: datetime | None


@dataclass(frozen=True, slots=True)
class HandBack:
    """Hand the item back, due now (still busy, or saved) or at `not_before`
    (backpressure: no instance can take the call)."""

    not_before: datetime | None = None


@dataclass(frozen=True, slots=True)
class WaitForSlot:
    """A capped service has no free slot (see WipGate): park the item until one frees."""

    service: str
    not_before: datetime


DriveOutcome = Removed | NothingDone | HandBack | WaitForSlot

# The actions that call nothing, applied to the aggregate in memory.
_Decision = (d.Start | d.Complete | d.Fail | d.StartCompensation | d.CompleteCompensation
             | d.TimeoutStep | d.TimeoutCompensation)
# The WIP slot's holder label names the action as it always has.
_HOLDER_KIND = {d.RunStep: "run_step", d.ResumeStep: "resume_step",
                d.CompensateStep: "compensate_step", d.ResumeCompensation: "resume_compensation"}


class _Backpressure(Exception):
    """No instance of the step's service can take work now: wait, do not spend a retry."""

    def __init__(self, seconds: float, service: str | None = None) -> None:
        self.seconds = seconds
        self.service = service


@dataclass(frozen=True, slots=True)
class _Target:
    """The operation a call action calls: a step's, or its compensation's."""

    step_id: str
    service: str
    operation: str
    compensation: bool


@dataclass(frozen=True, slots=True)
class _Quiet:
    """The workflow has nothing to do now; it next has at `wakeup` (None: never)."""

    wakeup: datetime | None


@dataclass(frozen=True, slots=True)
class _Busy:
    """Actions are left (the per-claim limit, or shutting down): look again at once."""


@dataclass(frozen=True, slots=True)
class _HeldBack:
    """A call must wait until `not_before` (for a WIP slot of `service`, when named)."""

    not_before: datetime
    service: str | None


@dataclass
class _InHand:
    """The workflow a drive works on, and what of it is saved."""

    workflow_id: UUID
    wf: Workflow | None = None
    unsaved: bool = False  # decisions applied in memory, not yet saved
    saved: bool = False  # anything was saved during this drive

    def drop(self) -> None:
        """Forget the aggregate (and what was not saved of it): load it again."""
        self.wf, self.unsaved = None, False


class Driver:
    """Drives one workflow at a time as far as it can go now; used by a worker's threads."""

    def __init__(self, app: Workflows, handler: StepHandler, *, actor: str,
                 worker_id: str, clock: Callable[[], datetime], max_output_bytes: int,
                 wip: WipGate | None, stopping: threading.Event) -> None:
        self.app = app
        self.handler = handler
        self.actor = actor
        self.worker_id = worker_id
        self.clock = clock
        self.max_output_bytes = max_output_bytes
        self.wip = wip
        self._stopping = stopping

    # ------------------------------------------------------------------ one drive

    def drive(self, workflow_id: UUID) -> DriveOutcome:
        """Takes actions for one workflow until it must wait (timer, operator, or done).

        The aggregate is reused after our own saves; a concurrent change shows up as a
        conflict on the next save, and then we reload and decide again.
        """
        in_hand = _InHand(workflow_id)
        try:
            end = self._take_actions(in_hand)
        except BaseException:
            self._save_unsaved(in_hand)  # what is in hand gets saved, then the error goes on
            raise
        last_save_removed = self._save_unsaved(in_hand) and isinstance(end, _Quiet) \
            and end.wakeup is None
        return _outcome(end, in_hand.saved, last_save_removed)

    def _take_actions(self, in_hand: _InHand) -> _Quiet | _Busy | _HeldBack:
        for taken in range(MAX_ACTIONS_PER_CLAIM):
            if taken and self._stopping.is_set():
                break  # shutting down: what is in hand gets saved by the caller
            if in_hand.wf is None:
                try:
                    in_hand.wf = self.app.get_workflow(in_hand.workflow_id)
                except WorkflowNotFound:
                    return _Quiet(None)
            now = self.clock()
            match d.next_action(in_hand.wf, now):
                case d.Idle():
                    return _Quiet(None)
                case d.Wait(at=at):
                    return _Quiet(at)
                case action:
                    held_back = self._take(in_hand, in_hand.wf, action, now)
                    if held_back is not None:
                        return held_back
        return _Busy()

    def _save_unsaved(self, in_hand: _InHand) -> bool:
        """Saves decisions left in memory; True if that save was made. On a conflict the
        work item stays due: the next claim decides again."""
        if not in_hand.unsaved or in_hand.wf is None:
            return False
        with contextlib.suppress(ConcurrencyConflict):
            self.app.save_workflow(in_hand.wf, self.clock())
            in_hand.saved = True
            return True
        return False

    def _take(self, in_hand: _InHand, wf: Workflow, action: d.CallAction | _Decision,
              now: datetime) -> _HeldBack | None:
        """Takes one action; a reason to stop driving, or None to decide again."""
        with workflow_context(workflow_id=wf.id, correlation_id=wf.correlation_id):
            try:
                self._act(in_hand, wf, action, now)
            except _Backpressure as e:
                return _HeldBack(self.clock() + timedelta(seconds=e.seconds), e.service)
            except ConcurrencyConflict:
                in_hand.drop()  # someone else changed it first
            except DomainError as e:
                # The fresh state no longer allows what we decided (paused, say).
                log.info("decision no longer applies", extra={"reason": str(e)})
                in_hand.drop()
        return None

    def _act(self, in_hand: _InHand, wf: Workflow, action: d.CallAction | _Decision,
             now: datetime) -> None:
        match action:
            case d.RunStep() | d.ResumeStep() | d.CompensateStep() | d.ResumeCompensation():
                target = _target(wf, action)
                if self._local(target):
                    self._carry_out(wf, action, target, now, remote=False)
                    in_hand.unsaved = True
                    return
                if in_hand.unsaved:  # what was decided in memory is saved before a call
                    self.app.save_workflow(wf, now)
                    in_hand.saved, in_hand.unsaved = True, False
                self._check_capacity(action, target)
                with self._wip_slot(wf, action, target) as took_slot:
                    # A start saved after taking a slot is stamped after it too. The
                    # aggregate the outcome was saved on, to decide on (None: it was not
                    # saved by us, so load it again).
                    in_hand.wf = self._carry_out(wf, action, target,
                                                 self.clock() if took_slot else now,
                                                 remote=True)
                in_hand.saved = True
            case _:
                self._decide(wf, action, now)
                in_hand.unsaved = True

    # ------------------------------------------------------------------ decisions

    def _decide(self, wf: Workflow, action: _Decision, now: datetime) -> None:
        """Applies a decision that calls nothing to the aggregate in memory."""
        match action:
            case d.Start():
                wf.start(now, actor=self.actor)
            case d.Complete():
                wf.complete(now, actor=self.actor)
                log.info("workflow completed")
            case d.Fail(step_id=step_id):
                wf.fail_failed_step(step_id, now, actor=self.actor)
            case d.StartCompensation():
                wf.compensate(now, reason=wf.cancel_reason or "failed", actor=self.actor)
            case d.CompleteCompensation():
                wf.complete_compensation(now, actor=self.actor)
                log.info("workflow compensated")
            case d.TimeoutStep(step_id=step_id, attempt=attempt):
                step = wf.step(step_id)
                error = WorkflowError.create(
                    step_id, step.spec.service, "STEP_TIMEOUT",
                    f"step {step_id!r} attempt {attempt} passed its deadline "
                    f"({step.spec.timeout_ms} ms)", ErrorType.TIMEOUT, True, occurred_at=now)
                wf.handle_step_failure(step_id, error, now, attempt=attempt, actor=self.actor)
            case d.TimeoutCompensation(step_id=step_id, attempt=attempt):
                error = WorkflowError.create(
                    step_id, wf.get_compensation_action(step_id).service,
                    "COMPENSATION_TIMEOUT", f"compensation of {step_id!r} passed its deadline",
                    ErrorType.TIMEOUT, True, occurred_at=now)
                wf.handle_compensation_failure(step_id, error, now, attempt=attempt,
                                               actor=self.actor)
            case _:
                assert_never(action)

    # ------------------------------------------------------------------ calls

    def _local(self, target: _Target) -> bool:
        if self.wip is not None and self.wip.capped(target.service):
            return False  # a capped service's steps take a slot: their start is saved first
        return self.handler.is_local(target.service, target.operation)

    def _check_capacity(self, action: d.CallAction, target: _Target) -> None:
        """Before a remote call starts an attempt: if no instance of the service can take
        work (all overloaded or circuits open), wait instead of spending a retry."""
        if not isinstance(action, d.RunStep | d.CompensateStep):
            return
        seconds = self.handler.unavailable_for(target.service)
        if seconds:
            log.info("no instance can take the call; waiting %.1f s", seconds,
                     extra={"step_id": action.step_id})
            raise _Backpressure(seconds)

    @contextlib.contextmanager
    def _wip_slot(self, wf: Workflow, action: d.CallAction, target: _Target) -> Iterator[bool]:
        """Holds a slot of a capped service (WES_WIP_CAPS) from before the step's start is
        saved until its outcome is recorded (True: a slot was taken); none free: wait,
        spending no retry."""
        if self.wip is None or not self.wip.capped(target.service):
            yield False
            return
        holder = f"{wf.id}:{action.step_id}:{_HOLDER_KIND[type(action)]}:{action.attempt}"
        slot: Slot | None = self.wip.acquire(target.service, holder, self.worker_id)
        if slot is None:
            log.debug("service at its WIP cap; the step waits", extra={
                "step_id": action.step_id, "service": target.service})
            raise _Backpressure(self.wip.recheck_seconds, target.service)
        try:
            yield True
        finally:
            self.wip.release(slot)

    def _carry_out(self, wf: Workflow, action: d.CallAction, target: _Target, now: datetime,
                   *, remote: bool) -> Workflow | None:
        """Starts a new attempt (unless resuming one), calls it and records its outcome.

        Local: all of it in memory, saved with the next save. Remote: the start is saved
        before calling and the outcome after; returns the workflow as saved with the
        outcome (None when the outcome was dropped).
        """
        instance: str | None = None
        if isinstance(action, d.RunStep | d.CompensateStep):
            try:
                instance = self._start(wf, target, now, remote=remote)
            except InvalidValue as e:
                if target.compensation:
                    raise
                self._fail_unresolvable_input(wf, target.step_id, e, now)
                if remote:
                    self.app.save_workflow(wf, now)
                return wf
            attempt = _current_attempt(wf, target)
        else:
            attempt = action.attempt
            if remote and isinstance(action, d.ResumeStep):
                log.info("re-invoking step left by a lost worker",
                         extra={"step_id": action.step_id, "attempt": attempt})
        outcome = self._call(wf, target, attempt, instance)
        if remote:
            return self._record(wf, target, attempt, outcome)
        self._apply_outcome(wf, target, attempt, outcome, self.clock())
        return wf

    def _start(self, wf: Workflow, target: _Target, now: datetime, *,
               remote: bool) -> str | None:
        """Starts an attempt; returns the instance it was routed to. A remote call is
        routed now, so that its start names its instance, and its start is saved before
        calling: if we die during the call, the next worker knows an attempt is in flight
        and re-invokes it with the same idempotency key."""
        if not remote:
            self._record_start(wf, target, now, None)
            return None
        with self._reservation(target) as instance:
            self._record_start(wf, target, now, instance)
            self.app.save_workflow(wf, now)
        return instance

    def _record_start(self, wf: Workflow, target: _Target, now: datetime,
                      instance: str | None) -> None:
        if target.compensation:
            wf.start_step_compensation(target.step_id, now, instance=instance, actor=self.actor)
        else:
            wf.start_step(target.step_id, now, instance=instance, actor=self.actor)

    @contextlib.contextmanager
    def _reservation(self, target: _Target) -> Iterator[str | None]:
        """Routes the call now; gives the reservation back if the start is not saved (no
        call will be made)."""
        instance = self.handler.reserve(target.service, target.operation)
        try:
            yield instance
        except BaseException:
            self._give_back(instance, target.service)
            raise

    def _give_back(self, instance: str | None, service: str) -> None:
        """Returns a reservation whose call will not be made."""
        if instance is not None:
            self.handler.release(instance, service)

    def _fail_unresolvable_input(self, wf: Workflow, step_id: str, e: InvalidValue,
                                 now: datetime) -> None:
        # The input does not resolve: no call can succeed, so fail the step for good.
        error = WorkflowError.create(step_id, wf.step(step_id).spec.service,
                                     "INPUT_MAPPING_FAILED", str(e),
                                     ErrorType.VALIDATION_ERROR, False, occurred_at=now)
        wf.handle_step_failure(step_id, error, now, actor=self.actor)

    def _call(self, wf: Workflow, target: _Target, attempt: int,
              instance: str | None) -> StepOutcome:
        """Calls the target's operation under what is left of its deadline."""
        step = wf.step(target.step_id)
        deadline = step.compensation_deadline if target.compensation else step.deadline
        if deadline is None:  # pragma: no cover - every started attempt has a deadline
            raise RuntimeError(f"step {target.step_id!r} has no attempt in flight")
        remaining = (deadline - self.clock()).total_seconds()
        if not target.compensation:
            body = step.input_data or {}
        else:
            try:
                body = wf.compensation_request(target.step_id)
            except InvalidValue as e:
                self._give_back(instance, target.service)  # no call will be made
                return StepOutcome.failure(WorkflowError.create(
                    target.step_id, target.service, "COMPENSATION_INPUT_FAILED", str(e),
                    ErrorType.VALIDATION_ERROR, False), 0)
        return self._invoke(StepCall(
            workflow_id=wf.id, step_id=target.step_id, attempt=attempt,
            service=target.service, operation=target.operation, input=body,
            timeout_s=max(remaining, 0.001), correlation_id=wf.correlation_id,
            idempotency_key=wf.idempotency_key(target.step_id,
                                               compensation=target.compensation),
            compensation=target.compensation, instance=instance,
        ))

    def _invoke(self, call: StepCall) -> StepOutcome:
        started = time.perf_counter()
        try:
            outcome = self.handler(call)
        except Exception as exc:  # handlers should not raise; if one does, it is a failure
            outcome = StepOutcome.failure(
                WorkflowError.from_exception(call.step_id, call.service, exc),
                int((time.perf_counter() - started) * 1000))
        outcome = self._within_output_limit(call, outcome)
        error = outcome.error
        STEPS_RUN.labels(call.service, call.operation,
                         "ok" if error is None else error.error_type.value).inc()
        STEP_DURATION.labels(call.service, call.operation).observe(outcome.duration_ms / 1000)
        log.log(logging.INFO if error is None else logging.WARNING, "step call %s",
                "succeeded" if error is None else "failed", extra={
                    "step_id": call.step_id, "attempt": call.attempt, "service": call.service,
                    "operation": call.operation, "compensation": call.compensation,
                    "duration_ms": outcome.duration_ms,
                    "error": error.code if error else None,
                })
        return outcome

    def _within_output_limit(self, call: StepCall, outcome: StepOutcome) -> StepOutcome:
        """The outcome, or a recorded failure naming the limit if its output is too big to
        store as an event (WES_MAX_OUTPUT_BYTES)."""
        if not outcome.ok:
            return outcome
        # `default=str` only sizes what orjson cannot write; saving it decides the rest.
        size = len(orjson.dumps(outcome.output, default=str, option=orjson.OPT_NON_STR_KEYS))
        if size <= self.max_output_bytes:
            return outcome
        return StepOutcome.failure(output_too_large(call, self.max_output_bytes, size),
                                   outcome.duration_ms, outcome.instance)

    # ------------------------------------------------------------------ outcomes

    def _apply_outcome(self, wf: Workflow, target: _Target, attempt: int,
                       outcome: StepOutcome, now: datetime) -> None:
        """Records an outcome on the aggregate; raises a DomainError if the attempt is no
        longer the current one."""
        step_id, actor, error = target.step_id, self.actor, outcome.error
        if target.compensation:
            if error is None:
                wf.mark_step_compensated(step_id, now, outcome.output, attempt=attempt,
                                         actor=actor)
            else:
                wf.handle_compensation_failure(step_id, error, now, attempt, actor=actor)
        elif error is None:
            if outcome.output is None:  # pragma: no cover - StepOutcome.success always has one
                raise TypeError(f"a successful outcome of {step_id!r} without an output")
            wf.record_step_result(
                step_id, StepResult(step_id, outcome.output, outcome.duration_ms), now,
                attempt=attempt, instance=outcome.instance, actor=actor)
        else:
            wf.handle_step_failure(step_id, error, now, attempt=attempt,
                                   instance=outcome.instance, duration_ms=outcome.duration_ms,
                                   actor=actor)

    def _record(self, in_hand: Workflow, target: _Target, attempt: int,
                outcome: StepOutcome) -> Workflow | None:
        """Records an outcome exactly once: on a conflict, reload and re-check the attempt.

        The first try applies it to the workflow in hand (as saved with the attempt's
        start): if anything was saved since, by anyone, the save conflicts and the fresh
        state decides. If the attempt is no longer the current one (it timed out, or
        another worker recorded it), the outcome is dropped: the events already say what
        happened. While the database is unavailable the outcome is kept and retried on
        fresh state (the failed save may have committed after all): the lease keeps others
        off meanwhile. Returns the workflow as saved, or None when the outcome was dropped.
        """
        first = [in_hand]  # tried on the workflow in hand first, then on fresh loads

        def record_once() -> Workflow:
            wf = first.pop() if first else self.app.get_workflow(in_hand.id)
            now = self.clock()
            self._apply_outcome(wf, target, attempt, outcome, now)
            self.app.save_workflow(wf, now)
            return wf

        backoff = Backoff(0.1, 2.0)

        def wait(error: BaseException) -> float:
            if isinstance(error, ConcurrencyConflict):
                return 0.0  # someone saved first: decide again on the fresh state at once
            log.warning("cannot record outcome yet", extra={"error": str(error)[:200]})
            return backoff.next()

        try:
            return retry(record_once, on=(ConcurrencyConflict, *UNAVAILABLE),
                         attempts=RECORD_ATTEMPTS, delay=wait)
        except DomainError as e:
            log.info("outcome dropped: attempt no longer current",
                     extra={"step_id": target.step_id, "attempt": attempt, "reason": str(e)})
        except (ConcurrencyConflict, *UNAVAILABLE):
            log.error("gave up recording an outcome; the lease will expire and the attempt "
                      "will be re-invoked", extra={"step_id": target.step_id,
                                                   "attempt": attempt})
        return None


def _outcome(end: _Quiet | _Busy | _HeldBack, saved: bool,
             last_save_removed: bool) -> DriveOutcome:
    """What the worker does with the work item after a drive."""
    match end:
        case _Quiet(wakeup=wakeup):
            if last_save_removed:
                # Saved with no wake-up (finished, or waiting for an operator): the same
                # statement deleted the work item (see Workflows.save_workflow).
                return Removed()
            return HandBack() if saved else NothingDone(wakeup)
        case _HeldBack(not_before=not_before, service=service):
            if service is not None:
                return WaitForSlot(service, not_before)
            return HandBack(not_before)
        case _Busy():
            # When still busy the work item stays due, so it is claimed again.
            return HandBack()
        case _:
            assert_never(end)


def _target(wf: Workflow, action: d.CallAction) -> _Target:
    """The operation `action` calls."""
    if isinstance(action, d.RunStep | d.ResumeStep):
        spec = wf.step(action.step_id).spec
        return _Target(action.step_id, spec.service, spec.operation, compensation=False)
    undo = wf.get_compensation_action(action.step_id)
    return _Target(action.step_id, undo.service, undo.operation, compensation=True)


def _current_attempt(wf: Workflow, target: _Target) -> int:
    step = wf.step(target.step_id)
    return step.compensation_attempts if target.compensation else step.attempts
