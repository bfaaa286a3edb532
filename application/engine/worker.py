"""Workers: competing consumers that drive workflows to the end, crash-safe.

A worker claims due items from the work queue (FOR UPDATE SKIP LOCKED, with a lease it
renews while it works), loads the workflow, asks the domain what to do next
(`domain.decisions.next_action`) and does it, saving every decision as events. Optimistic
concurrency on the aggregate is the final arbiter: whoever saves second reloads and
decides again, so a step outcome is recorded exactly once. A handler may run more than
once (a worker can die after the call and before the save), which is why every call
carries an idempotency key that names the step execution, not the try
(`<workflow_id>:<step_id>[:<run>]`, `Workflow.idempotency_key`): a service that applied
the first try answers the re-invocation and every retry with its stored answer. Every
event a worker records names it as the actor (`engine:<worker id>`).

Retries and timeouts are durable timers: their due times are in the events, and the work
queue (written in the same transaction) only says when to look again. If every worker
stops, the next one to start picks the timers up at (never before) their due time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import orjson
import psycopg
from eventsourcing import persistence as es_persistence

from application.engine.handlers import (
    DEFAULT_MAX_OUTPUT_BYTES,
    StepCall,
    StepHandler,
    StepOutcome,
    output_too_large,
)
from application.errors import ConcurrencyConflict, DatabaseUnavailable, WorkflowNotFound
from application.logs import workflow_context
from application.metrics import STEP_DURATION, STEPS_RUN
from application.wip import Slot, WipGate
from application.work_queue import Claim
from application.workflows import Workflows, utc_now
from domain import decisions as d
from domain.enums import ErrorType
from domain.exceptions import DomainError, InvalidValue
from domain.step import StepResult
from domain.workflow import Workflow
from domain.workflow_error import WorkflowError

log = logging.getLogger(__name__)

MAX_ACTIONS_PER_CLAIM = 64
# The library translates driver errors into its own; both kinds may reach us.
_TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError, DatabaseUnavailable,
              es_persistence.OperationalError, es_persistence.InterfaceError)


@dataclass
class _Drive:
    """How driving a workflow ended, for releasing its work item."""

    saved: bool = False
    wakeup: datetime | None = None  # when it next has something to do (None: never)
    idle: bool = False  # it ended with nothing to do now
    removed: bool = False  # its last save removed its work item: nothing left to release
    not_before: datetime | None = None  # backpressure: no instance can take the call
    waiting_for: str | None = None  # a capped service with no free slot (see WipGate)


class _Backpressure(Exception):
    """No instance of the step's service can take work now: wait, do not spend a retry."""

    def __init__(self, seconds: float, service: str | None = None) -> None:
        self.seconds = seconds
        self.service = service


