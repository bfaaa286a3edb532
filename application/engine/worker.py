"""Workers: competing consumers that drive workflows to the end, crash-safe.

A worker claims due items from the work queue (FOR UPDATE SKIP LOCKED, with a lease it
renews while it works), loads the workflow, asks the domain what to do next
(`domain.decisions.next_action`) and does it, saving every decision as events. Optimistic
concurrency on the aggregate is the final arbiter: whoever saves second reloads and
decides again, so a step outcome is recorded exactly once. A handler may run more than
once (a worker can die after the call and before the save), which is why every call
carries the idempotency key `<workflow_id>:<step_id>:<attempt>`.

Retries and timeouts are durable timers: their due times are in the events, and the work
queue (written in the same transaction) only says when to look again. If every worker
stops, the next one to start picks the timers up at (never before) their due time.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

import psycopg

from application.engine.handlers import StepCall, StepHandler, StepOutcome
from application.errors import ConcurrencyConflict, DatabaseUnavailable, WorkflowNotFound
from application.logs import workflow_context
from application.metrics import STEP_DURATION, STEPS_RUN
from application.workflows import Workflows, utc_now
from domain import decisions as d
from domain.enums import ErrorType
from domain.exceptions import DomainError, InvalidValue
from domain.step import StepResult
from domain.workflow import Workflow
from domain.workflow_error import WorkflowError

log = logging.getLogger(__name__)

MAX_ACTIONS_PER_CLAIM = 64
_TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError, DatabaseUnavailable)


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
    ) -> None:
        self.app = app
        self.handler = handler
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
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
                claimed = self.run_once(limit=1)
                backoff = 0.1
            except _TRANSIENT as e:
                log.warning("database unavailable, retrying", extra={"error": str(e)[:200]})
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            except Exception:  # the loop must survive anything one workflow throws
                log.exception("worker loop error")
                self._stopping.wait(0.5)
                continue
            if not claimed:
                self._sleep_until_work()

    def _sleep_until_work(self) -> None:
        timeout = self.poll_seconds
        try:
            nxt = self.app.store.next_due()
        except _TRANSIENT:
            nxt = None
        if nxt is not None:
            timeout = max(0.0, min(timeout, (nxt - self.clock()).total_seconds()))
        if timeout > 0:
            self._wake.wait(timeout)
        self._wake.clear()

    def _listen_loop(self) -> None:
        """LISTENs on the event store's channel: a new event may mean new work."""
        store = self.app.store
        while not self._stopping.is_set():
            try:
                with store.datastore.get_connection() as conn:
                    conn.execute(psycopg.sql.SQL("LISTEN {}").format(
                        psycopg.sql.Identifier(store.channel_name)))
                    conn.commit()
                    while not self._stopping.is_set():
                        for _ in conn.notifies(timeout=0.5, stop_after=1):
                            self._wake.set()
            except Exception:
                self._stopping.wait(1.0)

    def _renew_loop(self) -> None:
        interval = max(self.lease_seconds / 3, 0.05)
        while not self._stopping.wait(interval):
            with self._held_lock:
                held = list(self._held)
            try:
                self.app.store.renew(self.worker_id, held, self.lease_seconds)
            except Exception as e:
                log.warning("lease renewal failed", extra={"error": str(e)[:200]})

    # ------------------------------------------------------------------ one claim

    def run_once(self, limit: int = 1) -> int:
        """Claims up to `limit` due workflows and drives each as far as it can go now."""
        claims = self.app.store.claim(self.worker_id, self.clock(), limit, self.lease_seconds)
        for claim in claims:
            with self._held_lock:
                self._held.add(claim.workflow_id)
            try:
                self.drive(claim.workflow_id)
            finally:
                with self._held_lock:
                    self._held.discard(claim.workflow_id)
                self._release(claim.workflow_id)
        return len(claims)

    def _release(self, workflow_id: UUID) -> None:
        for attempt in range(20):
            try:
                self.app.store.release(self.worker_id, workflow_id)
                return
            except _TRANSIENT:
                # Unreleased, the lease simply expires; retry briefly to hand over sooner.
                time.sleep(min(0.1 * 2 ** attempt, 2.0))
                if self._stopping.is_set():
                    return

    def drive(self, workflow_id: UUID) -> None:
        """Takes actions for one workflow until it must wait (timer, operator, or done)."""
        for taken in range(MAX_ACTIONS_PER_CLAIM):
            if taken and self._stopping.is_set():
                return  # shutting down: the step in hand is recorded; others take the rest
            try:
                wf = self.app.get_workflow(workflow_id)
            except WorkflowNotFound:
                return
            now = self.clock()
            action = d.next_action(wf, now)
            if action.kind in (d.IDLE, d.WAIT):
                # The last save already put the right wake-up time in the queue.
                return
            with workflow_context(workflow_id=wf.id, correlation_id=wf.correlation_id):
                try:
                    self._act(wf, action, now)
                except ConcurrencyConflict:
                    continue  # someone else changed it first: decide again on fresh state
                except DomainError as e:
                    # The fresh state no longer allows what we decided (e.g. paused meanwhile).
                    log.info("decision no longer applies", extra={"reason": str(e)})
                    continue
        # Still busy: leave it due so it is claimed again (by us or another worker).

    def _act(self, wf: Workflow, action: d.Action, now: datetime) -> None:
        kind = action.kind
        if kind == d.START:
            wf.start(now, actor="engine")
            self.app.save_workflow(wf, now)
        elif kind == d.RUN_STEP:
            assert action.step_id is not None
            self._run_step(wf, action.step_id, now)
        elif kind == d.RESUME_STEP:
            assert action.step_id is not None and action.attempt is not None
            log.info("re-invoking step left by a lost worker",
                     extra={"step_id": action.step_id, "attempt": action.attempt})
            self._call_and_record(wf, action.step_id, action.attempt)
        elif kind == d.TIMEOUT_STEP:
            assert action.step_id is not None
            step = wf.step(action.step_id)
            error = WorkflowError.create(
                action.step_id, step.spec.service, "STEP_TIMEOUT",
                f"step {action.step_id!r} attempt {action.attempt} passed its deadline "
                f"({step.spec.timeout_ms} ms)", ErrorType.TIMEOUT, True, occurred_at=now)
            wf.handle_step_failure(action.step_id, error, now, attempt=action.attempt)
            self.app.save_workflow(wf, now)
        elif kind == d.FAIL:
            assert action.step_id is not None
            wf.fail_failed_step(action.step_id, now)
            self.app.save_workflow(wf, now)
        elif kind == d.COMPLETE:
            wf.complete(now)
            self.app.save_workflow(wf, now)
            log.info("workflow completed")
        elif kind == d.START_COMPENSATION:
            wf.compensate(now, reason=wf.cancel_reason or "failed")
            self.app.save_workflow(wf, now)
        elif kind == d.COMPENSATE_STEP:
            assert action.step_id is not None
            self._run_compensation(wf, action.step_id, now)
        elif kind == d.RESUME_COMPENSATION:
            assert action.step_id is not None and action.attempt is not None
            self._call_compensation_and_record(wf, action.step_id, action.attempt)
        elif kind == d.TIMEOUT_COMPENSATION:
            assert action.step_id is not None
            action_def = wf.get_compensation_action(action.step_id)
            error = WorkflowError.create(
                action.step_id, action_def.service, "COMPENSATION_TIMEOUT",
                f"compensation of {action.step_id!r} passed its deadline", ErrorType.TIMEOUT,
                True, occurred_at=now)
            wf.handle_compensation_failure(action.step_id, error, now, attempt=action.attempt)
            self.app.save_workflow(wf, now)
        elif kind == d.COMPLETE_COMPENSATION:
            wf.complete_compensation(now)
            self.app.save_workflow(wf, now)
            log.info("workflow compensated")
        else:  # pragma: no cover - next_action returns only the kinds above
            raise AssertionError(f"unknown action {kind}")

    # ------------------------------------------------------------------ steps

    def _run_step(self, wf: Workflow, step_id: str, now: datetime) -> None:
        try:
            wf.start_step(step_id, now)
        except InvalidValue as e:
            # The input does not resolve: no call can succeed, so fail the step for good.
            error = WorkflowError.create(step_id, wf.step(step_id).spec.service,
                                         "INPUT_MAPPING_FAILED", str(e),
                                         ErrorType.VALIDATION_ERROR, False, occurred_at=now)
            wf.handle_step_failure(step_id, error, now)
            self.app.save_workflow(wf, now)
            return
        # Record the start before calling: if we die during the call, the next worker
        # knows an attempt is in flight and re-invokes it with the same idempotency key.
        self.app.save_workflow(wf, now)
        self._call_and_record(wf, step_id, wf.step(step_id).attempts)

    def _call_and_record(self, wf: Workflow, step_id: str, attempt: int) -> None:
        step = wf.step(step_id)
        assert step.deadline is not None
        remaining = (step.deadline - self.clock()).total_seconds()
        call = StepCall(
            workflow_id=wf.id, step_id=step_id, attempt=attempt, service=step.spec.service,
            operation=step.spec.operation, input=step.input_data or {},
            timeout_s=max(remaining, 0.001), correlation_id=wf.correlation_id,
        )
        outcome = self._invoke(call)
        self.steps_run += 1
        self._record(wf.id, step_id, attempt, outcome, compensation=False)

    def _run_compensation(self, wf: Workflow, step_id: str, now: datetime) -> None:
        wf.start_step_compensation(step_id, now)
        self.app.save_workflow(wf, now)
        self._call_compensation_and_record(wf, step_id, wf.step(step_id).compensation_attempts)

    def _call_compensation_and_record(self, wf: Workflow, step_id: str, attempt: int) -> None:
        step = wf.step(step_id)
        action = wf.get_compensation_action(step_id)
        assert step.compensation_deadline is not None
        remaining = (step.compensation_deadline - self.clock()).total_seconds()
        try:
            body = wf.compensation_request(step_id)
        except InvalidValue as e:
            outcome = StepOutcome.failure(WorkflowError.create(
                step_id, action.service, "COMPENSATION_INPUT_FAILED", str(e),
                ErrorType.VALIDATION_ERROR, False), 0)
        else:
            call = StepCall(
                workflow_id=wf.id, step_id=step_id, attempt=attempt, service=action.service,
                operation=action.operation, input=body, timeout_s=max(remaining, 0.001),
                correlation_id=wf.correlation_id, compensation=True,
            )
            outcome = self._invoke(call)
        self._record(wf.id, step_id, attempt, outcome, compensation=True)

    def _invoke(self, call: StepCall) -> StepOutcome:
        started = time.perf_counter()
        try:
            outcome = self.handler(call)
        except Exception as exc:  # handlers should not raise; if one does, it is a failure
            outcome = StepOutcome.failure(
                WorkflowError.from_exception(call.step_id, call.service, exc),
                int((time.perf_counter() - started) * 1000))
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

    def _record(self, workflow_id: UUID, step_id: str, attempt: int, outcome: StepOutcome,
                *, compensation: bool) -> None:
        """Records an outcome exactly once: on a conflict, reload and re-check the attempt.

        If the attempt is no longer the current one (it timed out, or another worker
        recorded it), the outcome is dropped: the events already say what happened.
        """
        backoff = 0.1
        for _ in range(50):
            try:
                wf = self.app.get_workflow(workflow_id)
                now = self.clock()
                if compensation:
                    if outcome.ok:
                        wf.mark_step_compensated(step_id, now, outcome.output, attempt=attempt)
                    else:
                        assert outcome.error is not None
                        wf.handle_compensation_failure(step_id, outcome.error, now, attempt)
                elif outcome.ok:
                    assert outcome.output is not None
                    wf.record_step_result(
                        step_id, StepResult(step_id, outcome.output, outcome.duration_ms), now,
                        attempt=attempt, instance=outcome.instance)
                else:
                    assert outcome.error is not None
                    wf.handle_step_failure(step_id, outcome.error, now, attempt=attempt,
                                           instance=outcome.instance,
                                           duration_ms=outcome.duration_ms)
                self.app.save_workflow(wf, now)
                return
            except ConcurrencyConflict:
                continue
            except DomainError as e:
                log.info("outcome dropped: attempt no longer current",
                         extra={"step_id": step_id, "attempt": attempt, "reason": str(e)})
                return
            except _TRANSIENT as e:
                # Keep the outcome and retry: the lease keeps others off meanwhile.
                log.warning("cannot record outcome yet", extra={"error": str(e)[:200]})
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
        log.error("gave up recording an outcome; the lease will expire and the attempt "
                  "will be re-invoked", extra={"step_id": step_id, "attempt": attempt})

