"""The golden history of the read models: a recorded mixed history, its stored events as a
fixture, and every read-model row projected from them.

The fixture (`history.json`) and the rows (`rows.json`) were made by the code *before* the
read models were changed to fold the Workflow aggregate's own state; the golden test
projects the fixture with the current code and compares every row. Regenerate both only on
purpose (a change of what a row shows), and say why in the commit:

    DATABASE_URL=postgresql://... python -m tests.golden.history --regen

The history: the override script of `tests/support/override_history.py` (every workflow
event type: waveless enable/release/waiting/late, a retried step, pause/resume, a failure
whose compensation fails until retried by hand, a workflow retry, cancels with and
without compensation, SystemLoad metrics, a circuit change, a rebalancing decision, a
waveless batch, a definition), the projection tests' mixed history driven through the
`Workflows` application, and a few more below (an answer too large to record, a failure
before any call was made, a failure for good while paused,
retries waiting for their timers, a cancel with compensation while a step is in flight).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from psycopg.sql import SQL, Identifier

from application import database
from application.database import Database
from application.workflows import Workflows
from bootstrap.container import open_workflows, projector_runner, read_model_views
from domain.workflow import Workflow
from domain.workflow_error import OUTPUT_TOO_LARGE, WorkflowError
from projections.read_models import ProjectionViews
from tests.support import override_history, projection_history
from tests.unit.sagas import (
    ASSIGN,
    RESERVE,
    order_fulfillment_steps,
    recoverable,
    unrecoverable,
)

HERE = Path(__file__).parent
HISTORY_FILE = HERE / "history.json"
ROWS_FILE = HERE / "rows.json"
# The tables behind the read models' stable SQL views, when the golden rows were recorded.
TABLES = ("wes_progress", "wes_audit", "wes_load", "wes_load_workflows", "wes_load_instances",
          "wes_load_outcomes")
_NS = uuid.UUID("9b1f3c44-7e2a-4c0b-a7d5-51f0e6c2b913")
_START = datetime(2025, 10, 22, 11, 0, tzinfo=UTC)


class _Clock:
    """A fixed start, 5 ms further on every reading."""

    def __init__(self, start: datetime) -> None:
        self.start = start
        self.ticks = 0

    def __call__(self) -> datetime:
        self.ticks += 1
        return self.start + timedelta(milliseconds=5 * self.ticks)


def _too_large(save: Callable[..., Any], clock: _Clock) -> None:
    """A step the service applied but whose answer was too large to record: the saga fails,
    the applied step is undone (its undo's own answer too large as well), then retried."""
    wf = Workflow.create(steps=order_fulfillment_steps(), now=clock(),
                         workflow_id=uuid.uuid5(_NS, "too-large"),
                         definition_id="order-fulfillment", input={"orderId": "ORD-TL"})
    wf.start(clock())
    wf.start_step(RESERVE, clock(), instance="inventory-2")
    wf.record_step_result(RESERVE, _result(RESERVE), clock(), instance="inventory-2")
    wf.start_step(ASSIGN, clock(), instance="robotics-2")
    save(wf)
    wf.handle_step_failure(ASSIGN, WorkflowError.create(
        ASSIGN, "robotics-service", OUTPUT_TOO_LARGE, "answer of 3 MB", "VALIDATION_ERROR",
        False), clock(), instance="robotics-2", duration_ms=31)
    save(wf)
    wf.start_step_compensation(ASSIGN, clock(), instance="robotics-2")
    wf.mark_step_compensated(ASSIGN, clock(), {"unassigned": True})
    wf.start_step_compensation(RESERVE, clock())
    wf.handle_compensation_failure(RESERVE, WorkflowError.create(
        RESERVE, "inventory-service", OUTPUT_TOO_LARGE, "undo answer of 2 MB",
        "VALIDATION_ERROR", False), clock())
    wf.complete_compensation(clock())
    save(wf)
    wf.retry(clock(), actor="carol")
    wf.start_step(RESERVE, clock())
    save(wf)


def _failed_before_call(save: Callable[..., Any], clock: _Clock) -> None:
    """A failure recorded before any call was made (no instance saw it): the saga fails,
    the compensation of the done step fails for good, is retried by hand and succeeds."""
    wf = Workflow.create(steps=order_fulfillment_steps(), now=clock(),
                         workflow_id=uuid.uuid5(_NS, "before-call"),
                         definition_id="order-fulfillment", input={"orderId": "ORD-BC"})
    wf.start(clock())
    wf.start_step(RESERVE, clock(), instance="inventory-1")
    wf.record_step_result(RESERVE, _result(RESERVE), clock(), instance="inventory-1")
    save(wf)
    wf.handle_step_failure(ASSIGN, WorkflowError.create(
        ASSIGN, "robotics-service", "INPUT_UNRESOLVED", "no such output", "VALIDATION_ERROR",
        False), clock())
    save(wf)
    wf.start_step_compensation(RESERVE, clock(), instance="inventory-1")
    wf.handle_compensation_failure(RESERVE, unrecoverable(RESERVE, "SHELF_LOCKED"), clock())
    save(wf)
    wf.retry_compensation(clock(), actor="carol")
    wf.start_step_compensation(RESERVE, clock())
    save(wf)
    wf.mark_step_compensated(RESERVE, clock(), {"released": True})
    wf.complete_compensation(clock())
    save(wf)


def _failed_while_paused(save: Callable[..., Any], clock: _Clock) -> None:
    """A step fails for good while the workflow is paused: the saga fails on resume."""
    wf = Workflow.create(steps=order_fulfillment_steps(), now=clock(),
                         workflow_id=uuid.uuid5(_NS, "paused-failure"),
                         definition_id="order-fulfillment", input={"orderId": "ORD-PF"})
    wf.start(clock())
    wf.start_step(RESERVE, clock())
    wf.record_step_result(RESERVE, _result(RESERVE), clock())
    wf.start_step(ASSIGN, clock(), instance="robotics-1")
    wf.pause(clock(), reason="inspection", actor="bob")
    save(wf)
    wf.handle_step_failure(ASSIGN, unrecoverable(ASSIGN), clock(), instance="robotics-1")
    save(wf)
    wf.resume(clock(), actor="bob")  # fails the saga: compensation starts
    save(wf)
    wf.start_step_compensation(RESERVE, clock())
    save(wf)


def _waiting_retries(save: Callable[..., Any], clock: _Clock) -> None:
    """A step waiting for its retry's timer, and a compensation waiting for its own; then a
    cancel with compensation while a step is in flight."""
    wf = Workflow.create(steps=order_fulfillment_steps(), now=clock(),
                         workflow_id=uuid.uuid5(_NS, "step-retry"),
                         definition_id="order-fulfillment", input={"orderId": "ORD-SR"})
    wf.start(clock())
    wf.start_step(RESERVE, clock(), instance="inventory-1")
    wf.handle_step_failure(RESERVE, recoverable(RESERVE), clock(), instance="inventory-1",
                           duration_ms=40)
    save(wf)
    comp = Workflow.create(steps=order_fulfillment_steps(), now=clock(),
                           workflow_id=uuid.uuid5(_NS, "compensation-retry"),
                           definition_id="order-fulfillment", input={"orderId": "ORD-CR"})
    comp.start(clock())
    comp.start_step(RESERVE, clock(), instance="inventory-1")
    comp.record_step_result(RESERVE, _result(RESERVE), clock(), instance="inventory-1")
    comp.start_step(ASSIGN, clock())
    comp.handle_step_failure(ASSIGN, unrecoverable(ASSIGN), clock())
    comp.start_step_compensation(RESERVE, clock(), instance="inventory-1")
    comp.handle_compensation_failure(RESERVE, recoverable(RESERVE, "BUSY"), clock())
    save(comp)
    flight = Workflow.create(steps=order_fulfillment_steps(), now=clock(),
                             workflow_id=uuid.uuid5(_NS, "cancel-in-flight"),
                             definition_id="order-fulfillment", input={"orderId": "ORD-CF"})
    flight.start(clock())
    flight.start_step(RESERVE, clock(), instance="inventory-2")
    flight.record_step_result(RESERVE, _result(RESERVE), clock(), instance="inventory-2")
    flight.start_step(ASSIGN, clock(), instance="robotics-1")
    save(flight)
    flight.cancel(clock(), reason="order withdrawn", actor="carol", compensate=True)
    save(flight)


def _result(step_id: str) -> Any:
    from domain.step import StepResult

    return StepResult.success(step_id, {"done": step_id}, 9)


def record(app: Workflows) -> None:
    """Writes the whole golden history into `app`'s event store."""
    override_history.record_history(app.save)  # it makes the definition catalog
    app.ensure_builtin_definitions()
    clock = _Clock(_START)
    for part in (_too_large, _failed_before_call, _failed_while_paused, _waiting_retries):
        part(app.save, clock)
    projection_history.mixed_history(app, prefix="GOLD")


# ---------------------------------------------------------------------------- the fixture

def stored_events(app: Workflows) -> list[dict[str, Any]]:
    """Every stored event in notification order, as the fixture keeps it."""
    notifications = app.recorder.select_notifications(start=1, limit=1_000_000)
    return [{"id": n.id, "originator_id": str(n.originator_id),
             "originator_version": n.originator_version, "topic": n.topic,
             "state": base64.b64encode(n.state).decode()} for n in notifications]


def insert_fixture(app: Workflows, events: list[dict[str, Any]]) -> None:
    """The fixture's events, inserted as they were stored (their own topics and state), in
    their order: a fresh schema gives them the same positions."""
    app.recorder.insert_events([StoredEvent(
        originator_id=UUID(e["originator_id"]), originator_version=e["originator_version"],
        topic=e["topic"], state=base64.b64decode(e["state"])) for e in events])


def _plain(value: Any) -> Any:
    """A row's value as JSON, the same however the session's time zone is set."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def rows(models: ProjectionViews, tables: tuple[str, ...] = TABLES) -> dict[str, list[Any]]:
    """Every row of every read-model table (through the stable SQL views, so generation
    numbers do not show), columns by name, rows sorted."""
    found: dict[str, list[Any]] = {}
    with models.progress.datastore.transaction(commit=False) as curs:
        for table in tables:
            curs.execute(SQL("SELECT * FROM {}.{}").format(
                Identifier(models.progress.schema), Identifier(table)))
            found[table] = sorted((_plain(dict(row)) for row in curs.fetchall()),
                                  key=lambda row: json.dumps(row, sort_keys=True))
    return found


@contextmanager
def projected_fixture(server: Database, events: list[dict[str, Any]],
                      tables: tuple[str, ...] = TABLES, chunk: int | None = None,
                      ) -> Iterator[dict[str, list[Any]]]:
    """A fresh schema holding the fixture's events, every projection run over them live:
    the rows of `tables`. With `chunk`, the events are inserted that many at a time while
    the projectors run, each chunk applied before the next (small batches)."""
    db = projection_history.fresh_schema(server)
    # Without the built-in definitions: the fixture's events alone are the history.
    app = open_workflows(db, builtin_definitions=False)
    models = read_model_views(db, app)
    try:
        if chunk is None:
            insert_fixture(app, events)
        with projector_runner(models, standby_poll_seconds=0.1) as runner:
            for start in range(0, len(events), chunk or len(events)):
                if chunk is not None:
                    insert_fixture(app, events[start:start + chunk])
                runner.wait(app.recorder.max_notification_id() or 0, timeout=60)
        yield rows(models, tables)
    finally:
        models.close()
        app.close()
        database.drop_schema(db)


def regenerate(server: Database) -> None:
    """Records the history afresh and writes both golden files."""
    db = projection_history.fresh_schema(server)
    # `record` registers the built-in definitions itself, after the history's catalog.
    app = open_workflows(db, clock=_Clock(_START + timedelta(hours=1)), builtin_definitions=False)
    try:
        record(app)
        events = stored_events(app)
    finally:
        app.close()
        database.drop_schema(db)
    HISTORY_FILE.write_text(json.dumps(events, indent=0) + "\n")
    with projected_fixture(server, events) as found:
        ROWS_FILE.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--regen", action="store_true",
                        help="record the history and the rows afresh (overwrites both files)")
    args = parser.parse_args()
    if not args.regen:
        parser.error("nothing to do without --regen")
    base = database.parse_url(os.environ["DATABASE_URL"])
    server = base.with_database(f"wes_golden_{uuid.uuid4().hex[:10]}")
    database.ensure_database(server)
    try:
        regenerate(server)
    finally:
        database.drop_database(server)


if __name__ == "__main__":
    main()
