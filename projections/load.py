"""Load read model: per service and instance, the work in flight and queued, outcomes, step
durations over a recent window, and the latest metrics, circuit state and target share.

A step's outcome (completed, failed, duration) counts for the instance that answered when
the event names it. A step in flight counts for the instance its StepStarted names (the
engine routes the call before recording the start). Work queued is not bound to an instance
yet, so it counts on the service's own row (instance = service name), as do steps started
and outcomes recorded without an instance, and compensations in flight (the undo may go
to another service). A failure recorded before any call was made (an input that does not
resolve) counts nowhere: it reached no instance. The SystemLoad streams (metrics, circuit
changes) and the rebalancing decisions fill in the rows of the real instances.

Counters are kept by difference: each workflow's step states live in a helper table, and an
event changes the counters by what it changes in that workflow's contribution (its steps in
flight, its next step waiting). Durations are kept per outcome for an hour of event time and
summarised at query time over the window asked for.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, cast
from uuid import UUID

import orjson
from eventsourcing.dispatch import singledispatchmethod
from psycopg.sql import SQL, Composed, Identifier
from psycopg.types.json import Jsonb

from domain.enums import StepStatus, WorkflowStatus
from domain.load import LoadMetrics
from domain.system_load import RebalancingLog, SystemLoad
from domain.workflow import Workflow
from projections.base import BatchProjection, Event, build_indexes_now
from projections.view import BatchTransaction, GenerationalView, GenerationTables, TableSpec

DEFAULT_WINDOW_SECONDS = 300.0
# Rows per batch above which COPY beats a pipelined INSERT (a rebuild's batches).
COPY_THRESHOLD = 64
OUTCOME_RETENTION = timedelta(hours=1)
Key = tuple[str, str]  # (service, instance)
_COUNTERS = ("in_flight", "queued", "completed", "failed")
_FACTS = ("load_score", "circuit_state", "target_share", "metrics", "metrics_at",
          "rebalanced_at")
_FINISHED = (StepStatus.COMPLETED, StepStatus.SKIPPED, StepStatus.COMPENSATED)
# The same statuses as the plain strings the rows hold, for set lookups in the fold.
_IN_FLIGHT = frozenset((StepStatus.EXECUTING.value, StepStatus.COMPENSATING.value))
_NOT_WAITING = frozenset(status.value for status in _FINISHED)
_RUNNABLE = frozenset((WorkflowStatus.PENDING.value, WorkflowStatus.EXECUTING.value))
Contribution = dict[tuple[str, str, str], int]  # (service, instance, counter) -> count


@dataclass(frozen=True, slots=True)
class LoadRow:
    """Load of one service instance (API.md `GET /v1/load`)."""

    service: str
    instance: str
    in_flight: int
    queued: int
    completed: int
    failed: int
    avg_duration_ms: float | None
    p95_duration_ms: float | None
    error_rate: float | None
    window_seconds: float
    load_score: float | None
    circuit_state: str | None
    target_share: float | None
    metrics: Mapping[str, Any] | None
    metrics_at: datetime | None
    rebalanced_at: datetime | None
    updated_at: datetime


class LoadView(ABC):
    """Queries of the load read model."""

    @abstractmethod
    def list(self, window_seconds: float = DEFAULT_WINDOW_SECONDS) -> list[LoadRow]:
        """Every service instance, by service and instance; durations and error rate over
        the last `window_seconds`."""


@dataclass(slots=True)
class _Flow:
    """What the load model remembers of one workflow: its steps' services and states."""

    status: str
    steps: list[dict[str, Any]]
    compensation_queue: list[str] | None

    def step(self, step_id: str) -> dict[str, Any]:
        return next(s for s in self.steps if s["step_id"] == step_id)

    def set_step(self, step_id: str, status: StepStatus, started_at: datetime | None = None,
                 instance: str | None = None) -> dict[str, Any]:
        step = self.step(step_id)
        step["status"] = status.value
        step["started_at"] = started_at.isoformat() if started_at else None
        step["instance"] = instance  # where the call in flight went, when the start says
        return step

    def contribution(self) -> Contribution:
        """(service, instance, counter) -> count: steps in flight, on the instance their
        start names (else on the service's own row), and the next step waiting to run (not
        bound to an instance yet: on the service's row)."""
        counts: Contribution = {}
        for step in self.steps:
            if step["status"] in _IN_FLIGHT:
                key = (step["service"], step.get("instance") or step["service"], "in_flight")
                counts[key] = counts.get(key, 0) + 1
        if counts:
            return counts
        if self.status in _RUNNABLE:
            waiting = next((s for s in self.steps if s["status"] not in _NOT_WAITING), None)
            if waiting is not None and waiting["status"] == StepStatus.PENDING:
                counts[(waiting["service"], waiting["service"], "queued")] = 1
        elif self.status == WorkflowStatus.COMPENSATING and self.compensation_queue:
            undo = next((self.step(s) for s in self.compensation_queue
                         if self.step(s)["status"] == StepStatus.COMPLETED), None)
            if undo is not None:
                counts[(undo["service"], undo["service"], "queued")] = 1
        return counts


