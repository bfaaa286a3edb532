"""The projector: keeps the read models up to date, live, from the event store.

One thread per projection. Each holds a shared *presence* lock and tries for the exclusive
*active* advisory lock of its projection (see `locks`): the process that gets it follows
the event store from its position through the library's LISTEN/NOTIFY subscription,
applying whatever has arrived as one batch (a single event when it keeps up, up to
`MAX_BATCH` when it catches up), one transaction per batch. The others wait on standby
and take over when the active process dies, because PostgreSQL frees a dead session's
locks at once. Even if two processes ever ran at once, the batch transactions (see `view`)
apply each event once.

An event a projection cannot handle stops that projection: the error and the event's
position are recorded (the state becomes "error: ...") and it does not advance past it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, cast

from eventsourcing.persistence import (
    DataError,
    IntegrityError,
    InterfaceError,
    Notification,
    OperationalError,
    ProgrammingError,
    Subscription,
)
from eventsourcing.utils import get_topic
from psycopg import InterfaceError as PsycopgInterfaceError
from psycopg import OperationalError as PsycopgOperationalError

from application.locks import LockRole, LockSession
from projections.base import BatchProjection, Item, UnhandledEvent, to_events
from projections.read_models import PROJECTION_NAMES, ProjectionViews

log = logging.getLogger(__name__)

MAX_BATCH = 1000
_MAX_RETRY_SECONDS = 10.0
# The database went away: reconnect and carry on from the position.
_TRANSIENT = (OperationalError, InterfaceError, PsycopgOperationalError,
              PsycopgInterfaceError, OSError)
# An event's rows cannot be written: a failure at that event, like one it cannot read.
_REFUSED = (DataError, ProgrammingError)


class ProjectorRunner:
    """Runs projections in this process: `start()`, then `stop()` (or use it as a context
    manager); `run_forever()` blocks, for `wes projections run`."""

    def __init__(self, *, read_models: ProjectionViews,
                 names: Sequence[str] = PROJECTION_NAMES, standby_poll_seconds: float = 0.5,
                 health_check_seconds: float = 1.0,
                 batch_size: int = MAX_BATCH) -> None:
        # The views are the caller's (bootstrap.container builds them): it closes them.
        self.read_models = read_models
        self._stopping = threading.Event()
        decoded = _DecodedEvents(read_models.app)
        self._projectors = [
            _Projector(read_models, read_models.projection(name), self._stopping,
                       standby_poll_seconds, health_check_seconds, batch_size, decoded)
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

    def states(self) -> dict[str, str]:
        """What each projection is doing in this process."""
        return {p.projection.name: p.state for p in self._projectors}

    def wait(self, position: int, timeout: float = 5.0) -> None:
        """Blocks until every projection has applied `position` (see ProjectionViews.wait)."""
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

    def __init__(self, read_models: ProjectionViews, projection: BatchProjection[Any],
                 stopping: threading.Event, standby_poll: float, health_check: float,
                 batch_size: int, decoded: _DecodedEvents) -> None:
        super().__init__(name=f"projector-{projection.name}", daemon=True)
        self.app = read_models.app
        self.projection = projection
        self.view = projection.view
        self.state = "starting"
        self.error: Exception | None = None
        self._stopping = stopping
        self._standby_poll = standby_poll
        self._health_check = health_check
        self._batch = batch_size
        self._decoded = decoded
        self._subscription: Subscription[Any] | None = None
        self._lock = threading.Lock()

    def interrupt(self) -> None:
        with self._lock:
            if self._subscription is not None:
                self._subscription.stop()

    def run(self) -> None:
        name = self.projection.name
        delay = self._standby_poll
        while not self._stopping.is_set() and self.error is None:
            try:
                with LockSession(self.view.datastore) as session:
                    delay = self._standby_poll
                    session.lock_shared(self.view.lock_key(LockRole.PRESENCE))
                    self._hold(session)
            except _TRANSIENT as e:
                # One line per try, and tries further apart while it lasts (a full server
                # must not be asked for a connection twice a second by every projection).
                log.warning("projector %s: no database connection, retrying in %.1f s: %s",
                            name, delay, " ".join(str(e).split())[:200])
                self.state = "standby"
                self._stopping.wait(delay)
                delay = min(delay * 2, _MAX_RETRY_SECONDS)
            except Exception as e:  # a bug: stop this projection, visibly, not the others
                log.exception("projector %s failed", name)
                self._fail(e, None)
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
                    self._fail(e, e.position)
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
        """Applies events from the position on, in batches of what has arrived, until
        stopped or the lock's session is gone (another process may be active by now)."""
        if self.view.pointer().error is not None:
            self.view.clear_error()  # this process tries again (it may know newer events)
        self.state = "running"
        position = self.view.max_tracking_id(self.app.name) or 0
        subscription = self.app.recorder.subscribe(gt=position)
        with self._lock:
            self._subscription = subscription
        if self._stopping.is_set():
            subscription.stop()
        pump = _Pump(subscription, self.projection.name)
        pump.start()
        try:
            with subscription:
                next_check = time.monotonic() + self._health_check
                while (batch := pump.take(self._batch, self._health_check)) is not None:
                    if batch:
                        self._apply(batch)
                    if time.monotonic() >= next_check:
                        if not session.alive():
                            log.warning("projector %s lost its lock session",
                                        self.projection.name)
                            return
                        next_check = time.monotonic() + self._health_check
        finally:
            subscription.stop()
            pump.close()
            with self._lock:
                self._subscription = None

    def _apply(self, notifications: Sequence[Notification]) -> None:
        """Applies events in order up to the first one that cannot be handled, then raises
        UnhandledEvent with its position."""
        items, unreadable = self._decoded.items(self.projection.name, notifications)
        try:
            self.projection.process_batch(items)
        except (UnhandledEvent, *_REFUSED):
            # The batch rolled back: one by one, up to the failing event (which raises).
            for item in items:
                self._apply_one(item)
        if unreadable is not None:
            raise unreadable

    def _apply_one(self, item: Item) -> None:
        try:
            self.projection.process_batch([item])
        except _REFUSED as e:
            raise UnhandledEvent(self.projection.name, item[1].notification_id,
                                 get_topic(type(item[0])), repr(e)) from e

    def _fail(self, error: Exception, position: int | None) -> None:
        log.error("projector %s stopped: %s", self.projection.name, error)
        self.error = error
        self.state = f"error: {error}"
        try:
            self.view.record_error(str(error), position)
        except _TRANSIENT as e:
            log.warning("could not record the error of %s: %s", self.projection.name, e)


