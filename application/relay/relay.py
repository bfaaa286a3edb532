"""The relay loop: standby until it holds the lock, then follow the store into the sink.

One relay is active at a time (the projectors' advisory locks, `application.locks`, under
the name "relay"); others stand by and take over when it dies. The active one asks the
sink where it stopped (the stream's last message is the truth; the tracking row only when
the stream cannot tell), then reads the events after that position in global order
(`select_notifications`, which never passes an append still in flight), publishes them in
batches and records the acknowledged position in the tracking row. Any broker failure: back
off, reconnect, ask the sink again. The store is the outbox, so nothing waits on the
broker but the relay itself.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from eventsourcing.persistence import InterfaceError, Notification, OperationalError
from psycopg import InterfaceError as PsycopgInterfaceError
from psycopg import OperationalError as PsycopgOperationalError

from application.locks import LockRole, LockSession
from application.relay.envelope import Naming, Outgoing, envelope
from application.relay.sink import Sink, SinkUnavailable
from application.relay.tracking import NAME, RelayTracking
from application.workflows import Workflows
from projections.base import UnhandledEvent, to_events

log = logging.getLogger(__name__)

# The database went away: reconnect and carry on from the stream's position.
_DATABASE_DOWN = (OperationalError, InterfaceError, PsycopgOperationalError,
                  PsycopgInterfaceError, OSError)
_SAVE_EVERY = 0.25  # seconds between tracking writes while events flow
_Sent = tuple[Any, list[Outgoing]]  # a batch sent (the sink's handle) and not yet confirmed


class Backoff:
    """Exponential backoff with jitter: 0.1 s, 0.2 s, ... up to `ceiling`; reset on success."""

    def __init__(self, ceiling: float = 10.0, first: float = 0.1) -> None:
        self.ceiling = ceiling
        self.first = first
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.ceiling)
        return delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self._next = self.first


class Relay:
    """Relays the events of `app` to `sink` until `stop` is set: `run(stop)` blocks."""

    def __init__(self, app: Workflows, sink: Sink, naming: Naming, *, batch_size: int = 500,
                 standby_poll: float = 0.5, health_check: float = 1.0, idle_wait: float = 1.0,
                 max_backoff: float = 10.0,
                 on_published: Callable[[Sequence[Outgoing]], None] | None = None) -> None:
        self.app = app
        self.sink = sink
        self.naming = naming
        self.batch_size = batch_size
        self.standby_poll = standby_poll
        self.health_check = health_check
        self.idle_wait = idle_wait
        self.max_backoff = max_backoff
        self.on_published = on_published
        self.tracking = RelayTracking(app.recorder.datastore, NAME)  # type: ignore[attr-defined]
        self.state = "starting"
        self.position: int | None = None  # the last position the sink acknowledged
        self.error: UnhandledEvent | None = None
        self._stop = threading.Event()
        self._appended = threading.Event()

    def run(self, stop: threading.Event | None = None) -> None:
        """Blocks until `stop` is set (or an event cannot be relayed: then raises it)."""
        if stop is not None:
            self._stop = stop
        listener = threading.Thread(target=self._listen, name="wes-relay-listen", daemon=True)
        listener.start()
        try:
            asyncio.run(self._run())
        finally:
            self._appended.set()
            listener.join(5)
            self.state = "stopped" if self.error is None else self.state
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        self._stop.set()

    # ------------------------------------------------------------------ standby / active

    async def _run(self) -> None:
        backoff = Backoff(self.max_backoff)
        while not self._stop.is_set() and self.error is None:
            try:
                await asyncio.to_thread(self.tracking.setup)
                session = await asyncio.to_thread(LockSession, self.tracking.datastore)
                try:
                    await asyncio.to_thread(session.lock_shared,
                                            self.tracking.keys[LockRole.PRESENCE])
                    await self._hold(session)
                    backoff.reset()
                finally:
                    await asyncio.to_thread(session.close)
            except _DATABASE_DOWN as e:
                log.warning("relay lost the database, reconnecting", extra={"error": str(e)})
                self.state = "standby"
                await self._sleep(backoff.next())

    async def _hold(self, session: LockSession) -> None:
        active = self.tracking.keys[LockRole.ACTIVE]
        while not self._stop.is_set() and self.error is None:
            if await asyncio.to_thread(session.try_lock, active):
                log.info("relay is active", extra={"target": self.sink.describe()})
                try:
                    await self._active(session)
                finally:
                    if await asyncio.to_thread(session.alive):
                        await asyncio.to_thread(session.unlock, active)
                if not await asyncio.to_thread(session.alive):
                    return
            else:
                self.state = "standby"
                await self._sleep(self.standby_poll)
                if not await asyncio.to_thread(session.alive):
                    return

    async def _active(self, session: LockSession) -> None:
        """Connects, finds where the sink stopped and follows; after a broker failure backs
        off and starts over. Returns when stopped or the lock's session is gone."""
        backoff = Backoff(self.max_backoff)
        while not self._stop.is_set():
            try:
                await self.sink.open()
                position = await self._resume_point()
                self.state = "running"
                backoff.reset()
                if not await self._follow(session, position):
                    return
            except SinkUnavailable as e:
                delay = backoff.next()
                self.state = "waiting for the broker"
                log.warning("relay cannot publish, retrying", extra={
                    "error": str(e), "retry_in_seconds": round(delay, 2),
                    "position": self.position})
                await self._sleep(delay)
                if not await asyncio.to_thread(session.alive):
                    return
            except UnhandledEvent as e:
                log.error("relay stopped before an event it cannot read",
                          extra={"position": e.position, "topic": e.topic})
                self.error = e
                self.state = f"error: {e}"
                await asyncio.to_thread(self.tracking.record_error, str(e), e.position)
                return
            finally:
                await self.sink.close()

    async def _resume_point(self) -> int:
        """Where to continue: after the sink's last event (the stream is the truth)."""
        position = await self.sink.resume_point()
        if position is None:
            # The stream's last message is gone (retention, or deleted): the tracking row
            # never leads the stream but may lag it (kill -9) or be missing. The sink
            # counts the re-sent events the stream answers as duplicates as stored.
            position = await asyncio.to_thread(self.tracking.position) or 0
            log.warning("the stream cannot tell where it stopped; resuming from the "
                        "tracking row", extra={"position": position})
        self.position = position
        await asyncio.to_thread(self.tracking.save, position, None, self.sink.describe())
        log.info("relay resumes", extra={"position": position, "target": self.sink.describe()})
        return position

    # ------------------------------------------------------------------ following

    async def _follow(self, session: LockSession, position: int) -> bool:
        """Publishes the events after `position` until stopped (True) or the lock's session
        is gone (False). Raises SinkUnavailable or UnhandledEvent.

        One batch is in flight while the next is read and sent: its acks are awaited after
        that (or at once when nothing new came), so reading and encoding overlap the
        broker's work. A batch's position counts only once it is confirmed."""
        next_check: float | None = time.monotonic() + self.health_check
        tracked = _Tracked(self, time.monotonic())
        in_flight: _Sent | None = None
        try:
            while not self._stop.is_set():
                self._appended.clear()  # before reading: an append after the read wakes us
                notifications = await asyncio.to_thread(self._read, position)
                sent, unreadable = await self._send(notifications)
                if sent is not None:
                    position = sent[1][-1].position
                await self._confirm_any(in_flight, tracked)
                in_flight = sent
                if unreadable is not None:
                    in_flight, confirming = None, in_flight
                    await self._confirm_any(confirming, tracked)
                    await tracked.save()
                    raise unreadable
                now = time.monotonic()
                # At most every _SAVE_EVERY: a commit per batch would slow a relay that
                # keeps up with the engine batch by batch.
                if now - tracked.saved_at >= _SAVE_EVERY:
                    await tracked.save(now)
                next_check = await self._check_session(session, now, next_check)
                if next_check is None:
                    return False
                if not notifications:  # nothing in flight now: wait for an append
                    wait = (self.idle_wait if tracked.unsaved is None
                            else max(_SAVE_EVERY - (now - tracked.saved_at), 0.005))
                    await asyncio.to_thread(self._appended.wait, min(wait, self.idle_wait))
            await self._confirm_any(in_flight, tracked)
            return True
        finally:
            await tracked.save()

    async def _send(self, notifications: Sequence[Notification]
                    ) -> tuple[_Sent | None, UnhandledEvent | None]:
        """Sends the readable events of a batch (None: nothing to send), and the first
        event that could not be read, if any."""
        if not notifications:
            return None, None
        items, unreadable = to_events(self.app, NAME, notifications)
        outgoing = [envelope(event, notification.topic, notification.id, self.naming)
                    for (event, _), notification in zip(items, notifications, strict=False)]
        if not outgoing:
            return None, unreadable
        return (await self.sink.send(outgoing), outgoing), unreadable

    async def _check_session(self, session: LockSession, now: float, next_check: float
                             ) -> float | None:
        """When the next check of the lock's session is due, or None: it is gone."""
        if now < next_check:
            return next_check
        if not await asyncio.to_thread(session.alive):
            log.warning("relay lost its lock session")
            return None
        return now + self.health_check

    async def _confirm_any(self, sent: _Sent | None, tracked: _Tracked) -> None:
        if sent is not None:
            await self._confirm(sent, tracked)

    async def _confirm(self, sent: _Sent, tracked: _Tracked) -> None:
        handle, outgoing = sent
        tracked.sequence = await self.sink.confirm(handle)
        self.position = tracked.unsaved = outgoing[-1].position
        if self.on_published is not None:
            self.on_published(outgoing)

    def _read(self, position: int) -> Sequence[Notification]:
        return self.app.recorder.select_notifications(start=position, limit=self.batch_size,
                                                      inclusive_of_start=False)

    def _listen(self) -> None:
        """Wakes the follower on every append (LISTEN), until stopped."""
        recorder: Any = self.app.recorder
        while not self._stop.is_set():
            try:
                recorder.wait_for_appends(self._stop, self._appended.set)
            except Exception as e:  # the database went away: the follower polls meanwhile
                log.debug("relay listener: %s", e)
                self._stop.wait(1.0)

    async def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stop.is_set() and (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(left, 0.1))


class _Tracked:
    """What the tracking row should say, and when it was last written."""

    def __init__(self, relay: Relay, now: float) -> None:
        self.relay = relay
        self.saved_at = now
        self.unsaved: int | None = None  # a confirmed position not written yet
        self.sequence: int | None = None

    async def save(self, now: float | None = None) -> None:
        if self.unsaved is None:
            return
        position, self.unsaved = self.unsaved, None
        await asyncio.to_thread(self.relay.tracking.save, position, self.sequence,
                                self.relay.sink.describe())
        self.saved_at = time.monotonic() if now is None else now
