"""Histories for the projection tests, written with the seed's manual step API, and dumps of
every read-model table for comparing a live projection with a rebuilt one."""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from psycopg.sql import SQL, Identifier

from application import database
from application.database import Database
from application.workflows import Workflows
from bootstrap.container import open_workflows, projector_runner, read_model_views
from domain.step import StepResult
from domain.workflow import Workflow
from domain.workflow_error import WorkflowError
from projections.read_models import ProjectionViews

RESERVE, ASSIGN, PICK, PACK = "reserve-inventory", "assign-robot", "pick-items", "pack-items"
DURATIONS = {RESERVE: 10, ASSIGN: 20, PICK: 30, PACK: 40}
OUTPUTS: dict[str, dict[str, Any]] = {RESERVE: {"reservationId": "RES-1"},
                                      ASSIGN: {"robotId": "ROBOT-7"}, PICK: {"picked": 1},
                                      PACK: {"parcelId": "PCL-1"}}
LINES = [{"sku": "SKU-1", "quantity": 1}]
SCENARIOS = ("succeeded", "retried", "compensated", "resumed", "cancelled", "paused")
# Every table behind the read models' stable SQL views.
TABLES = ("wes_progress", "wes_audit", "wes_load", "wes_load_instances", "wes_load_outcomes")


class StepClock:
    """A minute ago, advancing 10 ms per reading: distinct, ordered timestamps near real
    time. It starts in the past so that it stays behind the database's `now()` however
    fast the readings come (a window of 0 s must hold no outcome), and within the load
    model's default window of 300 s."""

    def __init__(self) -> None:
        self._start = datetime.now(UTC) - timedelta(seconds=60)
        self._ticks = itertools.count()
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._start + timedelta(milliseconds=10 * next(self._ticks))


def start(app: Workflows, order: str, **kwargs: Any) -> UUID:
    """An order-fulfillment workflow the test drives by hand."""
    return app.start_workflow(definition="order-fulfillment",
                              input={"orderId": order, "items": LINES},
                              driven_by="caller", **kwargs).workflow_id


def run_step(app: Workflows, workflow_id: UUID, step_id: str, duration: int | None = None,
             ) -> int | None:
    app.start_step(workflow_id, step_id)
    return app.execute_step(workflow_id, step_id, StepResult.success(
        step_id, OUTPUTS[step_id], DURATIONS[step_id] if duration is None else duration))


def timeout(step_id: str) -> WorkflowError:
    return WorkflowError.create(step_id, "inventory-service", "TIMEOUT", "no answer in time",
                                "TIMEOUT")


def out_of_stock(step_id: str) -> WorkflowError:
    return WorkflowError.create(step_id, "warehouse-service", "OUT_OF_STOCK", "shelf empty",
                                "BUSINESS_RULE_VIOLATION")


def mixed_history(app: Workflows, prefix: str = "ORD") -> dict[str, UUID]:
    """Success, retry, failure with compensation, pause/resume, cancel, and a paused one.

    - succeeded: four steps, completed.
    - retried: reserve times out, is retried and succeeds (50 ms); assign is in flight.
    - compensated: pick fails for good; assign then reserve are undone; COMPENSATED.
    - resumed: reserve done, paused, resumed; assign waits to run.
    - cancelled: reserve done, then cancelled without compensation.
    - paused: started and paused before any step.
    """
    ids = {name: start(app, f"{prefix}-{name}", triggered_by="alice",
                       correlation_id=f"{prefix}-corr-{name}",
                       priority="HIGH" if name == "succeeded" else "NORMAL")
           for name in SCENARIOS}
    for step_id in (RESERVE, ASSIGN, PICK, PACK):
        run_step(app, ids["succeeded"], step_id)
    app.complete_saga(ids["succeeded"])

    app.start_step(ids["retried"], RESERVE)
    app.handle_step_failure(ids["retried"], RESERVE, timeout(RESERVE))
    run_step(app, ids["retried"], RESERVE, duration=50)
    app.start_step(ids["retried"], ASSIGN)

    run_step(app, ids["compensated"], RESERVE)
    run_step(app, ids["compensated"], ASSIGN)
    app.start_step(ids["compensated"], PICK)
    app.handle_step_failure(ids["compensated"], PICK, out_of_stock(PICK))
    app.mark_step_compensated(ids["compensated"], ASSIGN, {"released": True})
    app.mark_step_compensated(ids["compensated"], RESERVE, {"released": True})
    app.complete_compensation(ids["compensated"])

    run_step(app, ids["resumed"], RESERVE)
    app.pause(ids["resumed"], reason="shift change", actor="bob")
    app.resume(ids["resumed"], actor="bob")

    run_step(app, ids["cancelled"], RESERVE)
    app.cancel(ids["cancelled"], reason="customer changed their mind", actor="carol")

    app.pause(ids["paused"], reason="inspection", actor="bob")
    return ids