@dataclass(slots=True)
class _Batch:
    flows: dict[UUID, _Flow]
    instances: dict[UUID, Key]
    changed_flows: set[UUID] = field(default_factory=set)
    new_instances: dict[UUID, Key] = field(default_factory=dict)
    counters: dict[Key, Counter[str]] = field(default_factory=dict)
    facts: dict[Key, dict[str, Any]] = field(default_factory=dict)
    touched: dict[Key, tuple[datetime, int]] = field(default_factory=dict)
    outcomes: list[tuple[Any, ...]] = field(default_factory=list)
    latest: datetime | None = None

    def touch(self, key: Key, at: datetime, position: int) -> None:
        self.touched[key] = (at, position)
        if key not in self.counters:
            self.counters[key] = Counter()

    def count(self, key: Key, counter: str, delta: int, at: datetime, position: int) -> None:
        self.touch(key, at, position)
        self.counters[key][counter] += delta

    def set_facts(self, key: Key, at: datetime, position: int, **facts: Any) -> None:
        self.touch(key, at, position)
        self.facts.setdefault(key, {}).update(facts)


@dataclass(frozen=True, slots=True)
class _LoadSQL:
    select_flows: Composed
    upsert_flows: Composed
    select_instances: Composed
    insert_instances: Composed
    upsert_rows: Composed
    insert_outcomes: Composed
    copy_outcomes: Composed
    prune_outcomes: Composed


