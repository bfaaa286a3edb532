"""Polling with a short, growing interval: read-your-writes waits must answer in milliseconds."""

from __future__ import annotations

import time
from collections.abc import Callable

FIRST_INTERVAL = 0.002
MAX_INTERVAL = 0.05


def poll_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Returns once `condition()` holds; raises TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    interval = FIRST_INTERVAL
    while not condition():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(min(interval, remaining))
        interval = min(interval * 2, MAX_INTERVAL)