def completed_orders(app: Workflows, count: int, prefix: str = "BULK") -> list[UUID]:
    """`count` workflows, each run to completion (7 events plus one per step event)."""
    ids = []
    for n in range(count):
        workflow_id = start(app, f"{prefix}-{n}")
        for step_id in (RESERVE, ASSIGN, PICK, PACK):
            run_step(app, workflow_id, step_id)
        app.complete_saga(workflow_id)
        ids.append(workflow_id)
    return ids


def bulk_completed(app: Workflows, count: int, per_transaction: int = 100) -> int:
    """`count` completed order workflows (11 events each), folded in memory and saved
    `per_transaction` at a time: a long history, quickly. Returns the head position."""
    steps = [s.to_dict() for s in app.get_definition("order-fulfillment").steps]
    now = app.clock()
    pending: list[Workflow] = []
    for n in range(count):
        wf = Workflow.create(steps=steps, now=now, definition_id="order-fulfillment",
                             input={"orderId": f"BULK-{n}", "items": LINES})
        wf.start(now)
        for step_id in (RESERVE, ASSIGN, PICK, PACK):
            wf.start_step(step_id, now)
            wf.record_step_result(step_id, StepResult.success(
                step_id, OUTPUTS[step_id], DURATIONS[step_id]), now)
        wf.complete(now)
        pending.append(wf)
        if len(pending) == per_transaction or n == count - 1:
            app.save(*pending)
            pending = []
    return app.recorder.max_notification_id() or 0


def dump(models: ProjectionViews) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every read-model table (through the stable SQL views), sorted."""
    tables: dict[str, list[tuple[Any, ...]]] = {}
    with models.progress.datastore.transaction(commit=False) as curs:
        for table in TABLES:
            curs.execute(SQL("SELECT * FROM {}.{}").format(
                Identifier(models.progress.schema), Identifier(table)))
            tables[table] = sorted(tuple(repr(v) for v in row.values())
                                    for row in curs.fetchall())
    return tables


def all_pages(fetch: Callable[[str | None], Any]) -> list[Any]:
    """Every item of a paginated query, following next_cursor."""
    items: list[Any] = []
    cursor = None
    while True:
        page = fetch(cursor)
        items.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return items


@dataclass(frozen=True)
class Projected:
    """A schema whose history the live projector has fully applied."""

    db: Database
    app: Workflows
    models: ProjectionViews
    ids: dict[str, UUID]


def fresh_schema(server: Database) -> Database:
    scoped = server.with_schema(f"t_{uuid.uuid4().hex[:12]}")
    database.ensure_database(scoped)
    return scoped


@contextmanager
def live_projection(server: Database,
                    history: Callable[[Workflows], dict[str, UUID]] = mixed_history,
                    clock: Callable[[], datetime] | None = None) -> Iterator[Projected]:
    """Writes `history` into a fresh schema while the projector runs, and waits for it
    (the events' times from `clock`, a `StepClock` unless given)."""
    db = fresh_schema(server)
    app = open_workflows(db, clock=clock or StepClock())
    models = read_model_views(db, app)
    try:
        with projector_runner(models, standby_poll_seconds=0.1) as runner:
            ids = history(app)
            runner.wait(app.recorder.max_notification_id() or 0, timeout=10)
        yield Projected(db, app, models, ids)
    finally:
        models.close()
        app.close()