class PostgresLoadView(GenerationalView[_LoadSQL], LoadView):
    """The load read model in PostgreSQL."""

    projection_name: ClassVar[str] = "load"
    table_specs: ClassVar[tuple[TableSpec, ...]] = (
        TableSpec("", SQL(
            "service text NOT NULL, instance text NOT NULL,"
            " in_flight integer NOT NULL, queued integer NOT NULL,"
            " completed bigint NOT NULL, failed bigint NOT NULL,"
            " load_score double precision, circuit_state text,"
            " target_share double precision, metrics jsonb, metrics_at timestamptz,"
            " rebalanced_at timestamptz, updated_at timestamptz NOT NULL,"
            " position bigint NOT NULL, PRIMARY KEY (service, instance)"
        )),
        TableSpec("_workflows", SQL(
            "workflow_id uuid PRIMARY KEY, status text NOT NULL, steps jsonb NOT NULL,"
            " compensation_queue text[]"
        )),
        TableSpec("_instances", SQL(
            "aggregate_id uuid PRIMARY KEY, service text NOT NULL, instance text NOT NULL"
        )),
        TableSpec("_outcomes", SQL(
            "position bigint PRIMARY KEY, service text NOT NULL, instance text NOT NULL,"
            " finished_at timestamptz NOT NULL, duration_ms double precision,"
            " ok boolean NOT NULL"
        ), indexes=(
            ("instance", SQL("service, instance, finished_at")),
            ("finished", SQL("finished_at")),
        )),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._list = SQL(
            "SELECT l.service, l.instance, l.in_flight, l.queued, l.completed, l.failed,"
            " l.load_score, l.circuit_state, l.target_share, l.metrics, l.metrics_at,"
            " l.rebalanced_at, l.updated_at, w.avg_ms, w.p95_ms, w.ok, w.failures"
            " FROM {rows} l LEFT JOIN LATERAL ("
            "  SELECT avg(o.duration_ms) FILTER (WHERE o.ok) AS avg_ms,"
            "  percentile_cont(0.95) WITHIN GROUP (ORDER BY o.duration_ms)"
            "   FILTER (WHERE o.ok) AS p95_ms,"
            "  count(*) FILTER (WHERE o.ok) AS ok, count(*) FILTER (WHERE NOT o.ok) AS failures"
            "  FROM {outcomes} o WHERE o.service = l.service AND o.instance = l.instance"
            "  AND o.finished_at >= now() - make_interval(secs => %s)) w ON true"
            " ORDER BY l.service, l.instance"
        ).format(rows=self.stable_name(), outcomes=self.stable_name("_outcomes"))

    def generation_statements(self, tables: GenerationTables) -> _LoadSQL:
        counters = [SQL("{0} = t.{0} + EXCLUDED.{0}").format(Identifier(c)) for c in _COUNTERS]
        facts = [SQL("{0} = COALESCE(EXCLUDED.{0}, t.{0})").format(Identifier(c))
                 for c in _FACTS]
        columns = ("service", "instance", *_COUNTERS, *_FACTS, "updated_at", "position")
        return _LoadSQL(
            select_flows=SQL("SELECT workflow_id, status, steps, compensation_queue FROM {}"
                             " WHERE workflow_id = ANY(%s)").format(tables["_workflows"]),
            upsert_flows=SQL(
                "INSERT INTO {} (workflow_id, status, steps, compensation_queue)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (workflow_id) DO UPDATE SET"
                " status = EXCLUDED.status, steps = EXCLUDED.steps,"
                " compensation_queue = EXCLUDED.compensation_queue").format(tables["_workflows"]),
            select_instances=SQL("SELECT aggregate_id, service, instance FROM {}"
                                 " WHERE aggregate_id = ANY(%s)").format(tables["_instances"]),
            insert_instances=SQL("INSERT INTO {} (aggregate_id, service, instance)"
                                 " VALUES (%s, %s, %s)").format(tables["_instances"]),
            upsert_rows=SQL(
                "INSERT INTO {table} AS t ({columns}) VALUES ({values})"
                " ON CONFLICT (service, instance) DO UPDATE SET {updates},"
                " updated_at = EXCLUDED.updated_at, position = EXCLUDED.position"
            ).format(table=tables[""],
                     columns=SQL(", ").join(Identifier(c) for c in columns),
                     values=SQL(", ").join(SQL("%s") for _ in columns),
                     updates=SQL(", ").join(counters + facts)),
            insert_outcomes=SQL(
                "INSERT INTO {} (position, service, instance, finished_at, duration_ms, ok)"
                " VALUES (%s, %s, %s, %s, %s, %s)").format(tables["_outcomes"]),
            copy_outcomes=SQL(
                "COPY {} (position, service, instance, finished_at, duration_ms, ok)"
                " FROM STDIN").format(tables["_outcomes"]),
            prune_outcomes=SQL("DELETE FROM {} WHERE finished_at < %s").format(
                tables["_outcomes"]),
        )

    def create_generation(self, generation: int) -> None:
        super().create_generation(generation)
        build_indexes_now(self, generation, [("_outcomes", "finished")])  # the batch's prune

    def list(self, window_seconds: float = DEFAULT_WINDOW_SECONDS) -> list[LoadRow]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._list, (window_seconds,), prepare=True)
            rows = curs.fetchall()
        return [LoadRow(
            service=r["service"], instance=r["instance"], in_flight=r["in_flight"],
            queued=r["queued"], completed=r["completed"], failed=r["failed"],
            avg_duration_ms=r["avg_ms"], p95_duration_ms=r["p95_ms"],
            error_rate=(r["failures"] / (r["ok"] + r["failures"])
                        if r["ok"] + r["failures"] else None),
            window_seconds=window_seconds, load_score=r["load_score"],
            circuit_state=r["circuit_state"], target_share=r["target_share"],
            metrics=r["metrics"], metrics_at=r["metrics_at"],
            rebalanced_at=r["rebalanced_at"], updated_at=r["updated_at"],
        ) for r in rows]


