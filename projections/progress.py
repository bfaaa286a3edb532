"""Progress read model: one row per workflow, for dashboards and `GET /v1/workflows`.

The fold mirrors the Workflow aggregate's own rules (progress %, current step, compensation
progress), so a row always agrees with the workflow folded from the same events.

A row says what is true now. `current_step` is the domain's `current_step` (None once the
workflow is finished). `last_error` is the error that explains the present state, None when
none does: a step's failure until that step succeeds, the failure the saga failed with
while it is compensated, a compensation's failure until that compensation succeeds; a
completed, cancelled or retried workflow has none. `last_failure` is history: the most
recent error ever recorded, whatever happened since.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, cast
from uuid import UUID

from eventsourcing.dispatch import singledispatchmethod
from psycopg.sql import SQL, Composed, Identifier
from psycopg.types.json import Jsonb

from domain.enums import StepStatus, WorkflowPriority, WorkflowStatus
from domain.exceptions import InvalidValue
from domain.workflow import Workflow
from domain.workflow.transitions import current_step
from projections.base import BatchProjection, Event
from projections.pagination import Page, check_limit, decode_cursor, encode_cursor
from projections.view import (
    AsyncReadPool,
    BatchTransaction,
    GenerationalView,
    GenerationTables,
    TableSpec,
)

log = logging.getLogger(__name__)

SORT_KEYS = ("created_at", "updated_at", "priority", "status")
_SORT_COLUMNS = {"created_at": ("created_at", "timestamptz"),
                 "updated_at": ("updated_at", "timestamptz"),
                 "priority": ("priority_rank", "smallint"),
                 "status": ("status", "text")}
_DONE = (StepStatus.COMPLETED, StepStatus.SKIPPED)
_IN_FLIGHT = (StepStatus.EXECUTING, StepStatus.COMPENSATING)
COLUMNS = (
    "id", "name", "definition", "definition_version", "type", "priority", "priority_rank",
    "status", "current_step", "steps_done", "steps_total", "progress_percent", "attempts",
    "retries", "retry_count", "last_error", "compensation_progress", "correlation_id",
    "triggered_by", "driven_by", "waiting_reason", "paused_reason", "next_attempt_at",
    "batch_id", "late", "waveless", "steps",
    "executed_steps", "compensated_steps", "compensation_queue", "created_at", "started_at",
    "updated_at", "finished_at", "version", "position", "last_failure", "saga_error",
)
# Columns added after the first release: added to a live table that lacks them (see
# PostgresProgressView.create_table), last in COLUMNS so that fresh and upgraded tables agree.
ADDED_COLUMNS = (("last_failure", "jsonb"), ("saga_error", "jsonb"))


@dataclass(frozen=True, slots=True)
class StepProgress:
    """One step of a workflow as the progress row shows it."""

    step_id: str
    name: str
    service: str
    status: str
    attempts: int


@dataclass(frozen=True, slots=True)
class ProgressRow:
    """A workflow's progress (API.md `GET /v1/workflows/{id}`, plus a few more fields)."""

    id: UUID
    name: str
    definition: str
    definition_version: int
    type: str
    priority: str
    status: str
    current_step: str | None
    steps_done: int
    steps_total: int
    progress_percent: float
    attempts: int
    retries: int
    retry_count: int
    last_error: Mapping[str, Any] | None
    compensation_progress: float | None
    correlation_id: str
    triggered_by: str
    driven_by: str
    waiting_reason: str | None
    paused_reason: str | None
    next_attempt_at: datetime | None
    batch_id: str | None
    late: bool
    waveless: bool
    steps: tuple[StepProgress, ...]
    created_at: datetime
    started_at: datetime | None
    updated_at: datetime
    finished_at: datetime | None
    version: int
    position: int
    last_failure: Mapping[str, Any] | None = None


