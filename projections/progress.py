"""Progress read model: one row per workflow, for dashboards and `GET /v1/workflows`.

A row is `domain.progress.progress_of` of the Workflow aggregate the workflow's events
produce (kept by the projection's aggregate cache): the rules (progress %, current step,
the current error, compensation progress) are the aggregate's own, and the columns are the
fields of `domain.progress.ProgressRow`, their SQL types derived from the Python types.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from psycopg.sql import SQL, Composed, Identifier
from psycopg.types.json import Jsonb

from domain.exceptions import InvalidValue
from domain.progress import (
    ADDED,
    API_FIELDS,
    COLUMNS,
    PROGRESS_FIELDS,
    ProgressRow,
    StepProgress,
    progress_of,
)
from domain.workflow import Workflow
from projections.async_reads import AsyncReadPool
from projections.base import BatchProjection, Event
from projections.batch import BatchTransaction
from projections.generations import GenerationalView, GenerationTables, TableSpec
from projections.pagination import Page, check_limit, decode_cursor, encode_cursor

log = logging.getLogger(__name__)

SORT_KEYS = ("created_at", "updated_at", "priority", "status")
_SORT_COLUMNS = {"created_at": ("created_at", "timestamptz"),
                 "updated_at": ("updated_at", "timestamptz"),
                 "priority": ("priority_rank", "smallint"),
                 "status": ("status", "text")}
# SQL types of the Python types of ProgressRow's fields; a few columns are narrower or wider.
_SQL_TYPES = {"UUID": "uuid", "str": "text", "int": "integer", "float": "double precision",
              "bool": "boolean", "datetime": "timestamptz", "Mapping[str, Any]": "jsonb",
              "tuple[StepProgress, ...]": "jsonb", "tuple[str, ...]": "text[]"}
_SQL_TYPE_OF_COLUMN = {"priority_rank": "smallint", "position": "bigint"}
_NULLABLE = " | None"


def _sql_type(name: str, python_type: str) -> tuple[str, bool]:
    """(SQL type, nullable) of a ProgressRow field."""
    nullable = python_type.endswith(_NULLABLE)
    base = python_type.removesuffix(_NULLABLE)
    return _SQL_TYPE_OF_COLUMN.get(name) or _SQL_TYPES[base], nullable


_TYPES = {f.name: _sql_type(f.name, str(f.type)) for f in PROGRESS_FIELDS}


def _column_definition(name: str) -> str:
    sql_type, nullable = _TYPES[name]
    if name == "id":
        return f"{name} {sql_type} PRIMARY KEY"
    return f"{name} {sql_type}" if nullable else f"{name} {sql_type} NOT NULL"


# Columns added after the first release: added to a live table that lacks them (see
# PostgresProgressView.create_table), last in COLUMNS so that fresh and upgraded tables agree.
ADDED_COLUMNS = tuple((name, _TYPES[name][0]) for name in ADDED)


def _steps_value(steps: tuple[StepProgress, ...]) -> Jsonb:
    # By hand: dataclasses.asdict deep-copies every value (a third of a row's cost).
    return Jsonb([{"step_id": s.step_id, "name": s.name, "service": s.service,
                   "status": s.status, "attempts": s.attempts} for s in steps])


def _json_value(value: Mapping[str, Any] | None) -> Jsonb | None:
    return Jsonb(value) if value is not None else None


def _array_value(value: tuple[str, ...] | None) -> list[str] | None:
    return list(value) if value is not None else None


def _to_parameter(name: str) -> Callable[[Any], Any] | None:
    """How a field's value is passed to PostgreSQL (None: as it is)."""
    sql_type = _TYPES[name][0]
    if name == "steps":
        return _steps_value
    if sql_type == "jsonb":
        return _json_value
    if sql_type == "text[]":
        return _array_value
    return None


_PARAMETERS = tuple((name, _to_parameter(name)) for name in COLUMNS)


def _values(row: ProgressRow) -> tuple[Any, ...]:
    """The row in COLUMNS order, as statement parameters."""
    return tuple(getattr(row, name) if convert is None else convert(getattr(row, name))
                 for name, convert in _PARAMETERS)


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


@dataclass(frozen=True, slots=True)
class _ProgressSQL:
    select: Composed
    upsert: Composed


class PostgresProgressView(GenerationalView[_ProgressSQL], ProgressView):
    """The progress read model in PostgreSQL."""

    projection_name: ClassVar[str] = "progress"
    table_specs: ClassVar[tuple[TableSpec, ...]] = (
        TableSpec("", SQL(", ".join(_column_definition(c) for c in COLUMNS)
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
        # Rows as JSON objects with the API's fields, encoded by PostgreSQL (::text, so
        # that psycopg hands them over undecoded): a reader that only validates and
        # re-encodes them skips decoding 36 columns in Python (measured: a third of the
        # query's CPU).
        self._get_json_many = SQL(
            "SELECT r.id, row_to_json(r)::text AS row FROM (SELECT {} FROM {}"
            " WHERE id = ANY(%s::uuid[])) r"
        ).format(SQL(", ").join(Identifier(c) for c in API_FIELDS),
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
        connections): {id: row as a JSON object with the API's fields, times in ISO 8601
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


_TUPLES = tuple(name for name in COLUMNS if _TYPES[name][0] == "text[]")


def _to_dto(row: Mapping[str, Any]) -> ProgressRow:
    values = {name: row[name] for name in COLUMNS}
    values["steps"] = tuple(StepProgress(s["step_id"], s["name"], s["service"], s["status"],
                                         s["attempts"]) for s in row["steps"])
    for name in _TUPLES:
        if values[name] is not None:
            values[name] = tuple(values[name])
    return ProgressRow(**values)


def _as_int(workflow_id: UUID) -> int:
    # The ids' order (UUID.__lt__ compares these), without a Python call per comparison.
    return workflow_id.int


class ProgressProjection(BatchProjection[PostgresProgressView]):
    """A row per workflow from its aggregate; every other event only moves the position."""

    name = "progress"

    def load(self, tx: BatchTransaction[Any], events: Sequence[Event]) -> dict[UUID, int]:
        self.workflows.prepare(events)
        return {}  # workflow id -> position of its last event in the batch

    def fold(self, state: dict[UUID, int], event: Event, position: int) -> None:
        if isinstance(event, Workflow.Event):
            self.workflows.fold(event)
            state[event.originator_id] = position

    def save(self, tx: BatchTransaction[Any], state: dict[UUID, int]) -> None:
        if state:
            get = self.workflows.get
            tx.cursor.executemany(tx.sql.upsert, [
                _values(progress_of(get(i), state[i])) for i in sorted(state, key=_as_int)])
        self.workflows.trim()