class LoadProjection(BatchProjection[PostgresLoadView]):
    """Folds step events into per-service counters and SystemLoad events into instances."""

    name = "load"

    def load(self, tx: BatchTransaction[Any], events: Sequence[Event]) -> _Batch:
        created = {e.originator_id for e in events if isinstance(e, Workflow.Created)}
        flow_ids = sorted({cast(UUID, e.originator_id) for e in events
                           if isinstance(e, Workflow.Event)} - created)
        flows: dict[UUID, _Flow] = {}
        if flow_ids:
            tx.cursor.execute(tx.sql.select_flows, (flow_ids,), prepare=True)
            flows = {r["workflow_id"]: _Flow(r["status"], r["steps"], r["compensation_queue"])
                     for r in tx.cursor.fetchall()}
        instance_ids = sorted({cast(UUID, e.originator_id) for e in events
                               if isinstance(e, SystemLoad.CircuitStateChanged
                                             | SystemLoad.MetricsReported)})
        instances: dict[UUID, Key] = {}
        if instance_ids:
            tx.cursor.execute(tx.sql.select_instances, (instance_ids,), prepare=True)
            instances = {r["aggregate_id"]: (r["service"], r["instance"])
                         for r in tx.cursor.fetchall()}
        return _Batch(flows, instances)

    def fold(self, state: _Batch, event: Event, position: int) -> None:
        if isinstance(event, Workflow.Event):
            if isinstance(event, Workflow.Created):
                before: Contribution = {}
                flow = state.flows[event.originator_id] = _Flow(
                    WorkflowStatus.PENDING.value,
                    [{"step_id": s["step_id"], "service": s.get("service", ""),
                      "status": StepStatus.PENDING.value, "started_at": None}
                     for s in event.steps], None)
            else:
                flow = state.flows[event.originator_id]
                before = flow.contribution()
                _workflow_handler(type(event))(self, event, flow, state, position)
            after = flow.contribution()
            if after != before:
                at = event.timestamp
                for key, count in after.items():
                    if count != before.get(key, 0):
                        state.count(key[:2], key[2], count - before.get(key, 0), at, position)
                for key, count in before.items():
                    if key not in after:
                        state.count(key[:2], key[2], -count, at, position)
            state.changed_flows.add(event.originator_id)
            state.latest = max(state.latest or event.timestamp, event.timestamp)
        else:
            self._apply_other(event, state, position)

    def save(self, tx: BatchTransaction[Any], state: _Batch) -> None:
        cursor = tx.cursor
        if state.changed_flows:
            cursor.executemany(tx.sql.upsert_flows, [
                (i, state.flows[i].status, Jsonb(state.flows[i].steps, _steps_json),
                 state.flows[i].compensation_queue) for i in sorted(state.changed_flows)])
        if state.new_instances:
            cursor.executemany(tx.sql.insert_instances,
                               [(i, *key) for i, key in state.new_instances.items()])
        if state.touched:
            rows = []
            for key in sorted(state.touched):
                counters = state.counters[key]
                facts = state.facts.get(key, {})
                at, position = state.touched[key]
                rows.append((*key, *(counters[c] for c in _COUNTERS),
                             *(facts.get(f) for f in _FACTS), at, position))
            cursor.executemany(tx.sql.upsert_rows, rows)
        if len(state.outcomes) >= COPY_THRESHOLD:
            with cursor.copy(tx.sql.copy_outcomes) as copy:
                for outcome in state.outcomes:
                    copy.write_row(outcome)
        elif state.outcomes:
            cursor.executemany(tx.sql.insert_outcomes, state.outcomes)
        if state.latest is not None:
            cursor.execute(tx.sql.prune_outcomes, (state.latest - OUTCOME_RETENTION,),
                           prepare=True)

    # ------------------------------------------------------------------ workflow events

    @singledispatchmethod
    def _apply(self, event: Workflow.Event, flow: _Flow, state: _Batch, position: int) -> None:
        """An event that changes no step or workflow state the load model keeps."""

    @_apply.register(Workflow.Started)
    @_apply.register(Workflow.Resumed)
    @_apply.register(Workflow.Retried)
    def _(self, event: Workflow.Event, flow: _Flow, state: _Batch, position: int) -> None:
        flow.status = WorkflowStatus.EXECUTING.value
        if isinstance(event, Workflow.Retried):
            flow.compensation_queue = None
            for step_id in event.reset_steps:
                flow.set_step(step_id, StepStatus.PENDING)

    @_apply.register(Workflow.StepStarted)
    def _(self, event: Workflow.StepStarted, flow: _Flow, state: _Batch,
          position: int) -> None:
        flow.set_step(event.step_id, StepStatus.EXECUTING, event.timestamp, event.instance)

    @_apply.register(Workflow.StepExecuted)
    def _(self, event: Workflow.StepExecuted, flow: _Flow, state: _Batch,
          position: int) -> None:
        service = flow.set_step(event.step_id, StepStatus.COMPLETED)["service"]
        key = (service, event.instance or service)
        state.count(key, "completed", 1, event.timestamp, position)
        state.outcomes.append((position, *key, event.timestamp,
                               float(event.execution_time_ms), True))

    @_apply.register(Workflow.StepFailed)
    def _(self, event: Workflow.StepFailed, flow: _Flow, state: _Batch,
          position: int) -> None:
        step = flow.step(event.step_id)
        started, was_in_flight = step["started_at"], step["status"] in _IN_FLIGHT
        # Read before set_step clears it: an engine deadline or a fail() of a running step
        # names no instance, yet the call went to the one the start named.
        started_on = step.get("instance")
        service = flow.set_step(event.step_id, StepStatus.FAILED)["service"]
        if not was_in_flight and event.instance is None:
            # Failed before any call was made (its input did not resolve): no instance saw
            # it, so it is no instance's outcome (it would show as a failing instance).
            return
        duration: float | None = event.duration_ms
        if duration is None and started:
            duration = (event.timestamp - datetime.fromisoformat(started)).total_seconds() * 1000
        key = (service, event.instance or started_on or service)
        state.count(key, "failed", 1, event.timestamp, position)
        state.outcomes.append((position, *key, event.timestamp, duration, False))

    @_apply.register(Workflow.StepRetryScheduled)
    def _(self, event: Workflow.StepRetryScheduled, flow: _Flow, state: _Batch,
          position: int) -> None:
        flow.set_step(event.step_id, StepStatus.PENDING)

    @_apply.register(Workflow.StepCompensationStarted)
    def _(self, event: Workflow.StepCompensationStarted, flow: _Flow, state: _Batch,
          position: int) -> None:
        # Counted on the step's service row: the undo may go to another service, whose
        # instance would not belong on this service's rows.
        flow.set_step(event.step_id, StepStatus.COMPENSATING, event.timestamp)

    @_apply.register(Workflow.StepCompensationFailed)
    def _(self, event: Workflow.StepCompensationFailed, flow: _Flow, state: _Batch,
          position: int) -> None:
        flow.set_step(event.step_id, StepStatus.COMPLETED)

    @_apply.register(Workflow.StepCompensated)
    def _(self, event: Workflow.StepCompensated, flow: _Flow, state: _Batch,
          position: int) -> None:
        flow.set_step(event.step_id, StepStatus.COMPENSATED)

    @_apply.register(Workflow.CompensationStarted)
    def _(self, event: Workflow.CompensationStarted, flow: _Flow, state: _Batch,
          position: int) -> None:
        flow.status = WorkflowStatus.COMPENSATING.value
        flow.compensation_queue = list(event.step_ids)

    @_apply.register(Workflow.CompensationRetried)
    def _(self, event: Workflow.CompensationRetried, flow: _Flow, state: _Batch,
          position: int) -> None:
        flow.status = WorkflowStatus.COMPENSATING.value

    @_apply.register(Workflow.Paused)
    @_apply.register(Workflow.Cancelled)
    @_apply.register(Workflow.Failed)
    @_apply.register(Workflow.Completed)
    @_apply.register(Workflow.CompensationCompleted)
    @_apply.register(Workflow.CompensationFailed)
    def _(self, event: Workflow.Event, flow: _Flow, state: _Batch, position: int) -> None:
        flow.status = _STATUS_AFTER[type(event)].value

    # ------------------------------------------------------------------ instance events

    @singledispatchmethod
    def _apply_other(self, event: Event, state: _Batch, position: int) -> None:
        """Events of other streams (definitions, ...) only move the position."""

    @_apply_other.register(SystemLoad.Registered)
    def _(self, event: SystemLoad.Registered, state: _Batch, position: int) -> None:
        key = (event.service_name, event.instance_id)
        state.instances[event.originator_id] = key
        state.new_instances[event.originator_id] = key
        state.touch(key, event.timestamp, position)

    @_apply_other.register(SystemLoad.MetricsReported)
    def _(self, event: SystemLoad.MetricsReported, state: _Batch, position: int) -> None:
        metrics = dict(event.metrics)
        score = metrics.get("load_score")
        if score is None:
            score = LoadMetrics.from_dict(metrics).load_score
        key = state.instances.get(event.originator_id) \
            or (metrics["service_name"], metrics["instance_id"])
        state.set_facts(key, event.timestamp, position, load_score=float(score),
                        metrics=Jsonb({**metrics, "source": event.source}),
                        metrics_at=event.timestamp)

    @_apply_other.register(SystemLoad.CircuitStateChanged)
    def _(self, event: SystemLoad.CircuitStateChanged, state: _Batch, position: int) -> None:
        state.set_facts(state.instances[event.originator_id], event.timestamp, position,
                        circuit_state=event.state)

    @_apply_other.register(RebalancingLog.SystemLoadRebalanced)
    def _(self, event: RebalancingLog.SystemLoadRebalanced, state: _Batch,
          position: int) -> None:
        for instance, share in sorted(event.target_shares.items()):
            state.set_facts((event.service_name, instance), event.timestamp, position,
                            target_share=float(share), rebalanced_at=event.timestamp)


