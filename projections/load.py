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

Counters are kept by difference: an event changes the counters by what it changes in its
workflow's contribution (`domain.load_view.load_contribution` of the Workflow aggregate,
before and after the event: its steps in flight, its next step waiting). Durations are
kept per outcome for an hour of event time and summarised at query time over the window
asked for.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, cast
from uuid import UUID

from eventsourcing.dispatch import singledispatchmethod
from psycopg.sql import SQL, Composed, Identifier
from psycopg.types.json import Jsonb

from domain.load import LoadMetrics
from domain.load_view import Contribution, in_flight, instance_in_flight, load_contribution
from domain.system_load import RebalancingLog, SystemLoad
from domain.workflow import Workflow
from projections.base import BatchProjection, Event, build_indexes_now
from projections.batch import BatchTransaction
from projections.generations import GenerationalView, GenerationTables, TableSpec

DEFAULT_WINDOW_SECONDS = 300.0
# Rows per batch above which COPY beats a pipelined INSERT (a rebuild's batches).
COPY_THRESHOLD = 64
OUTCOME_RETENTION = timedelta(hours=1)
Key = tuple[str, str]  # (service, instance)
_COUNTERS = ("in_flight", "queued", "completed", "failed")
_FACTS = ("load_score", "circuit_state", "target_share", "metrics", "metrics_at",
          "rebalanced_at")


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
class _Batch:
    instances: dict[UUID, Key]
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
    select_instances: Composed
    insert_instances: Composed
    upsert_rows: Composed
    insert_outcomes: Composed
    copy_outcomes: Composed
    prune_outcomes: Composed


class PostgresLoadView(GenerationalView[_LoadSQL], LoadView):
    """The load read model in PostgreSQL."""

    projection_name: ClassVar[str] = "load"
    # Until the load model folded the Workflow aggregate, it kept a private copy of each
    # workflow's flow here (issue 15); an upgraded schema still has it in its generations.
    retired_suffixes: ClassVar[tuple[str, ...]] = ("_workflows",)
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
        self.workflows.prepare(events)
        instance_ids = sorted({cast(UUID, e.originator_id) for e in events
                               if isinstance(e, SystemLoad.CircuitStateChanged
                                             | SystemLoad.MetricsReported)})
        instances: dict[UUID, Key] = {}
        if instance_ids:
            tx.cursor.execute(tx.sql.select_instances, (instance_ids,), prepare=True)
            instances = {r["aggregate_id"]: (r["service"], r["instance"])
                         for r in tx.cursor.fetchall()}
        return _Batch(instances)

    def fold(self, state: _Batch, event: Event, position: int) -> None:
        if not isinstance(event, Workflow.Event):
            self._apply_other(event, state, position)
            return
        if isinstance(event, Workflow.StepExecuted | Workflow.StepFailed):
            self._outcome(event, state, position)  # of the step's state before the event
        # The contribution before the event is the one computed after the previous event
        # (the cache remembers it for that version): one computation per event.
        found, after = self.workflows.fold_derived(event, load_contribution)
        before: Contribution = found or {}
        if after != before:
            at = event.timestamp
            for key, count in after.items():
                was = before.get(key, 0)
                if count != was:
                    state.count(key[:2], key[2], count - was, at, position)
            for key, count in before.items():
                if key not in after:
                    state.count(key[:2], key[2], -count, at, position)
        if state.latest is None or event.timestamp > state.latest:
            state.latest = event.timestamp

    def save(self, tx: BatchTransaction[Any], state: _Batch) -> None:
        cursor = tx.cursor
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
        self.workflows.trim()

    # ------------------------------------------------------------------ workflow events

    def _outcome(self, event: Workflow.StepExecuted | Workflow.StepFailed, state: _Batch,
                 position: int) -> None:
        """A step's completion or failure counts for the instance that answered (the event
        names it), else the one its start named, else the service's own row."""
        step = self.workflows.get(event.originator_id).steps[event.step_id]
        service = step.spec.service
        if isinstance(event, Workflow.StepExecuted):
            key = (service, event.instance or service)
            state.count(key, "completed", 1, event.timestamp, position)
            state.outcomes.append((position, *key, event.timestamp,
                                   float(event.execution_time_ms), True))
            return
        was_in_flight = in_flight(step)
        if not was_in_flight and event.instance is None:
            # Failed before any call was made (its input did not resolve): no instance saw
            # it, so it is no instance's outcome (it would show as a failing instance).
            return
        duration: float | None = event.duration_ms
        if duration is None and was_in_flight and step.started_at is not None:
            duration = (event.timestamp - step.started_at).total_seconds() * 1000
        # An engine deadline or a fail() of a running step names no instance, yet the call
        # went to the one the start named.
        key = (service, event.instance or instance_in_flight(step) or service)
        state.count(key, "failed", 1, event.timestamp, position)
        state.outcomes.append((position, *key, event.timestamp, duration, False))

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
