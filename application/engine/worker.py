"""Workers: competing consumers that drive workflows to the end, crash-safe.

A worker claims due items from the work queue (FOR UPDATE SKIP LOCKED, with a lease it
renews while it works), has its driver take the workflow as far as it can go now
(`application.engine.driver`), and hands the item back as the drive's outcome says. A
handler may run more than once (a worker can die after the call and before the save),
which is why every call carries an idempotency key that names the step execution, not the
try (`<workflow_id>:<step_id>[:<run>]`, `Workflow.idempotency_key`): a service that applied
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
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

from application.engine.driver import (
    DriveOutcome,
    Driver,
    HandBack,
    NothingDone,
    Removed,
    WaitForSlot,
)
from application.engine.ports import DEFAULT_MAX_OUTPUT_BYTES, StepHandler
from application.engine.retrying import Backoff, retry
from application.pool import UNAVAILABLE
from application.wip import WipGate
from application.work_queue import Claim
from application.workflows import Workflows, utc_now

log = logging.getLogger(__name__)

RELEASE_ATTEMPTS = 20


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
        self.wip = wip if wip is not None and wip.caps else None
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        # Who the events this worker records say did it (the audit's `actor`).
        self.actor = f"engine:{self.worker_id}"
        self.concurrency = max(1, concurrency)
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.clock = clock
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._held: set[UUID] = set()
        self._held_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.driver = Driver(app, handler, actor=self.actor, worker_id=self.worker_id,
                             clock=clock, max_output_bytes=max_output_bytes, wip=self.wip,
                             stopping=self._stopping)

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
        backoff = Backoff(0.1, 5.0)
        while not self._stopping.is_set():
            try:
                if not self.run_once(limit=1):
                    self._sleep_until_work()
                backoff.reset()
            except UNAVAILABLE as e:
                delay = backoff.next()
                log.warning("database unavailable, retrying in %.1f s", delay,
                            extra={"error": str(e)[:200]})
                self._stopping.wait(delay)
            except Exception:  # the loop must survive anything one workflow throws
                log.exception("worker loop error")
                self._stopping.wait(backoff.next())

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
        claims = self.app.store.work_queue.claim(
            self.worker_id, self.clock(), limit, self.lease_seconds)
        for claim in claims:
            with self._held_lock:
                self._held.add(claim.workflow_id)
            outcome: DriveOutcome = HandBack()  # (if the drive raised: due again at once)
            try:
                outcome = self.drive(claim.workflow_id)
            finally:
                with self._held_lock:
                    self._held.discard(claim.workflow_id)
                self._release(claim, outcome)
        return len(claims)

    def drive(self, workflow_id: UUID) -> DriveOutcome:
        """Takes actions for one workflow until it must wait (see Driver.drive)."""
        return self.driver.drive(workflow_id)

    def _release(self, claim: Claim, outcome: DriveOutcome) -> None:
        """Hands the work item back as the drive's outcome says, retrying briefly while
        the database is unavailable; unreleased, the lease simply expires."""
        backoff = Backoff(0.1, 2.0)
        with contextlib.suppress(*UNAVAILABLE):  # another worker takes it when it expires
            retry(lambda: self._hand_back(claim, outcome), on=UNAVAILABLE,
                  attempts=RELEASE_ATTEMPTS, delay=lambda _: backoff.next(),
                  stopped=self._stopping.is_set)

    def _hand_back(self, claim: Claim, outcome: DriveOutcome) -> None:
        queue, workflow_id = self.app.store.work_queue, claim.workflow_id
        match outcome:
            case Removed():
                return  # the save that ended it deleted the item, and our lease with it
            case NothingDone(wakeup=wakeup):
                # The item was stale (a repair, say); now it says when the workflow next
                # has work, or is gone.
                if not queue.settle(self.worker_id, workflow_id, claim.due_at, wakeup):
                    queue.release(self.worker_id, workflow_id, None)
            case WaitForSlot(service=service, not_before=not_before):
                if self.wip is not None:
                    self.wip.hold(workflow_id, service, self.worker_id)
                else:
                    queue.release(self.worker_id, workflow_id, not_before)
            case HandBack(not_before=not_before):
                queue.release(self.worker_id, workflow_id, not_before)

