"""The call log (every call received, oldest first) and the idempotency store."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

DEFAULT_LOG_SIZE = 100_000


@dataclass(frozen=True)
class Call:
    """One call received by a service operation, and how it was answered."""

    service: str
    operation: str
    idempotency_key: str | None
    attempt: int | None  # the caller's X-WES-Attempt (1-based), when it sent one
    repeated: bool  # answered with the answer stored for the key
    order_id: str | None
    status: int
    at: datetime
    instance: str
    correlation_id: str | None
    fault_id: str | None
    input: Any

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["at"] = self.at.isoformat()
        return data


class CallLog:
    """The most recent calls (a bounded log, so a long benchmark cannot exhaust memory)."""

    def __init__(self, max_size: int = DEFAULT_LOG_SIZE) -> None:
        self._lock = threading.Lock()
        self._calls: deque[Call] = deque(maxlen=max_size)

    def record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def find(self, **filters: str | None) -> list[Call]:
        """The calls whose fields equal every filter given (None filters are ignored)."""
        wanted = {k: v for k, v in filters.items() if v is not None}
        with self._lock:
            calls = list(self._calls)
        return [c for c in calls if all(getattr(c, k) == v for k, v in wanted.items())]

    def clear(self) -> int:
        with self._lock:
            removed = len(self._calls)
            self._calls.clear()
            return removed


class IdempotencyStore:
    """First successful answer per (service, operation, Idempotency-Key), as a real service
    keeps it: a later call with the key (any attempt) gets that answer again; a failed
    call stores nothing, so a later call with its key does the work."""

    def __init__(self) -> None:
        # One lock around lookup, work and store: two concurrent calls with the same key
        # must not both do the work.
        self._lock = threading.Lock()
        self._answers: dict[tuple[str, str, str], dict[str, Any]] = {}

    def answer(self, service: str, operation: str, key: str | None,
               work: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
        """The stored answer for the key (repeated), or the work's answer, stored if it succeeds.

        Without a key the work is simply done. Returns the answer and whether it is a repeat.
        """
        if key is None:
            return work(), False
        with self._lock:
            stored = self._answers.get((service, operation, key))
            if stored is not None:
                return stored, True
            answer = work()
            self._answers[(service, operation, key)] = answer
            return answer, False

    def seen(self, service: str, operation: str, key: str | None) -> bool:
        """Whether an answer is stored for the key."""
        if key is None:
            return False
        with self._lock:
            return (service, operation, key) in self._answers
