"""The event feed: stored events in global order, and a hub that follows new ones live.

`EventReader` reads and decodes events after a position (the recorder's
`select_notifications`). `EventHub` runs one subscription (PostgreSQL LISTEN/NOTIFY) in a
thread for the whole process and keeps the latest events in memory, so any number of SSE
clients follow the store without querying it; a client that is further behind than the
buffer reads from the store until it catches up. The recorder hands positions out in
order, exactly once, never past an append still in flight, from any start position; so
"every event after my last id" never skips or repeats one. "From now" starts after the
recorder's settled head (below every append in flight), never after the highest committed
position, which an append still in flight may lie below.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification

from application.event_log import Heads
from application.workflows import Workflows, event_data
from domain.workflow import Workflow

log = logging.getLogger(__name__)

SCAN_BATCH = 500


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """A decoded event with its global position."""

    position: int
    aggregate_id: UUID
    aggregate_type: str
    version: int
    event_type: str
    timestamp: datetime
    correlation_id: str | None
    data: dict[str, Any]

    @property
    def workflow_id(self) -> UUID | None:
        return self.aggregate_id if self.aggregate_type == "Workflow" else None


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a subscriber wants; empty fields match everything."""

    workflow_id: UUID | None = None
    correlation_id: str | None = None
    event_types: frozenset[str] = frozenset()

    def matches(self, event: FeedEvent) -> bool:
        if self.workflow_id is not None and event.aggregate_id != self.workflow_id:
            return False
        if self.correlation_id is not None and event.correlation_id != self.correlation_id:
            return False
        return not self.event_types or event.event_type in self.event_types or (
            f"{event.aggregate_type}.{event.event_type}" in self.event_types)


def _names_from_topic(topic: str) -> tuple[str, str]:
    qualname = topic.split(":", 1)[-1]
    aggregate, _, event = qualname.rpartition(".")
    return aggregate or qualname, event or qualname


class EventReader:
    """Reads and decodes stored events in global order."""

    def __init__(self, workflows: Workflows) -> None:
        self.workflows = workflows

    def decode(self, notification: Notification) -> FeedEvent:
        aggregate_type, event_type = _names_from_topic(notification.topic)
        try:
            event = self.workflows.mapper.to_domain_event(notification)
        except Exception:  # an event whose class is gone must not break the feed
            log.warning("cannot decode event at position %s (%s)", notification.id,
                        notification.topic)
            return FeedEvent(notification.id, notification.originator_id, aggregate_type,
                               notification.originator_version, event_type,
                               datetime.fromtimestamp(0, UTC), None, {})
        if isinstance(event, Workflow.Event):
            aggregate_type = "Workflow"
        return FeedEvent(
            position=notification.id,
            aggregate_id=event.originator_id,
            aggregate_type=aggregate_type,
            version=event.originator_version,
            event_type=type(event).__name__,
            timestamp=event.timestamp,
            correlation_id=getattr(event, "correlation_id", None),
            data=event_data(event),
        )

    def head(self) -> int:
        """Where "from now" starts: every append at or below it has ended."""
        return self.workflows.store.settled_head()

    def heads(self) -> Heads:
        """The latest committed position and the settled head, read together."""
        return self.workflows.store.heads()

    def latest(self) -> int:
        """The highest committed position (positions above it do not exist yet)."""
        return self.workflows.recorder.max_notification_id() or 0

    def read(self, after: int, limit: int) -> list[FeedEvent]:
        """Up to `limit` events after position `after`, oldest first."""
        notifications = self.workflows.recorder.select_notifications(
            start=after, limit=limit, inclusive_of_start=False)
        return [self.decode(n) for n in notifications]

    def scan(self, after: int, limit: int, wanted: EventFilter,
             budget: int = 20 * SCAN_BATCH) -> tuple[list[FeedEvent], int]:
        """Up to `limit` matching events after `after`, reading at most `budget` events;
        returns them and the last position read (to continue from)."""
        found: list[FeedEvent] = []
        last = after
        scanned = 0
        unfiltered = wanted == EventFilter()
        while len(found) < limit and scanned < budget:
            wanted_now = limit - len(found) if unfiltered else SCAN_BATCH
            batch = self.read(last, min(wanted_now, budget - scanned))
            if not batch:
                break
            scanned += len(batch)
            for event in batch:
                last = event.position
                if wanted.matches(event):
                    found.append(event)
                    if len(found) == limit:
                        break
        return found, last


class EventHub:
    """Follows the event store live for every subscriber of this process."""

    def __init__(self, reader: EventReader, capacity: int = 10_000,
                 retry_seconds: float = 1.0) -> None:
        self.reader = reader
        self.capacity = max(1, capacity)
        self.retry_seconds = retry_seconds
        self._lock = threading.Lock()
        self._events: list[FeedEvent] = []
        self._floor: int | None = None  # every event after `_floor` is in `_events`
        self._head = 0
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._stopping = threading.Event()
        self._subscription: Any = None
        self._thread: threading.Thread | None = None

    @property
    def live(self) -> bool:
        return self._floor is not None

    @property
    def head(self) -> int:
        return self._head

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="wes-event-hub", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        subscription = self._subscription
        if subscription is not None:
            subscription.stop()
        if self._thread is not None:
            self._thread.join(10)
        self._wake_all()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._follow()
            except Exception as e:  # the database went away: follow again when it is back
                # The buffer stays valid: following resumes right after the last event seen.
                log.warning("event hub lost the event store (%s); retrying", e)
                self._stopping.wait(self.retry_seconds)

    def _follow(self) -> None:
        if self._floor is None:
            head = self.reader.head()
            with self._lock:
                self._events.clear()
                self._floor = self._head = max(head, self._head)
        recorder = self.reader.workflows.recorder
        with recorder.subscribe(gt=self._head) as subscription:
            self._subscription = subscription
            if self._stopping.is_set():
                return
            for notification in subscription:
                self._publish(self.reader.decode(notification))
                if self._stopping.is_set():
                    return

    def _publish(self, event: FeedEvent) -> None:
        with self._lock:
            self._events.append(event)
            self._head = event.position
            overflow = len(self._events) - self.capacity
            if overflow > self.capacity // 4:
                self._floor = self._events[overflow - 1].position
                del self._events[:overflow]
        self._wake_all()

    def _wake_all(self) -> None:
        for loop, ready in list(self._waiters):
            with contextlib.suppress(RuntimeError):  # that client's loop has closed
                loop.call_soon_threadsafe(ready.set)

    def since(self, after: int) -> Sequence[FeedEvent] | None:
        """Buffered events after `after`, or None when the buffer does not reach back."""
        with self._lock:
            if self._floor is None or after < self._floor:
                return None
            start = bisect.bisect_right(self._events, after, key=lambda e: e.position)
            return self._events[start:]

    async def wait_after(self, position: int, timeout: float) -> None:
        """Returns when an event after `position` arrives, or after `timeout` seconds."""
        ready = asyncio.Event()
        waiter = (asyncio.get_running_loop(), ready)
        self._waiters.add(waiter)
        try:
            if self._head > position:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ready.wait(), timeout)
        finally:
            self._waiters.discard(waiter)