class ProgressView(ABC):
    """Queries of the progress read model."""

    @abstractmethod
    def get(self, workflow_id: UUID) -> ProgressRow | None:
        """One workflow's row, or None."""

    @abstractmethod
    def list(self, *, status: str | Sequence[str] | None = None,
             priority: str | Sequence[str] | None = None,
             type: str | Sequence[str] | None = None,
             definition: str | None = None, correlation_id: str | None = None,
             created_after: datetime | None = None, created_before: datetime | None = None,
             sort: str = "created_at", descending: bool = True, limit: int = 50,
             cursor: str | None = None) -> Page[ProgressRow]:
        """Rows matching every filter given, in a stable keyset order."""


@dataclass(slots=True)
class _Progress:
    """A workflow's progress while events are folded into it."""

    id: UUID
    name: str
    definition: str
    definition_version: int
    type: str
    priority: str
    status: str
    retry_count: int
    last_error: dict[str, Any] | None
    correlation_id: str
    triggered_by: str
    driven_by: str
    waiting_reason: str | None
    paused_reason: str | None
    next_attempt_at: datetime | None
    batch_id: str | None
    late: bool
    waveless: bool
    steps: list[dict[str, Any]]
    executed_steps: list[str]
    compensated_steps: list[str]
    compensation_queue: list[str] | None
    created_at: datetime
    started_at: datetime | None
    updated_at: datetime
    finished_at: datetime | None
    version: int
    position: int
    last_failure: dict[str, Any] | None = None
    # The error this run of the saga failed with: current again once a compensation's own
    # failure is resolved.
    saga_error: dict[str, Any] | None = None
    _by_id: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_id = {s["step_id"]: s for s in self.steps}

    @classmethod
    def created(cls, event: Workflow.Created, position: int) -> _Progress:
        return cls(
            id=event.originator_id, name=event.name, definition=event.definition_id,
            definition_version=event.definition_version, type=event.workflow_type,
            priority=event.priority, status=WorkflowStatus.PENDING.value, retry_count=0,
            last_error=None, correlation_id=event.correlation_id,
            triggered_by=event.triggered_by, driven_by=event.driven_by, waiting_reason=None,
            paused_reason=None, next_attempt_at=None, batch_id=None, late=False, waveless=False,
            steps=[{"step_id": s["step_id"], "name": s.get("name") or s["step_id"],
                    "service": s.get("service", ""), "status": StepStatus.PENDING.value,
                    "attempts": 0} for s in event.steps],
            executed_steps=[], compensated_steps=[], compensation_queue=None,
            created_at=event.timestamp, started_at=None, updated_at=event.timestamp,
            finished_at=None, version=event.originator_version, position=position,
        )

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> _Progress:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__ if name != "_by_id"})

    def step(self, step_id: str) -> dict[str, Any]:
        return self._by_id[step_id]

    def set_step(self, step_id: str, status: StepStatus) -> None:
        self._by_id[step_id]["status"] = status.value

    def current_step(self) -> str | None:
        """Workflow.current_step_id: the domain's rule, on the row's step states."""
        return current_step(self.status, ((s["step_id"], s["status"]) for s in self.steps))

    def failed(self, error: Mapping[str, Any]) -> None:
        """An error was recorded: it is current, and the latest in the history."""
        self.last_error = self.last_failure = dict(error)

    def resolved(self, step_id: str, fallback: dict[str, Any] | None) -> None:
        """The step succeeded (or was undone): its error is no longer current."""
        if self.last_error is not None and self.last_error.get("step_id") == step_id \
                and self.last_error != self.saga_error:
            self.last_error = fallback

    def compensation_progress(self) -> float | None:
        """Workflow.compensation_progress, once a compensation has started in this run."""
        if self.compensation_queue is None:
            return None
        if not self.executed_steps:
            return 100.0
        return len(self.compensated_steps) * 100.0 / len(self.executed_steps)

    def values(self) -> tuple[Any, ...]:
        """The row in COLUMNS order, derived columns computed."""
        done = sum(1 for s in self.steps if s["status"] in _DONE)
        total = len(self.steps)
        attempts = sum(int(s["attempts"]) for s in self.steps)
        retries = sum(max(int(s["attempts"]) - 1, 0) for s in self.steps)
        return (
            self.id, self.name, self.definition, self.definition_version, self.type,
            self.priority, WorkflowPriority(self.priority).rank, self.status,
            self.current_step(), done, total, done * 100.0 / total if total else 0.0,
            attempts, retries, self.retry_count,
            Jsonb(self.last_error) if self.last_error is not None else None,
            self.compensation_progress(), self.correlation_id, self.triggered_by,
            self.driven_by, self.waiting_reason, self.paused_reason, self.next_attempt_at,
            self.batch_id, self.late, self.waveless,
            Jsonb(self.steps), self.executed_steps, self.compensated_steps,
            self.compensation_queue, self.created_at, self.started_at, self.updated_at,
            self.finished_at, self.version, self.position,
            Jsonb(self.last_failure) if self.last_failure is not None else None,
            Jsonb(self.saga_error) if self.saga_error is not None else None,
        )