def _steps_json(steps: list[dict[str, Any]]) -> bytes:
    """A flow's steps as JSON (str keys; str, int and None values): orjson writes them as
    json.dumps would, several times faster."""
    return orjson.dumps(steps)


_WORKFLOW_HANDLERS: dict[type, Callable[..., None]] = {}


def _workflow_handler(event_type: type) -> Callable[..., None]:
    """`LoadProjection._apply`'s implementation for this event type, looked up once per type:
    calling the singledispatchmethod builds a bound wrapper on every call (a tenth of the
    fold's time in a rebuild)."""
    handler = _WORKFLOW_HANDLERS.get(event_type)
    if handler is None:
        method = LoadProjection.__dict__["_apply"]
        LoadProjection._apply  # noqa: B018 - the library's descriptor registers deferred types
        handler = _WORKFLOW_HANDLERS[event_type] = method.dispatcher.dispatch(event_type)
    return handler


_STATUS_AFTER: Mapping[type, WorkflowStatus] = {
    Workflow.Paused: WorkflowStatus.PAUSED,
    Workflow.Cancelled: WorkflowStatus.CANCELLED,
    Workflow.Failed: WorkflowStatus.FAILED,
    Workflow.Completed: WorkflowStatus.COMPLETED,
    Workflow.CompensationCompleted: WorkflowStatus.COMPENSATED,
    Workflow.CompensationFailed: WorkflowStatus.COMPENSATION_FAILED,
}
