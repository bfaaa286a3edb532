"""A virtual clock: callbacks run in time order, ties in the order they were scheduled."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any


class VirtualClock:
    """Discrete-event time: `now` jumps from one scheduled callback to the next."""

    def __init__(self, start: datetime) -> None:
        self.start = start
        self.t = 0.0  # seconds since `start`: floats keep the heap cheap
        self._queue: list[tuple[float, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._seq = 0
        self.events_run = 0
        self._now = (0.0, start)

    @property
    def now(self) -> datetime:
        at, value = self._now
        if at != self.t:
            value = self.start + timedelta(seconds=self.t)
            self._now = (self.t, value)
        return value

    def offset(self, when: datetime) -> float:
        """Seconds from the clock's start to `when`."""
        return (when - self.start).total_seconds()

    def at(self, t: float, fn: Callable[..., Any], *args: Any) -> None:
        """Runs `fn(*args)` at `t` seconds after the start (never before now)."""
        self._seq += 1
        heapq.heappush(self._queue, (max(t, self.t), self._seq, fn, args))

    def after(self, seconds: float, fn: Callable[..., Any], *args: Any) -> None:
        self.at(self.t + max(seconds, 0.0), fn, *args)

    def run(self, until: float | None = None, max_events: int | None = None,
            deadline: Callable[[], bool] | None = None) -> bool:
        """Runs callbacks in time order until none is left (True), or `until` seconds,
        `max_events` callbacks or `deadline()` is reached first (False)."""
        queue = self._queue
        while queue:
            if until is not None and queue[0][0] > until:
                self.t = until
                return False
            if max_events is not None and self.events_run >= max_events:
                return False
            if deadline is not None and self.events_run % 4096 == 0 and deadline():
                return False
            t, _, fn, args = heapq.heappop(queue)
            self.t = t
            self.events_run += 1
            fn(*args)
        return True

    def pending(self) -> int:
        return len(self._queue)
