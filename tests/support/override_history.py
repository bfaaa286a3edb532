"""A deterministic history that records every event type of our aggregates, written through
any `save`, and a type-strict dump of aggregate state: what the library-override tests
compare between our paths and the library's own.

The script builds its aggregates itself (fixed ids, a stepping clock), so running it twice
gives two sets of objects with equal events: one saved through our `Workflows.save`, the
other through a plain library `Application.save`.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from eventsourcing.domain import Aggregate

from domain.definition import WorkflowDefinition
from domain.definition_catalog import CATALOG_ID, DefinitionCatalog
from domain.enums import StepStatus, WorkflowStatus
from domain.load import LoadMetrics
from domain.step import StepResult
from domain.system_load import RebalancingLog, SystemLoad, system_load_id
from domain.waveless_batch import WavelessBatch
from domain.workflow import Workflow
from tests.unit.sagas import (
    ASSIGN,
    ORDER_STEP_IDS,
    PICK,
    RESERVE,
    order_fulfillment_steps,
    recoverable,
    unrecoverable,
)

_NS = uuid.UUID("3d0f7c1a-8a51-4d36-9c7e-2f5b8d1e6a40")
EVERYTHING = uuid.uuid5(_NS, "everything")  # every workflow event type, > 100 versions
CANCELLED = uuid.uuid5(_NS, "cancelled-compensating")
CANCELLED_PLAIN = uuid.uuid5(_NS, "cancelled")
BATCH = uuid.uuid5(_NS, "batch")
INSTANCE = "inventory-1"
LOAD = system_load_id(INSTANCE)
START = datetime(2025, 10, 22, 9, 0, tzinfo=UTC)

Save = Callable[..., Any]


class Clock:
    """A fixed start, 7 ms further on every reading (distinct, ordered event times)."""

    def __init__(self) -> None:
        self.ticks = 0

    def __call__(self) -> datetime:
        self.ticks += 1
        return START + timedelta(milliseconds=7 * self.ticks)


def _toggle(wf: Workflow, now: datetime) -> None:
    if wf.status == WorkflowStatus.PAUSED:
        wf.resume(now, actor="bob")
    else:
        wf.pause(now, reason="toggle", actor="bob")


def _run(wf: Workflow, step_id: str, now: datetime) -> None:
    wf.start_step(step_id, now, instance=f"{step_id}-1")
    wf.record_step_result(step_id, StepResult.success(step_id, {"done": step_id}, 12), now)


def _everything(save: Save, clock: Clock) -> None:
    """Waveless release, a late mark, a retried step, pause/resume, a failure whose
    compensation fails until retried by hand, then a workflow retry run to completion, and
    pause/resume toggles past versions 50 and 100 in saves of 1, 3 and 5 events (one save
    steps over version 50, another ends on version 100)."""
    wf = Workflow.create(steps=order_fulfillment_steps(), now=clock(),
                         definition_id="order-fulfillment", input={"orderId": "ORD-1"},
                         cut_off=START + timedelta(hours=1), workflow_id=EVERYTHING,
                         triggered_by="alice", priority="HIGH")
    save(wf)
    wf.note_waiting(clock(), "waiting for a batch")
    wf.enable_waveless(clock(), 5, 1000)
    save(wf)
    wf.release_in_batch(clock(), str(BATCH), 0)
    wf.mark_late(clock(), START + timedelta(hours=2))
    save(wf)
    wf.start_step(RESERVE, clock())
    wf.handle_step_failure(RESERVE, recoverable(RESERVE), clock())  # StepRetryScheduled
    save(wf)
    _run(wf, RESERVE, clock())
    wf.pause(clock(), reason="shift change", actor="bob")
    wf.resume(clock(), actor="bob")
    save(wf)
    _run(wf, ASSIGN, clock())
    wf.start_step(PICK, clock())
    wf.handle_step_failure(PICK, unrecoverable(PICK), clock())  # Failed, compensation starts
    save(wf)
    while wf.status == WorkflowStatus.COMPENSATING:  # until its retries run out
        wf.start_step_compensation(ASSIGN, clock(), instance="robotics-1")
        wf.handle_compensation_failure(ASSIGN, recoverable(ASSIGN, "ROBOT_BUSY"), clock())
        save(wf)
    wf.retry_compensation(clock(), actor="carol")
    wf.start_step_compensation(ASSIGN, clock())
    wf.mark_step_compensated(ASSIGN, clock(), {"unassigned": True})
    wf.mark_step_compensated(RESERVE, clock(), {"released": True})
    wf.complete_compensation(clock())
    save(wf)
    wf.retry(clock(), actor="carol")
    save(wf)
    for step_id in ORDER_STEP_IDS:
        if wf.step(step_id).status != StepStatus.COMPLETED:
            _run(wf, step_id, clock())
    save(wf)
    sizes = (1, 3, 5)
    n = 0
    while wf.version < 112:
        # One event a save just below 100, so that a save ends on version 100.
        for _ in range(1 if 95 <= wf.version < 100 else sizes[n % len(sizes)]):
            _toggle(wf, clock())
        save(wf)
        n += 1
    if wf.status == WorkflowStatus.PAUSED:
        wf.resume(clock(), actor="bob")
    wf.complete(clock())
    save(wf)


def _cancelled(save: Save, clock: Clock) -> None:
    wf = Workflow.create(steps=order_fulfillment_steps(), now=clock(), workflow_id=CANCELLED,
                         definition_id="order-fulfillment", input={"orderId": "ORD-2"})
    wf.start(clock())
    _run(wf, RESERVE, clock())
    save(wf)
    wf.cancel(clock(), reason="customer changed their mind", actor="carol", compensate=True)
    wf.mark_step_compensated(RESERVE, clock(), {"released": True})
    wf.complete_compensation(clock())
    save(wf)
    plain = Workflow.create(steps=order_fulfillment_steps(), now=clock(),
                            workflow_id=CANCELLED_PLAIN, input={"orderId": "ORD-3"})
    plain.start(clock())
    _run(plain, RESERVE, clock())
    _run(plain, ASSIGN, clock())
    plain.start_step(PICK, clock())
    plain.cancel(clock(), reason="stop", actor="carol")
    save(plain)


def _others(save: Save, clock: Clock) -> None:
    """Load metrics past SystemLoad's snapshot interval (100), a circuit change, a
    rebalancing decision, a waveless batch and a definition."""
    load = SystemLoad.register(INSTANCE, "inventory-service", clock())
    save(load)
    for n in range(104):
        metrics = LoadMetrics(INSTANCE, "inventory-service", cpu_percent=10.0 + n % 50,
                              memory_percent=20.5, active_requests=n % 7, queue_depth=n % 3,
                              avg_response_time_ms=12.25, error_rate=0.0,
                              observed_at=clock() if n % 2 else None)
        load.report(metrics, clock(), "reported" if n % 4 else "observed")
        if n % 10 == 9:
            save(load)
    load.change_circuit("OPEN", clock(), failure_rate=0.75)
    save(load)
    log = RebalancingLog.start(clock())
    log.record("inventory-service", {INSTANCE: 1.0}, {INSTANCE: 0.25}, "load", "engine", clock())
    save(log)
    save(WavelessBatch.release(BATCH, [EVERYTHING], batch_size=5, interval_ms=1000,
                               candidates=1, load_score=0.5, now=clock()))
    # As `DefinitionCatalog()` does, at the script's time instead of now.
    catalog = DefinitionCatalog._create(DefinitionCatalog.Created, id=CATALOG_ID,
                                        timestamp=clock())
    catalog.register(WorkflowDefinition.from_dict({
        "name": "pins", "version": 1, "type": "ORDER_FULFILLMENT",
        "steps": [s.to_dict() for s in order_fulfillment_steps()]}), clock(), "admin")
    save(catalog)


def record_history(save: Save) -> list[uuid.UUID]:
    """Runs the whole script through `save`; returns the ids of the aggregates it wrote."""
    clock = Clock()
    ids: list[uuid.UUID] = []

    def saving(*objs: Any, **kwargs: Any) -> Any:
        for obj in objs:
            if obj.id not in ids:
                ids.append(obj.id)
        return save(*objs, **kwargs)

    for part in (_everything, _cancelled, _others):
        part(saving, clock)
    return ids


def workflow_event_classes() -> set[type[Any]]:
    """Every concrete event class of the Workflow aggregate."""
    return {cls for cls in vars(Workflow).values()
            if isinstance(cls, type) and issubclass(cls, Workflow.Event)
            and cls is not Workflow.Event}


def aggregate_classes() -> tuple[type[Aggregate], ...]:
    return (Workflow, SystemLoad, RebalancingLog, WavelessBatch, DefinitionCatalog)


def dump(value: Any) -> Any:
    """A type-strict, comparable picture of a value: every object with its exact type and
    every attribute (dicts, slotted dataclasses, mapping proxies, enums, lists vs tuples)."""
    kind = type(value)
    name = f"{kind.__module__}.{kind.__qualname__}"
    if isinstance(value, Enum) or value is None or kind in (str, int, float, bool, bytes,
                                                             datetime, timedelta, uuid.UUID):
        return (name, repr(value))
    if isinstance(value, Mapping):
        return (name, sorted(((repr(k), dump(v)) for k, v in value.items()),
                             key=lambda kv: kv[0]))
    if isinstance(value, list | tuple | set | frozenset):
        items = [dump(v) for v in value]
        return (name, sorted(items, key=repr) if isinstance(value, set | frozenset) else items)
    if dataclasses.is_dataclass(value):
        return (name, [(f.name, dump(getattr(value, f.name)))
                       for f in dataclasses.fields(value)])
    if hasattr(value, "__dict__"):
        return (name, dump(vars(value)))
    return (name, repr(value))
