"""Retrying the engine's own database work: doubling waits, and a bounded retry.

The worker retries three things while the database is briefly unavailable (or, for an
outcome, while another writer got there first): its claim loop, handing a work item back,
and recording a step's outcome. All three wait by `Backoff`; the last two are `retry`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Backoff:
    """Waits that double from `first` up to `ceiling`; `reset` after a success."""

    def __init__(self, first: float = 0.1, ceiling: float = 2.0) -> None:
        self.first = first
        self.ceiling = ceiling
        self._next = first

    def next(self) -> float:
        """The next wait, in seconds."""
        delay = self._next
        self._next = min(self._next * 2, self.ceiling)
        return delay

    def reset(self) -> None:
        self._next = self.first


def retry(action: Callable[[], T], *, on: tuple[type[BaseException], ...], attempts: int,
          delay: Callable[[BaseException], float],
          stopped: Callable[[], bool] = lambda: False) -> T:
    """`action()`, tried up to `attempts` times while it raises one of `on`, sleeping
    `delay(error)` seconds after each failure (0: try again at once). Raises the last
    error when the tries run out, or when `stopped()` after a wait."""
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    for _ in range(attempts - 1):
        try:
            return action()
        except on as error:
            seconds = delay(error)
            if seconds > 0:
                time.sleep(seconds)
            if stopped():
                raise
    return action()  # the last try: its error is the caller's