class Worker:
    """Runs workflows; several may run at once, in threads of one process or many processes."""

    def __init__(
        self,
        app: Workflows,
        handler: StepHandler,
        *,
        worker_id: str | None = None,
        concurrency: int = 4,
        lease_seconds: float = 3.0,
        poll_seconds: float = 0.5,
        clock: Callable[[], datetime] = utc_now,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        wip: WipGate | None = None,
    ) -> None:
        self.app = app
        self.handler = handler
        self.wip = wip if wip is not None and wip.caps else None
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        # Who the events this worker records say did it (the audit's `actor`).
        self.actor = f"engine:{self.worker_id}"
        self.max_output_bytes = max_output_bytes
        self.concurrency = max(1, concurrency)
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.clock = clock
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._held: set[UUID] = set()
        self._held_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.steps_run = 0

    # ------------------------------------------------------------------ running

    def start(self) -> None:
        """Starts the claim loops, the lease renewer and the wake-up listener in threads."""
        self._stopping.clear()
        targets: list[tuple[str, Callable[[], None]]] = [
            (f"wes-worker-{i}", self._loop) for i in range(self.concurrency)
        ]
        targets += [("wes-lease-renewer", self._renew_loop), ("wes-waker", self._listen_loop)]
        for name, target in targets:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("worker started", extra={"worker_id": self.worker_id,
                                          "concurrency": self.concurrency})

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful stop: no new claims; steps in flight finish and are recorded; leases go."""
        self._stopping.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = []
        log.info("worker stopped", extra={"worker_id": self.worker_id})

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                if not self.run_once(limit=1):
                    self._sleep_until_work()
                backoff = 0.1
            except _TRANSIENT as e:
                log.warning("database unavailable, retrying in %.1f s", backoff,
                            extra={"error": str(e)[:200]})
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception:  # the loop must survive anything one workflow throws
                log.exception("worker loop error")
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _sleep_until_work(self) -> None:
        timeout = self.poll_seconds
        nxt = self.app.store.work_queue.next_due()  # a database error goes to the loop's backoff
        if nxt is not None:
            timeout = max(0.0, min(timeout, (nxt - self.clock()).total_seconds()))
        if timeout > 0:
            self._wake.wait(timeout)
        self._wake.clear()

    def _listen_loop(self) -> None:
        """LISTENs on the event store's channel: a new event may mean new work."""
        while not self._stopping.is_set():
            try:
                self.app.store.wait_for_appends(self._stopping, self._wake.set)
            except Exception:  # reconnect after a database restart
                self._stopping.wait(1.0)

    def _renew_loop(self) -> None:
        interval = max(self.lease_seconds / 3, 0.05)
        while not self._stopping.wait(interval):
            with self._held_lock:
                held = list(self._held)
            try:
                self.app.store.work_queue.renew(self.worker_id, held, self.lease_seconds)
                if self.wip is not None:
                    self.wip.renew(self.worker_id)
            except Exception as e:
                log.warning("lease renewal failed", extra={"error": str(e)[:200]})

    # ------------------------------------------------------------------ one claim

    def run_once(self, limit: int = 1) -> int:
        """Claims up to `limit` due workflows and drives each as far as it can go now."""
        claims = self.app.store.work_queue.claim(self.worker_id, self.clock(), limit, self.lease_seconds)
        for claim in claims:
            with self._held_lock:
                self._held.add(claim.workflow_id)
            result = _Drive()
            try:
                result = self.drive(claim.workflow_id)
            finally:
                with self._held_lock:
                    self._held.discard(claim.workflow_id)
                self._release(claim, result)
        return len(claims)

    def _release(self, claim: Claim, result: _Drive) -> None:
        if result.removed:
            return  # the save that ended it deleted the item, and our lease with it
        for attempt in range(20):
            try:
                if result.idle and not result.saved and self.app.store.work_queue.settle(
                        self.worker_id, claim.workflow_id, claim.due_at, result.wakeup):
                    # Nothing to do and nothing saved: the item was stale (a repair, say);
                    # now it says when the workflow next has work, or is gone.
                    return
                if result.waiting_for is not None and self.wip is not None:
                    self.wip.hold(claim.workflow_id, result.waiting_for, self.worker_id)
                    return
                self.app.store.work_queue.release(self.worker_id, claim.workflow_id, result.not_before)
                return
            except _TRANSIENT:
                # Unreleased, the lease simply expires; retry briefly to hand over sooner.
                time.sleep(min(0.1 * 2 ** attempt, 2.0))
                if self._stopping.is_set():
                    return

    def drive(self, workflow_id: UUID) -> _Drive:
        """Takes actions for one workflow until it must wait (timer, operator, or done).

        Decisions that call nothing (start, complete, fail, time out, begin or finish
        compensating) and local steps (Python handlers registered as local activities) are
        applied to the aggregate in memory and saved together, in one transaction, before
        the next remote call or when the workflow must wait. A remote call always has its
        StepStarted saved first. The aggregate is reused after our own saves; a concurrent
        change shows up as a conflict on the next save, and then we reload and decide again
        (unsaved local results are dropped and their handlers run again: at-least-once).
        """
        wf: Workflow | None = None
        unsaved = False
        result = _Drive()
        try:
            for taken in range(MAX_ACTIONS_PER_CLAIM):
                if taken and self._stopping.is_set():
                    break  # shutting down: what is in hand gets saved below
                if wf is None:
                    try:
                        wf = self.app.get_workflow(workflow_id)
                    except WorkflowNotFound:
                        result.idle = True
                        return result
                now = self.clock()
                action = d.next_action(wf, now)
                if action.kind in (d.IDLE, d.WAIT):
                    result.idle = True
                    result.wakeup = d.wakeup_at(wf, now)
                    break
                with workflow_context(workflow_id=wf.id, correlation_id=wf.correlation_id):
                    try:
                        if self._decide_in_memory(wf, action, now):
                            unsaved = True
                            continue
                        if unsaved:
                            self.app.save_workflow(wf, now)
                            result.saved, unsaved = True, False
                        self._check_capacity(wf, action)
                        with self._wip_slot(wf, action) as took_slot:
                            # A start saved after taking a slot is stamped after it too.
                            # The aggregate the outcome was saved on, to decide on (None:
                            # it was not saved by us, so load it again).
                            wf = self._act(wf, action, self.clock() if took_slot else now)
                        result.saved = True
                    except _Backpressure as e:
                        if e.service is None:  # (a WIP wait logged itself, at debug)
                            log.info("no instance can take the call; waiting %.1f s",
                                     e.seconds, extra={"step_id": action.step_id})
                        result.not_before = self.clock() + timedelta(seconds=e.seconds)
                        result.waiting_for = e.service
                        break
                    except ConcurrencyConflict:
                        wf, unsaved = None, False  # someone else changed it first
                    except DomainError as e:
                        # The fresh state no longer allows what we decided (paused, say).
                        log.info("decision no longer applies", extra={"reason": str(e)})
                        wf, unsaved = None, False
        finally:
            if unsaved and wf is not None:
                # On a conflict the work item stays due: the next claim decides again.
                with contextlib.suppress(ConcurrencyConflict):
                    self.app.save_workflow(wf, self.clock())
                    result.saved = True
                    # Saved with no wake-up (finished, or waiting for an operator): the same
                    # statement deleted the work item (see Workflows.save_workflow).
                    result.removed = result.idle and result.wakeup is None
        # When still busy the work item stays due, so it is claimed again.
        return result

    def _check_capacity(self, wf: Workflow, action: d.Action) -> None:
        """Before a remote call starts an attempt: if no instance of the service can take
        work (all overloaded or circuits open), wait instead of spending a retry."""
        if action.kind not in (d.RUN_STEP, d.COMPENSATE_STEP) or action.step_id is None:
            return
        if action.kind == d.RUN_STEP:
            service = wf.step(action.step_id).spec.service
        else:
            service = wf.get_compensation_action(action.step_id).service
        unavailable_for = getattr(self.handler, "unavailable_for", None)
        seconds = unavailable_for(service) if unavailable_for else None
        if seconds:
            raise _Backpressure(seconds)

    @contextlib.contextmanager
    def _wip_slot(self, wf: Workflow, action: d.Action) -> Iterator[bool]:
        """Holds a slot of a capped service (WES_WIP_CAPS) from before the step's start is
        saved until its outcome is recorded (True: a slot was taken); none free: wait,
        spending no retry."""
        service = self._called_service(wf, action)
        if self.wip is None or service is None or not self.wip.capped(service):
            yield False
            return
        holder = f"{wf.id}:{action.step_id}:{action.kind}:{action.attempt}"
        slot: Slot | None = self.wip.acquire(service, holder, self.worker_id)
        if slot is None:
            log.debug("service at its WIP cap; the step waits", extra={
                "step_id": action.step_id, "service": service})
            raise _Backpressure(self.wip.recheck_seconds, service)
        try:
            yield True
        finally:
            self.wip.release(slot)

    @staticmethod
    def _called_service(wf: Workflow, action: d.Action) -> str | None:
        """The service an action calls (None for decisions that call nothing)."""
        if action.step_id is None:
            return None
        if action.kind in (d.RUN_STEP, d.RESUME_STEP):
            return wf.step(action.step_id).spec.service
        if action.kind in (d.COMPENSATE_STEP, d.RESUME_COMPENSATION):
            return wf.get_compensation_action(action.step_id).service
        return None

    def _decide_in_memory(self, wf: Workflow, action: d.Action, now: datetime) -> bool:
        """Applies a decision that needs no remote call; False if it needs one."""
        kind = action.kind
        if kind == d.START:
            wf.start(now, actor=self.actor)
        elif kind == d.COMPLETE:
            wf.complete(now, actor=self.actor)
            log.info("workflow completed")
        elif kind == d.FAIL:
            assert action.step_id is not None
            wf.fail_failed_step(action.step_id, now, actor=self.actor)
        elif kind == d.START_COMPENSATION:
            wf.compensate(now, reason=wf.cancel_reason or "failed", actor=self.actor)
        elif kind == d.COMPLETE_COMPENSATION:
            wf.complete_compensation(now, actor=self.actor)
            log.info("workflow compensated")
        elif kind == d.TIMEOUT_STEP:
            assert action.step_id is not None
            step = wf.step(action.step_id)
            error = WorkflowError.create(
                action.step_id, step.spec.service, "STEP_TIMEOUT",
                f"step {action.step_id!r} attempt {action.attempt} passed its deadline "
                f"({step.spec.timeout_ms} ms)", ErrorType.TIMEOUT, True, occurred_at=now)
            wf.handle_step_failure(action.step_id, error, now, attempt=action.attempt,
                                   actor=self.actor)
        elif kind == d.TIMEOUT_COMPENSATION:
            assert action.step_id is not None
            action_def = wf.get_compensation_action(action.step_id)
            error = WorkflowError.create(
                action.step_id, action_def.service, "COMPENSATION_TIMEOUT",
                f"compensation of {action.step_id!r} passed its deadline", ErrorType.TIMEOUT,
                True, occurred_at=now)
            wf.handle_compensation_failure(action.step_id, error, now, attempt=action.attempt,
                                           actor=self.actor)
        elif kind in (d.RUN_STEP, d.RESUME_STEP) and self._is_local_step(wf, action):
            assert action.step_id is not None
            self._run_local_step(wf, action, now)
        elif kind in (d.COMPENSATE_STEP, d.RESUME_COMPENSATION) \
                and self._is_local_compensation(wf, action):
            assert action.step_id is not None
            self._run_local_compensation(wf, action, now)
        else:
            return False
        return True

    def _is_local_step(self, wf: Workflow, action: d.Action) -> bool:
        spec = wf.step(action.step_id or "").spec
        return self._local(spec.service, spec.operation)

    def _is_local_compensation(self, wf: Workflow, action: d.Action) -> bool:
        compensation = wf.get_compensation_action(action.step_id or "")
        return self._local(compensation.service, compensation.operation)

    def _local(self, service: str, operation: str) -> bool:
        if self.wip is not None and self.wip.capped(service):
            return False  # a capped service's steps take a slot: their start is saved first
        is_local = getattr(self.handler, "is_local", None)
        return bool(is_local and is_local(service, operation))

    def _run_local_step(self, wf: Workflow, action: d.Action, now: datetime) -> None:
        """A local activity: start, call and outcome recorded together, in memory."""
        step_id = action.step_id or ""
        if action.kind == d.RUN_STEP:
            try:
                wf.start_step(step_id, now, actor=self.actor)
            except InvalidValue as e:
                self._fail_unresolvable_input(wf, step_id, e, now)
                return
        outcome = self._invoke(self._step_call(wf, step_id, wf.step(step_id).attempts))
        self.steps_run += 1
        self._apply_outcome(wf, step_id, wf.step(step_id).attempts, outcome, self.clock(),
                            compensation=False)

    def _run_local_compensation(self, wf: Workflow, action: d.Action, now: datetime) -> None:
        step_id = action.step_id or ""
        if action.kind == d.COMPENSATE_STEP:
            wf.start_step_compensation(step_id, now, actor=self.actor)
        attempt = wf.step(step_id).compensation_attempts
        outcome = self._compensation_outcome(wf, step_id, attempt)
        self._apply_outcome(wf, step_id, attempt, outcome, self.clock(), compensation=True)

    def _act(self, wf: Workflow, action: d.Action, now: datetime) -> Workflow | None:
        """A remote call: its start is saved before calling, its outcome after; returns
        the workflow as saved with the outcome (None when the outcome was dropped)."""
        kind = action.kind
        assert action.step_id is not None
        if kind == d.RUN_STEP:
            return self._run_step(wf, action.step_id, now)
        elif kind == d.RESUME_STEP:
            assert action.attempt is not None
            log.info("re-invoking step left by a lost worker",
                     extra={"step_id": action.step_id, "attempt": action.attempt})
            return self._call_and_record(wf, action.step_id, action.attempt)
        elif kind == d.COMPENSATE_STEP:
            return self._run_compensation(wf, action.step_id, now)
        elif kind == d.RESUME_COMPENSATION:
            assert action.attempt is not None
            return self._call_compensation_and_record(wf, action.step_id, action.attempt)
        else:  # pragma: no cover - next_action returns only the kinds handled above
            raise AssertionError(f"unknown action {kind}")

    # ------------------------------------------------------------------ steps

    def _fail_unresolvable_input(self, wf: Workflow, step_id: str, e: InvalidValue,
                                 now: datetime) -> None:
        # The input does not resolve: no call can succeed, so fail the step for good.
        error = WorkflowError.create(step_id, wf.step(step_id).spec.service,
                                     "INPUT_MAPPING_FAILED", str(e),
                                     ErrorType.VALIDATION_ERROR, False, occurred_at=now)
        wf.handle_step_failure(step_id, error, now, actor=self.actor)

    def _run_step(self, wf: Workflow, step_id: str, now: datetime) -> Workflow | None:
        spec = wf.step(step_id).spec
        try:
            with self._reservation(spec.service, spec.operation) as instance:
                wf.start_step(step_id, now, instance=instance, actor=self.actor)
                # Record the start before calling: if we die during the call, the next
                # worker knows an attempt is in flight and re-invokes it with the same
                # idempotency key.
                self.app.save_workflow(wf, now)
        except InvalidValue as e:  # the input does not resolve: nothing was started
            self._fail_unresolvable_input(wf, step_id, e, now)
            self.app.save_workflow(wf, now)
            return wf
        return self._call_and_record(wf, step_id, wf.step(step_id).attempts, instance)

    @contextlib.contextmanager
    def _reservation(self, service: str, operation: str) -> Iterator[str | None]:
        """Routes the call now, so that the step's start names its instance; gives the
        reservation back if the start is not saved (no call will be made)."""
        reserve = getattr(self.handler, "reserve", None)
        instance = reserve(service, operation) if reserve is not None else None
        try:
            yield instance
        except BaseException:
            self._give_back(instance, service)
            raise

    def _give_back(self, instance: str | None, service: str) -> None:
        """Returns a reservation whose call will not be made."""
        release = getattr(self.handler, "release", None)
        if instance is not None and release is not None:
            release(instance, service)

    def _step_call(self, wf: Workflow, step_id: str, attempt: int,
                   instance: str | None = None) -> StepCall:
        step = wf.step(step_id)
        assert step.deadline is not None
        remaining = (step.deadline - self.clock()).total_seconds()
        return StepCall(
            workflow_id=wf.id, step_id=step_id, attempt=attempt, service=step.spec.service,
            operation=step.spec.operation, input=step.input_data or {},
            timeout_s=max(remaining, 0.001), correlation_id=wf.correlation_id,
            idempotency_key=wf.idempotency_key(step_id), instance=instance,
        )

    def _call_and_record(self, wf: Workflow, step_id: str, attempt: int,
                         instance: str | None = None) -> Workflow | None:
        outcome = self._invoke(self._step_call(wf, step_id, attempt, instance))
        self.steps_run += 1
        return self._record(wf, step_id, attempt, outcome, compensation=False)

    def _run_compensation(self, wf: Workflow, step_id: str, now: datetime) -> Workflow | None:
        action = wf.get_compensation_action(step_id)
        with self._reservation(action.service, action.operation) as instance:
            wf.start_step_compensation(step_id, now, instance=instance, actor=self.actor)
            self.app.save_workflow(wf, now)
        return self._call_compensation_and_record(
            wf, step_id, wf.step(step_id).compensation_attempts, instance)

    def _call_compensation_and_record(self, wf: Workflow, step_id: str, attempt: int,
                                      instance: str | None = None) -> Workflow | None:
        outcome = self._compensation_outcome(wf, step_id, attempt, instance)
        return self._record(wf, step_id, attempt, outcome, compensation=True)

    def _compensation_outcome(self, wf: Workflow, step_id: str, attempt: int,
                              instance: str | None = None) -> StepOutcome:
        step = wf.step(step_id)
        action = wf.get_compensation_action(step_id)
        assert step.compensation_deadline is not None
        remaining = (step.compensation_deadline - self.clock()).total_seconds()
        try:
            body = wf.compensation_request(step_id)
        except InvalidValue as e:
            self._give_back(instance, action.service)  # no call will be made
            return StepOutcome.failure(WorkflowError.create(
                step_id, action.service, "COMPENSATION_INPUT_FAILED", str(e),
                ErrorType.VALIDATION_ERROR, False), 0)
        return self._invoke(StepCall(
            workflow_id=wf.id, step_id=step_id, attempt=attempt, service=action.service,
            operation=action.operation, input=body, timeout_s=max(remaining, 0.001),
            correlation_id=wf.correlation_id,
            idempotency_key=wf.idempotency_key(step_id, compensation=True), compensation=True,
            instance=instance,
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
        STEPS_RUN.labels(call.service, call.operation,
                         "ok" if outcome.ok else outcome.error.error_type.value  # type: ignore[union-attr]
                         ).inc()
        STEP_DURATION.labels(call.service, call.operation).observe(outcome.duration_ms / 1000)
        level = logging.INFO if outcome.ok else logging.WARNING
        log.log(level, "step call %s", "succeeded" if outcome.ok else "failed", extra={
            "step_id": call.step_id, "attempt": call.attempt, "service": call.service,
            "operation": call.operation, "compensation": call.compensation,
            "duration_ms": outcome.duration_ms,
            "error": outcome.error.code if outcome.error else None,
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

    def _apply_outcome(self, wf: Workflow, step_id: str, attempt: int, outcome: StepOutcome,
                       now: datetime, *, compensation: bool) -> None:
        """Records an outcome on the aggregate; raises a DomainError if the attempt is no
        longer the current one."""
        actor = self.actor
        if compensation:
            if outcome.ok:
                wf.mark_step_compensated(step_id, now, outcome.output, attempt=attempt,
                                         actor=actor)
            else:
                assert outcome.error is not None
                wf.handle_compensation_failure(step_id, outcome.error, now, attempt,
                                               actor=actor)
        elif outcome.ok:
            assert outcome.output is not None
            wf.record_step_result(step_id, StepResult(step_id, outcome.output, outcome.duration_ms),
                                  now, attempt=attempt, instance=outcome.instance, actor=actor)
        else:
            assert outcome.error is not None
            wf.handle_step_failure(step_id, outcome.error, now, attempt=attempt,
                                   instance=outcome.instance, duration_ms=outcome.duration_ms,
                                   actor=actor)

    def _record(self, in_hand: Workflow, step_id: str, attempt: int, outcome: StepOutcome,
                *, compensation: bool) -> Workflow | None:
        """Records an outcome exactly once: on a conflict, reload and re-check the attempt.

        The first try applies it to the workflow in hand (as saved with the attempt's
        start): if anything was saved since, by anyone, the save conflicts and the fresh
        state decides. If the attempt is no longer the current one (it timed out, or
        another worker recorded it), the outcome is dropped: the events already say what
        happened. Returns the workflow as saved, or None when the outcome was dropped.
        """
        workflow_id = in_hand.id
        wf: Workflow | None = in_hand
        backoff = 0.1
        for _ in range(50):
            try:
                if wf is None:
                    wf = self.app.get_workflow(workflow_id)
                now = self.clock()
                self._apply_outcome(wf, step_id, attempt, outcome, now,
                                    compensation=compensation)
                self.app.save_workflow(wf, now)
                return wf
            except ConcurrencyConflict:
                wf = None
                continue
            except DomainError as e:
                log.info("outcome dropped: attempt no longer current",
                         extra={"step_id": step_id, "attempt": attempt, "reason": str(e)})
                return None
            except _TRANSIENT as e:
                # Keep the outcome and retry on fresh state (the failed save may have
                # committed after all): the lease keeps others off meanwhile.
                log.warning("cannot record outcome yet", extra={"error": str(e)[:200]})
                wf = None
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
        log.error("gave up recording an outcome; the lease will expire and the attempt "
                  "will be re-invoked", extra={"step_id": step_id, "attempt": attempt})
        return None