@dataclass(slots=True)
class _Batch:
    rows: dict[UUID, _Progress]
    changed: set[UUID] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class _ProgressSQL:
    select: Composed
    upsert: Composed


class PostgresProgressView(GenerationalView[_ProgressSQL], ProgressView):
    """The progress read model in PostgreSQL."""

    projection_name: ClassVar[str] = "progress"
    table_specs: ClassVar[tuple[TableSpec, ...]] = (
        TableSpec("", SQL(
            "id uuid PRIMARY KEY, name text NOT NULL, definition text NOT NULL,"
            " definition_version integer NOT NULL, type text NOT NULL, priority text NOT NULL,"
            " priority_rank smallint NOT NULL, status text NOT NULL, current_step text,"
            " steps_done integer NOT NULL, steps_total integer NOT NULL,"
            " progress_percent double precision NOT NULL, attempts integer NOT NULL,"
            " retries integer NOT NULL, retry_count integer NOT NULL, last_error jsonb,"
            " compensation_progress double precision, correlation_id text NOT NULL,"
            " triggered_by text NOT NULL, driven_by text NOT NULL, waiting_reason text,"
            " paused_reason text, next_attempt_at timestamptz, batch_id text,"
            " late boolean NOT NULL, waveless boolean NOT NULL,"
            " steps jsonb NOT NULL, executed_steps text[] NOT NULL,"
            " compensated_steps text[] NOT NULL, compensation_queue text[],"
            " created_at timestamptz NOT NULL, started_at timestamptz,"
            " updated_at timestamptz NOT NULL, finished_at timestamptz,"
            " version integer NOT NULL, position bigint NOT NULL,"
            " last_failure jsonb, saga_error jsonb"
        ), indexes=(
            ("created", SQL("created_at, id")),
            ("updated", SQL("updated_at, id")),
            ("priority", SQL("priority_rank, id")),
            ("status", SQL("status, id")),
            ("type", SQL("type, created_at")),
            ("definition", SQL("definition, created_at")),
            ("correlation", SQL("correlation_id")),
        )),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        columns = SQL(", ").join(Identifier(c) for c in COLUMNS)
        view = self.stable_name()
        self._columns = columns
        # Composed once: composing 36 identifiers on every call cost ~60 us per query.
        self._get = SQL("SELECT {} FROM {} WHERE id = %s").format(columns, view).as_bytes(None)
        # Rows as JSON objects with ProgressRow's fields, encoded by PostgreSQL (::text, so
        # that psycopg hands them over undecoded): a reader that only validates and
        # re-encodes them skips decoding 36 columns in Python (measured: a third of the
        # query's CPU).
        self._get_json_many = SQL(
            "SELECT r.id, row_to_json(r)::text AS row FROM (SELECT {} FROM {}"
            " WHERE id = ANY(%s::uuid[])) r"
        ).format(SQL(", ").join(Identifier(c) for c in ProgressRow.__dataclass_fields__),
                 view).as_bytes(None)
        self._lists: dict[tuple[str, bool], Composed] = {}
        for sort, (column, cast_to) in _SORT_COLUMNS.items():
            for descending in (True, False):
                # Priority sorts by importance: "descending" puts HIGH (rank 1) first.
                down = descending != (sort == "priority")
                self._lists[(sort, descending)] = SQL(
                    "SELECT {columns} FROM {view} WHERE"
                    " (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s::text[]))"
                    " AND (%(priorities)s::text[] IS NULL"
                    " OR priority = ANY(%(priorities)s::text[]))"
                    " AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))"
                    " AND (%(definition)s::text IS NULL OR definition = %(definition)s::text)"
                    " AND (%(correlation_id)s::text IS NULL"
                    " OR correlation_id = %(correlation_id)s::text)"
                    " AND (%(created_after)s::timestamptz IS NULL"
                    " OR created_at >= %(created_after)s::timestamptz)"
                    " AND (%(created_before)s::timestamptz IS NULL"
                    " OR created_at < %(created_before)s::timestamptz)"
                    " AND (%(after_id)s::uuid IS NULL OR ({column}, id) {op}"
                    " (%(after_value)s::{cast_to}, %(after_id)s::uuid))"
                    " ORDER BY {column} {direction}, id {direction} LIMIT %(limit)s"
                ).format(columns=columns, view=view, column=Identifier(column),
                         cast_to=SQL(cast_to), op=SQL("<" if down else ">"),
                         direction=SQL("DESC" if down else "ASC"))

    def create_table(self) -> None:
        """As every view, then adds the columns a table made by an earlier release lacks
        (and shows them in the stable view). They start empty on the rows already there,
        so the projection is marked as needing a rebuild (status `rebuild_needed`) until
        a blue/green rebuild replaces the generation."""
        super().create_table()
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._select_pointer_for_share, (self.projection_name,))
            pointer = curs.fetchone()
            assert pointer is not None  # create_table inserted it
            table = self._table_name(int(pointer["generation"]), "")
            curs.execute(SQL("SELECT column_name FROM information_schema.columns"
                             " WHERE table_schema = %s AND table_name = %s"),
                         (self.schema, table))
            present = {r["column_name"] for r in curs.fetchall()}
            missing = [(name, kind) for name, kind in ADDED_COLUMNS if name not in present]
            if not missing:
                return
            schema = Identifier(self.schema)
            for name, kind in missing:
                curs.execute(SQL("ALTER TABLE {}.{} ADD COLUMN IF NOT EXISTS {} {}").format(
                    schema, Identifier(table), Identifier(name), SQL(kind)))
            # The view was made with the columns of its day: appending columns is allowed.
            curs.execute(SQL("CREATE OR REPLACE VIEW {} AS SELECT * FROM {}.{}").format(
                self.stable_name(), schema, Identifier(table)))
            curs.execute(SQL("SELECT EXISTS (SELECT 1 FROM {}.{}) AS rows").format(
                schema, Identifier(table)))
            found = curs.fetchone()
            if found and found["rows"]:
                added = ", ".join(name for name, _kind in missing)
                reason = (f"columns {added} were added empty to the rows of an earlier"
                          f" release: run `wes projections rebuild {self.projection_name}`")
                self.mark_rebuild_needed(curs, int(pointer["generation"]), reason)
                log.warning("projection needs a rebuild",
                            extra={"projection": self.projection_name, "reason": reason})

    def generation_statements(self, tables: GenerationTables) -> _ProgressSQL:
        updates = SQL(", ").join(
            SQL("{0} = EXCLUDED.{0}").format(Identifier(c)) for c in COLUMNS[1:])
        return _ProgressSQL(
            select=SQL("SELECT {} FROM {} WHERE id = ANY(%s)").format(self._columns, tables[""]),
            upsert=SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (id) DO UPDATE SET {}").format(
                tables[""], self._columns, SQL(", ").join(SQL("%s") for _ in COLUMNS), updates),
        )

    # ------------------------------------------------------------------ queries

    def get(self, workflow_id: UUID) -> ProgressRow | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._get, (workflow_id,), prepare=True)
            row = curs.fetchone()
        return _to_dto(row) if row else None

    async def get_json_many(self, reads: AsyncReadPool, workflow_ids: Sequence[UUID]
                            ) -> dict[UUID, str]:
        """`get` of several workflows in one statement on `reads` (the event loop's
        connections): {id: row as a JSON object with ProgressRow's fields, times in ISO 8601
        with their offset} for those that exist."""
        rows = await reads.fetchall(self._get_json_many, (list(workflow_ids),))
        return {r["id"]: r["row"] for r in rows}

    def list(self, *, status: str | Sequence[str] | None = None,
             priority: str | Sequence[str] | None = None,
             type: str | Sequence[str] | None = None,
             definition: str | None = None, correlation_id: str | None = None,
             created_after: datetime | None = None, created_before: datetime | None = None,
             sort: str = "created_at", descending: bool = True, limit: int = 50,
             cursor: str | None = None) -> Page[ProgressRow]:
        if sort not in _SORT_COLUMNS:
            raise InvalidValue("sort", sort, f"must be one of {list(SORT_KEYS)}")
        check_limit(limit)
        after_value: Any = None
        after_id: UUID | None = None
        query = {"s": sort, "d": descending}
        if cursor is not None:
            key = decode_cursor(cursor, "progress", query)
            after_value, after_id = key.get("v"), UUID(str(key.get("i")))
        params = {
            "statuses": _many(status), "priorities": _many(priority), "types": _many(type),
            "definition": definition, "correlation_id": correlation_id,
            "created_after": created_after, "created_before": created_before,
            "after_value": after_value, "after_id": after_id, "limit": limit + 1,
        }
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._lists[(sort, descending)], params, prepare=True)
            rows = curs.fetchall()
        items = tuple(_to_dto(r) for r in rows[:limit])
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            column = _SORT_COLUMNS[sort][0]
            value = last[column]
            next_cursor = encode_cursor("progress", {
                **query, "v": value.isoformat() if isinstance(value, datetime) else value,
                "i": str(last["id"])})
        return Page(items, next_cursor)