class _DecodedEvents:
    """The events this process's projectors decoded lately, by position: they all follow
    the same log, so each event is decoded once instead of once per projection (decoding
    was a quarter of a live projector's time). Bounded: the oldest are dropped first.
    Domain events are immutable, so the projections can share them."""

    def __init__(self, app: Any, capacity: int = 4 * MAX_BATCH) -> None:
        self._app = app
        self._capacity = capacity
        self._items: OrderedDict[int, Item] = OrderedDict()
        self._lock = threading.Lock()

    def items(self, projection: str, notifications: Sequence[Notification]
              ) -> tuple[list[Item], UnhandledEvent | None]:
        """As `to_events`: the events in order, up to the first one that cannot be read."""
        with self._lock:
            found = [self._items.get(n.id) for n in notifications]
        missing = [n for n, item in zip(notifications, found, strict=True) if item is None]
        if not missing:
            return cast(list[Item], found), None
        decoded, unreadable = to_events(self._app, projection, missing)
        with self._lock:
            for item in decoded:
                self._items[item[1].notification_id] = item
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)
        fresh = iter(decoded)
        items: list[Item] = []
        for item in found:
            if item is None:
                item = next(fresh, None)
                if item is None:  # the unreadable one: stop before it
                    break
            items.append(item)
        return items, unreadable


class _Pump(threading.Thread):
    """Moves notifications from the library's subscription (an iterator that blocks) into a
    bounded queue, so the projector can take everything that has arrived as one batch."""

    _END = object()

    def __init__(self, subscription: Subscription[Any], name: str) -> None:
        super().__init__(name=f"projector-{name}-subscription", daemon=True)
        self._subscription = subscription
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=10 * MAX_BATCH)
        self._closed = threading.Event()
        self._error: BaseException | None = None
        self._ended = False

    def run(self) -> None:
        try:
            for notification in self._subscription:
                if not self._put(notification):
                    return
        except BaseException as e:
            self._error = e
        self._put(self._END)

    def _put(self, item: object) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.1)
            except queue.Full:
                continue
            return True
        return False

    def take(self, limit: int, timeout: float) -> list[Notification] | None:
        """Up to `limit` notifications (waiting up to `timeout` for the first; [] if none
        came); None once the subscription has ended. Re-raises its error."""
        if self._ended:
            return self._finish()
        batch: list[Notification] = []
        try:
            item = self._queue.get(timeout=timeout)
            while True:
                if item is self._END:
                    self._ended = True
                    return batch or self._finish()
                batch.append(item)
                if len(batch) >= limit:
                    return batch
                item = self._queue.get_nowait()
        except queue.Empty:
            return batch

    def _finish(self) -> None:
        if self._error is not None:
            raise self._error
        return None

    def close(self) -> None:
        self._closed.set()
        self.join()
