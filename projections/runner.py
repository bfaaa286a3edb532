"""The projector: keeps the read models up to date, live, from the event store.

One thread per projection. Each holds a shared *presence* lock and tries for the exclusive
*active* advisory lock of its projection (see `locks`): the process that gets it catches up
in large batches, then follows the event store through the library's LISTEN/NOTIFY
subscription, one transaction per event. The others wait on standby and take over when the
active process dies, because PostgreSQL frees a dead session's locks at once. Even if two
processes ever ran at once, the batch transactions (see `view`) apply each event once.

An event a projection cannot handle stops that projection: the error and the event's
position are recorded (the state becomes "error: ...") and it does not advance past it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from eventsourcing.persistence import IntegrityError, Notification, PersistenceError
from eventsourcing.postgres import PostgresSubscription
from psycopg import Error as PsycopgError

from projections.base import BatchProjection, UnhandledEvent, to_events
from projections.locks import LockRole, LockSession
from projections.read_models import PROJECTION_NAMES, ReadModels

log = logging.getLogger(__name__)

CATCH_UP_BATCH = 1000
_TRANSIENT = (PersistenceError, PsycopgError, OSError)


class ProjectorRunner:
    """Runs projections in this process: `start()`, then `stop()` (or use it as a context
    manager); `run_forever()` blocks, for `wes projections run`."""

    def __init__(self, env: Mapping[str, str] | None = None, *,
                 read_models: ReadModels | None = None,
                 names: Sequence[str] = PROJECTION_NAMES, standby_poll_seconds: float = 0.5,
                 health_check_seconds: float = 1.0,
                 catch_up_batch: int = CATCH_UP_BATCH) -> None:
        if read_models is None:
            if env is None:
                raise ValueError("give the database env or read models")
            read_models = ReadModels(env)
            self._owns_read_models = True
        else:
            self._owns_read_models = False
        self.read_models = read_models
        self._stopping = threading.Event()
        self._projectors = [
            _Projector(read_models, read_models.projection(name), self._stopping,
                       standby_poll_seconds, health_check_seconds, catch_up_batch)
            for name in names
        ]

    def start(self) -> None:
        for projector in self._projectors:
            projector.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        for projector in self._projectors:
            projector.interrupt()
        for projector in self._projectors:
            projector.join(timeout)
        if self._owns_read_models:
            self.read_models.close()

    def states(self) -> dict[str, str]:
        """What each projection is doing in this process."""
        return {p.projection.name: p.state for p in self._projectors}

    def wait(self, position: int, timeout: float = 5.0) -> None:
        """Blocks until every projection has applied `position` (see ReadModels.wait)."""
        self.read_models.wait(position, timeout, names=[p.projection.name for p in self._projectors])

    def run_forever(self) -> None:
        """Blocks until stopped, or until every projection has stopped on an error (then
        raises the first error)."""
        while not self._stopping.wait(0.5):
            if not any(p.is_alive() for p in self._projectors):
                break
        errors = [p.error for p in self._projectors if p.error is not None]
        if errors and not self._stopping.is_set():
            raise errors[0]

    def __enter__(self) -> ProjectorRunner:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Projector(threading.Thread):
    """Follows one projection: standby until it holds the active lock, then live."""

    def __init__(self, read_models: ReadModels, projection: BatchProjection[Any],
                 stopping: threading.Event, standby_poll: float, health_check: float,
                 catch_up_batch: int) -> None:
        super().__init__(name=f"projector-{projection.name}", daemon=True)
        self.app = read_models.app
        self.projection = projection
        self.view = projection.view
        self.state = "starting"
        self.error: UnhandledEvent | None = None
        self._stopping = stopping
        self._standby_poll = standby_poll
        self._health_check = health_check
        self._batch = catch_up_batch
        self._subscription: PostgresSubscription | None = None
        self._lock = threading.Lock()

    def interrupt(self) -> None:
        with self._lock:
            if self._subscription is not None:
                self._subscription.stop()

    def run(self) -> None:
        name = self.projection.name
        while not self._stopping.is_set() and self.error is None:
            try:
                with LockSession(self.view.datastore) as session:
                    session.lock_shared(self.view.lock_key(LockRole.PRESENCE))
                    self._hold(session)
            except _TRANSIENT as e:
                log.warning("projector %s lost the database, reconnecting: %s", name, e)
                self.state = "standby"
                self._stopping.wait(self._standby_poll)
        if self.error is None:
            self.state = "stopped"

    def _hold(self, session: LockSession) -> None:
        """Standby until the active lock is ours, then follow until stopped or failed."""
        active = self.view.lock_key(LockRole.ACTIVE)
        while not self._stopping.is_set():
            if session.try_lock(active):
                log.info("projector %s is active", self.projection.name)
                try:
                    self._follow(session)
                except UnhandledEvent as e:
                    self._fail(e)
                    return
                except IntegrityError:
                    # Another process wrote the same first position: read it and go on.
                    continue
                finally:
                    if session.alive():
                        session.unlock(active)
                if not session.alive():
                    return
            else:
                self.state = "standby"
                self._stopping.wait(self._standby_poll)
                if not session.alive():
                    return

    def _follow(self, session: LockSession) -> None:
        if self.view.pointer().error is not None:
            self.view.clear_error()  # this process tries again (it may know newer events)
        self.state = "running"
        position = self.view.max_tracking_id(self.app.name) or 0
        while not self._stopping.is_set():
            notifications = self.app.recorder.select_notifications(
                start=position, limit=self._batch, inclusive_of_start=False)
            if notifications:
                self._apply(notifications)
                position = notifications[-1].id
            if len(notifications) < self._batch:
                break
            if not session.alive():
                return
        subscription = self.app.recorder.subscribe(gt=position)
        assert isinstance(subscription, PostgresSubscription)
        with self._lock:
            self._subscription = subscription
        if self._stopping.is_set():
            subscription.stop()
        done = threading.Event()
        watchdog = threading.Thread(target=self._watch, args=(session, subscription, done),
                                    name=f"projector-{self.projection.name}-watchdog",
                                    daemon=True)
        watchdog.start()
        try:
            with subscription:
                for notification in subscription:
                    self._apply([notification])
        finally:
            done.set()
            subscription.stop()
            watchdog.join()
            with self._lock:
                self._subscription = None

    def _watch(self, session: LockSession, subscription: PostgresSubscription,
               done: threading.Event) -> None:
        """Stops following when the lock's session is gone (the lock with it: another
        process may be active by now)."""
        while not done.wait(self._health_check):
            if not session.alive():
                log.warning("projector %s lost its lock session", self.projection.name)
                subscription.stop()
                return

    def _apply(self, notifications: Sequence[Notification]) -> None:
        """Applies events in order up to the first one that cannot be handled, then raises."""
        items, unreadable = to_events(self.app, self.projection.name, notifications)
        try:
            self.projection.process_batch(items)
        except UnhandledEvent as e:
            # The batch rolled back: apply what comes before the failing event, then stop.
            self.projection.process_batch([i for i in items if i[1].notification_id
                                           < e.position])
            raise
        if unreadable is not None:
            raise unreadable

    def _fail(self, error: UnhandledEvent) -> None:
        log.error("projector %s stopped: %s", self.projection.name, error)
        self.error = error
        self.state = f"error: {error}"
        try:
            self.view.record_error(str(error), error.position)
        except _TRANSIENT as e:
            log.warning("could not record the error of %s: %s", self.projection.name, e)