def _many(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def _to_dto(row: Mapping[str, Any]) -> ProgressRow:
    steps = tuple(StepProgress(s["step_id"], s["name"], s["service"], s["status"],
                               s["attempts"]) for s in row["steps"])
    return ProgressRow(
        id=row["id"], name=row["name"], definition=row["definition"],
        definition_version=row["definition_version"], type=row["type"],
        priority=row["priority"], status=row["status"], current_step=row["current_step"],
        steps_done=row["steps_done"], steps_total=row["steps_total"],
        progress_percent=row["progress_percent"], attempts=row["attempts"],
        retries=row["retries"], retry_count=row["retry_count"], last_error=row["last_error"],
        compensation_progress=row["compensation_progress"],
        correlation_id=row["correlation_id"], triggered_by=row["triggered_by"],
        driven_by=row["driven_by"], waiting_reason=row["waiting_reason"],
        paused_reason=row["paused_reason"], next_attempt_at=row["next_attempt_at"],
        batch_id=row["batch_id"], late=row["late"], waveless=row["waveless"], steps=steps,
        created_at=row["created_at"], started_at=row["started_at"],
        updated_at=row["updated_at"], finished_at=row["finished_at"], version=row["version"],
        position=row["position"], last_failure=row["last_failure"],
    )


class ProgressProjection(BatchProjection[PostgresProgressView]):
    """Folds workflow events into progress rows; every other event only moves the position."""

    name = "progress"

    def load(self, tx: BatchTransaction[Any], events: Sequence[Event]) -> _Batch:
        ids = _workflow_ids(events, exclude_created=True)
        rows: dict[UUID, _Progress] = {}
        if ids:
            tx.cursor.execute(tx.sql.select, (ids,), prepare=True)
            rows = {r["id"]: _Progress.from_row(r) for r in tx.cursor.fetchall()}
        return _Batch(rows)

    def fold(self, state: _Batch, event: Event, position: int) -> None:
        if isinstance(event, Workflow.Created):
            state.rows[event.originator_id] = _Progress.created(event, position)
        elif isinstance(event, Workflow.Event):
            row = state.rows[event.originator_id]
            self._apply(event, row)
            row.updated_at = event.timestamp
            row.version = event.originator_version
            row.position = position
        else:
            return
        state.changed.add(event.originator_id)

    def save(self, tx: BatchTransaction[Any], state: _Batch) -> None:
        if state.changed:
            tx.cursor.executemany(tx.sql.upsert,
                                  [state.rows[i].values() for i in sorted(state.changed)])

    # ------------------------------------------------------------------ the fold

    @singledispatchmethod
    def _apply(self, event: Workflow.Event, row: _Progress) -> None:
        """An event that changes nothing shown here (e.g. one added later)."""

    @_apply.register(Workflow.Started)
    def _(self, event: Workflow.Started, row: _Progress) -> None:
        row.status = WorkflowStatus.EXECUTING.value
        row.started_at = event.timestamp

    @_apply.register(Workflow.StepStarted)
    def _(self, event: Workflow.StepStarted, row: _Progress) -> None:
        row.set_step(event.step_id, StepStatus.EXECUTING)
        row.step(event.step_id)["attempts"] = event.attempt
        row.next_attempt_at = None

    @_apply.register(Workflow.StepExecuted)
    def _(self, event: Workflow.StepExecuted, row: _Progress) -> None:
        row.set_step(event.step_id, StepStatus.COMPLETED)
        row.executed_steps.append(event.step_id)
        row.resolved(event.step_id, None)  # a retry succeeded: the failure is history

    @_apply.register(Workflow.StepFailed)
    def _(self, event: Workflow.StepFailed, row: _Progress) -> None:
        row.set_step(event.step_id, StepStatus.FAILED)
        step = row.step(event.step_id)
        step["attempts"] = max(step["attempts"], event.attempt)  # as the aggregate counts
        row.failed(event.error)

    @_apply.register(Workflow.StepRetryScheduled)
    def _(self, event: Workflow.StepRetryScheduled, row: _Progress) -> None:
        row.set_step(event.step_id, StepStatus.PENDING)
        row.next_attempt_at = event.due_at

    @_apply.register(Workflow.Paused)
    def _(self, event: Workflow.Paused, row: _Progress) -> None:
        row.status = WorkflowStatus.PAUSED.value
        row.paused_reason = event.reason

    @_apply.register(Workflow.Resumed)
    def _(self, event: Workflow.Resumed, row: _Progress) -> None:
        row.status = WorkflowStatus.EXECUTING.value
        row.paused_reason = None

    @_apply.register(Workflow.Cancelled)
    def _(self, event: Workflow.Cancelled, row: _Progress) -> None:
        row.status = WorkflowStatus.CANCELLED.value
        row.finished_at = event.timestamp
        row.next_attempt_at = None
        row.last_error = None  # an operator's decision, not an error

    @_apply.register(Workflow.Failed)
    def _(self, event: Workflow.Failed, row: _Progress) -> None:
        row.status = WorkflowStatus.FAILED.value
        row.failed(event.error)
        row.saga_error = dict(event.error)
        row.next_attempt_at = None

    @_apply.register(Workflow.CompensationStarted)
    def _(self, event: Workflow.CompensationStarted, row: _Progress) -> None:
        row.status = WorkflowStatus.COMPENSATING.value
        row.compensation_queue = list(event.step_ids)
        row.finished_at = None

    @_apply.register(Workflow.StepCompensationStarted)
    def _(self, event: Workflow.StepCompensationStarted, row: _Progress) -> None:
        row.set_step(event.step_id, StepStatus.COMPENSATING)
        row.next_attempt_at = None

    @_apply.register(Workflow.StepCompensationFailed)
    def _(self, event: Workflow.StepCompensationFailed, row: _Progress) -> None:
        # Still done in the world, as the domain has it: COMPLETED, or FAILED for a step
        # applied without a recorded answer (never executed).
        row.set_step(event.step_id, StepStatus.COMPLETED if event.step_id in row.executed_steps
                     else StepStatus.FAILED)
        row.failed(event.error)
        row.next_attempt_at = event.retry_at

    @_apply.register(Workflow.StepCompensated)
    def _(self, event: Workflow.StepCompensated, row: _Progress) -> None:
        row.set_step(event.step_id, StepStatus.COMPENSATED)
        row.compensated_steps.append(event.step_id)
        row.resolved(event.step_id, row.saga_error)

    @_apply.register(Workflow.CompensationCompleted)
    def _(self, event: Workflow.CompensationCompleted, row: _Progress) -> None:
        row.status = WorkflowStatus.COMPENSATED.value
        row.finished_at = event.timestamp
        row.last_error = row.saga_error  # why it was compensated (None: a cancel asked)

    @_apply.register(Workflow.CompensationFailed)
    def _(self, event: Workflow.CompensationFailed, row: _Progress) -> None:
        row.status = WorkflowStatus.COMPENSATION_FAILED.value
        row.failed(event.error)
        row.next_attempt_at = None

    @_apply.register(Workflow.CompensationRetried)
    def _(self, event: Workflow.CompensationRetried, row: _Progress) -> None:
        row.status = WorkflowStatus.COMPENSATING.value

    @_apply.register(Workflow.Completed)
    def _(self, event: Workflow.Completed, row: _Progress) -> None:
        row.status = WorkflowStatus.COMPLETED.value
        row.finished_at = event.timestamp
        row.next_attempt_at = None
        row.last_error = None

    @_apply.register(Workflow.Retried)
    def _(self, event: Workflow.Retried, row: _Progress) -> None:
        row.status = WorkflowStatus.EXECUTING.value
        row.retry_count = event.retry_count
        row.finished_at = None
        row.compensation_queue = None
        row.next_attempt_at = None
        row.last_error = row.saga_error = None  # a new run; last_failure keeps the history
        for step_id in event.reset_steps:
            row.set_step(step_id, StepStatus.PENDING)
            row.step(step_id)["attempts"] = 0
            if step_id in row.executed_steps:
                row.executed_steps.remove(step_id)
            if step_id in row.compensated_steps:
                row.compensated_steps.remove(step_id)

    @_apply.register(Workflow.WavelessEnabled)
    def _(self, event: Workflow.WavelessEnabled, row: _Progress) -> None:
        row.waveless = True

    @_apply.register(Workflow.ReleasedInBatch)
    def _(self, event: Workflow.ReleasedInBatch, row: _Progress) -> None:
        row.batch_id = event.batch_id
        row.waiting_reason = None

    @_apply.register(Workflow.WaitingReasonChanged)
    def _(self, event: Workflow.WaitingReasonChanged, row: _Progress) -> None:
        row.waiting_reason = event.reason

    @_apply.register(Workflow.MarkedLate)
    def _(self, event: Workflow.MarkedLate, row: _Progress) -> None:
        row.late = True


def _workflow_ids(events: Iterable[Event], *, exclude_created: bool) -> list[UUID]:
    """The workflows a batch touches (those created in it have no row to read yet)."""
    ids = {cast(UUID, e.originator_id) for e in events if isinstance(e, Workflow.Event)}
    if exclude_created:
        ids -= {cast(UUID, e.originator_id) for e in events if isinstance(e, Workflow.Created)}
    return sorted(ids)
