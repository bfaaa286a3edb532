"""Builders for the domain unit tests: the seed's order-fulfillment saga, driven by real commands.

Every builder reaches its state through commands (never by assigning attributes) and then
collects the pending events, as saving would, so a test sees only the events of its own
commands. Time is fixed: `NOW`, advanced explicitly with `ms()`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.compensation import CompensationAction
from domain.retry_policy import RetryPolicy
from domain.step import StepResult, StepSpec
from domain.workflow import Workflow
from domain.workflow_error import WorkflowError

NOW = datetime(2025, 10, 22, 9, 0, tzinfo=UTC)
ORDER_ID = "ORD-12345"

RESERVE = "reserve-inventory"
ASSIGN = "assign-robot"
PICK = "pick-items"
PACK = "pack-items"
ORDER_STEP_IDS = (RESERVE, ASSIGN, PICK, PACK)


def ms(milliseconds: int) -> timedelta:
    return timedelta(milliseconds=milliseconds)


def order_step(step_id: str, service: str, operation: str, undo: str | None, order: int,
               retry_policy: RetryPolicy | None = None) -> StepSpec:
    """One step of the seed's section-12 saga; `undo` is its reverse operation, if any."""
    return StepSpec(
        step_id=step_id,
        name=step_id.replace("-", " ").title(),
        service=service,
        operation=operation,
        execution_order=order,
        input={"orderId": "${input.orderId}"},
        retry_policy=retry_policy or RetryPolicy.default(),
        compensation=(
            CompensationAction.reverse_operation(step_id, service, undo,
                                                 {"orderId": "${input.orderId}"})
            if undo else None
        ),
    )


def order_fulfillment_steps(retry_policy: RetryPolicy | None = None) -> list[StepSpec]:
    """Reserve inventory -> assign robot -> pick -> pack, each with its reverse operation."""
    return [
        order_step(RESERVE, "inventory-service", "reserve", "release", 1, retry_policy),
        order_step(ASSIGN, "robotics-service", "assign", "unassign", 2, retry_policy),
        order_step(PICK, "warehouse-service", "pick", "return-to-stock", 3, retry_policy),
        order_step(PACK, "packing-service", "pack", "unpack", 4, retry_policy),
    ]


def saved(wf: Workflow) -> Workflow:
    """Collects the pending events, as saving the aggregate would."""
    wf.collect_events()
    return wf


def pending_workflow(steps: Sequence[StepSpec | Mapping[str, Any]] | None = None,
                     **options: Any) -> Workflow:
    options.setdefault("input", {"orderId": ORDER_ID})
    options.setdefault("definition_id", "order-fulfillment")
    return saved(Workflow.create(steps=steps or order_fulfillment_steps(), now=NOW, **options))


def executing_workflow(steps: Sequence[StepSpec | Mapping[str, Any]] | None = None,
                       **options: Any) -> Workflow:
    wf = pending_workflow(steps, **options)
    wf.start(NOW)
    return saved(wf)


def run_step(wf: Workflow, step_id: str, now: datetime = NOW,
             output: Mapping[str, Any] | None = None, execution_time_ms: int = 1500) -> None:
    """Starts the step and records its success."""
    wf.start_step(step_id, now)
    result = StepResult.success(step_id, output or {"done": step_id}, execution_time_ms)
    wf.record_step_result(step_id, result, now + ms(execution_time_ms))


def completed_through(*step_ids: str, **options: Any) -> Workflow:
    """An executing saga whose listed steps completed, in order, one second apart."""
    wf = executing_workflow(**options)
    for offset, step_id in enumerate(step_ids):
        run_step(wf, step_id, NOW + ms(1000 * offset), execution_time_ms=500)
    return saved(wf)


def unrecoverable(step_id: str | None, code: str = "ROBOT_UNAVAILABLE") -> WorkflowError:
    return WorkflowError.create(step_id, "robotics-service", code, "All robots are offline",
                                "SERVICE_UNAVAILABLE", False)


def recoverable(step_id: str | None, code: str = "INVENTORY_UNAVAILABLE") -> WorkflowError:
    return WorkflowError.create(step_id, "inventory-service", code,
                                "Insufficient inventory for product SKU-12345",
                                "BUSINESS_RULE_VIOLATION", True)


def event_names(events: Sequence[Any]) -> list[str]:
    return [type(event).__name__ for event in events]


def emitted(wf: Workflow) -> list[str]:
    """The names of the events recorded since the last collection (and collects them)."""
    return event_names(wf.collect_events())


def replay(events: Sequence[Any]) -> Workflow:
    """Folds recorded events into a fresh aggregate, as loading from the event store does."""
    wf: Any = None
    for event in events:
        wf = event.mutate(wf)
    return wf


@contextmanager
def unchanged(wf: Workflow) -> Iterator[None]:
    """Asserts that the block (a rejected command) left no trace on the aggregate."""
    state = copy.deepcopy(wf.snapshot_state())
    version = wf.version
    pending = list(wf.pending_events)
    yield
    assert wf.version == version
    assert list(wf.pending_events) == pending
    assert wf.snapshot_state() == state
