"""Polling helpers for tests that watch the engine work."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar
from uuid import UUID

from application.workflows import Workflows
from domain.workflow import Workflow

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 20.0, interval: float = 0.05,
             message: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


def wait_for_status(app: Workflows, workflow_id: UUID, *statuses: str,
                    timeout: float = 20.0) -> Workflow:
    last: list[str] = []

    def reached() -> Workflow | None:
        wf = app.get_workflow(workflow_id)
        last[:] = [str(wf.status)]
        return wf if wf.status in statuses else None

    try:
        return wait_for(reached, timeout, message=f"{workflow_id} to reach {statuses}")
    except AssertionError as e:
        raise AssertionError(f"{e}; last status {last}") from None


def event_types(app: Workflows, workflow_id: UUID) -> list[str]:
    return [e.event_type for e in app.history(workflow_id)]
