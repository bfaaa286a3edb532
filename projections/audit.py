"""Audit read model: one row per workflow event, searchable by workflow, correlation id,
event type and time (API.md `GET /v1/audit`, `GET /v1/workflows/{id}/audit`), and counted
per event type and time bucket (`GET /v1/audit/counts`)."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, cast
from uuid import UUID

import orjson
from psycopg.sql import SQL, Composed, Identifier
from psycopg.types.json import Jsonb

from application.workflows import event_data
from domain.exceptions import InvalidValue
from domain.workflow import Workflow
from projections.base import BatchProjection, Event, build_indexes_now
from projections.batch import BatchTransaction
from projections.generations import GenerationalView, GenerationTables, TableSpec
from projections.pagination import Page, check_limit, decode_cursor, encode_cursor

COLUMNS = ("position", "workflow_id", "version", "event_type", "timestamp", "actor",
           "correlation_id", "step_id", "data")
# Rows per batch above which COPY beats a pipelined INSERT (a rebuild's batches).
COPY_THRESHOLD = 64
_BASE_FIELDS = frozenset(("originator_id", "originator_version", "timestamp", "originator_topic"))
# Datetimes go through `default` (isoformat, exactly as `event_data`), and dataclasses are
# refused as `json.dumps` refuses them; the other types orjson writes natively (str, int,
# float, bool, None, dict, list, tuple, UUID, str/int enums) come out as `event_data` +
# `json.dumps` write them, which the tests check value for value.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS

# The event types an audit row can have: the workflow's events, by class name.
EVENT_TYPES = frozenset(name for name, value in vars(Workflow).items()
                        if isinstance(value, type) and issubclass(value, Workflow.Event)
                        and value is not Workflow.Event)
# Bounds of `counts`: one statement over at most a month of the time index, and an answer
# a chart can draw (a day per minute is 1,440 buckets).
MAX_COUNT_TYPES = 10
MAX_COUNT_WINDOW = timedelta(days=31)
MAX_BUCKETS = 1440
MAX_BUCKET_SECONDS = 86_400
# Buckets are aligned to the epoch, whatever the window: successive calls (a chart
# refreshed as time moves on) put an event in the same bucket.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One workflow event as the audit trail shows it."""

    position: int
    workflow_id: UUID
    version: int
    event_type: str
    timestamp: datetime
    actor: str | None
    correlation_id: str | None
    step_id: str | None
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class BucketCount:
    """How many events of one type the bucket starting at `start` holds (never zero)."""

    start: datetime
    event_type: str
    count: int


@dataclass(frozen=True, slots=True)
class AuditCounts:
    """Events per type in `bucket_seconds` buckets of the window `after` <= t < `before`.

    `starts` is every bucket of the window, the first one at or before `after` (buckets
    are aligned to the epoch); `rows` only the buckets and types that hold events."""

    event_types: tuple[str, ...]
    after: datetime
    before: datetime
    bucket_seconds: int
    starts: tuple[datetime, ...]
    rows: tuple[BucketCount, ...]

    def buckets(self) -> list[tuple[datetime, dict[str, int]]]:
        """Every bucket of the window with a count for every type asked for (zeros too)."""
        dense = {start: dict.fromkeys(self.event_types, 0) for start in self.starts}
        for row in self.rows:
            dense[row.start][row.event_type] = row.count
        return list(dense.items())

    def totals(self) -> dict[str, int]:
        """Events per type in the whole window."""
        totals = dict.fromkeys(self.event_types, 0)
        for row in self.rows:
            totals[row.event_type] += row.count
        return totals


def bucket_starts(after: datetime, before: datetime, bucket_seconds: int
                  ) -> tuple[datetime, ...]:
    """The epoch-aligned buckets covering `after` <= t < `before`, as `date_bin` puts
    events in them; InvalidValue for a window `counts` does not take."""
    if isinstance(bucket_seconds, bool) or not isinstance(bucket_seconds, int) or \
            not 1 <= bucket_seconds <= MAX_BUCKET_SECONDS:
        raise InvalidValue("bucket_seconds", bucket_seconds,
                           f"must be an integer from 1 to {MAX_BUCKET_SECONDS}")
    if before <= after:
        raise InvalidValue("before", before.isoformat(), "must be later than after")
    if before - after > MAX_COUNT_WINDOW:
        raise InvalidValue("after", after.isoformat(),
                           f"the window must not be longer than {MAX_COUNT_WINDOW.days} days")
    width = timedelta(seconds=bucket_seconds)
    # Integer arithmetic on timedeltas: exact to the microsecond, unlike float seconds.
    first = (after - EPOCH) // width
    count = -((first * width - (before - EPOCH)) // width)  # ceil((before - start) / width)
    if count > MAX_BUCKETS:
        raise InvalidValue("bucket_seconds", bucket_seconds,
                           f"the window would have {count} buckets; at most {MAX_BUCKETS}")
    try:
        return tuple(EPOCH + (first + i) * width for i in range(count))
    except OverflowError:  # a bucket starting before year 1
        raise InvalidValue("after", after.isoformat(), "is out of range") from None


def check_event_types(event_types: Sequence[str]) -> tuple[str, ...]:
    """The distinct event types, in the order given; InvalidValue for none, too many or
    one that no audit row can have."""
    types = tuple(dict.fromkeys(event_types))
    if not 1 <= len(types) <= MAX_COUNT_TYPES:
        raise InvalidValue("event_type", list(types),
                           f"give from 1 to {MAX_COUNT_TYPES} event types")
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise InvalidValue("event_type", unknown,
                           f"not a workflow event type; one of {', '.join(sorted(EVENT_TYPES))}")
    return types


class AuditView(ABC):
    """Queries of the audit read model."""

    @abstractmethod
    def for_workflow(self, workflow_id: UUID, limit: int = 50,
                     cursor: str | None = None) -> Page[AuditRow]:
        """A workflow's events in order."""

    @abstractmethod
    def search(self, workflow_id: UUID | None = None, correlation_id: str | None = None,
               event_type: str | Sequence[str] | None = None, after: datetime | None = None,
               before: datetime | None = None, limit: int = 50, cursor: str | None = None,
               descending: bool = False) -> Page[AuditRow]:
        """Events matching every filter given (`after` <= timestamp < `before`), by position."""

    @abstractmethod
    def counts(self, event_types: Sequence[str], after: datetime, before: datetime,
               bucket_seconds: int) -> AuditCounts:
        """Events of these types per epoch-aligned bucket (`after` <= timestamp < `before`)."""


@dataclass(frozen=True, slots=True)
class _AuditSQL:
    actors: Composed
    insert: Composed
    copy: Composed


@dataclass(slots=True)
class _Batch:
    actors: dict[UUID, str]
    rows: list[tuple[Any, ...]] = field(default_factory=list)


class PostgresAuditView(GenerationalView[_AuditSQL], AuditView):
    """The audit read model in PostgreSQL."""

    projection_name: ClassVar[str] = "audit"
    table_specs: ClassVar[tuple[TableSpec, ...]] = (
        TableSpec("", SQL(
            "position bigint PRIMARY KEY, workflow_id uuid NOT NULL, version integer NOT NULL,"
            " event_type text NOT NULL, timestamp timestamptz NOT NULL, actor text,"
            " correlation_id text, step_id text, data jsonb NOT NULL"
        ), indexes=(
            ("workflow", SQL("workflow_id, position")),
            ("correlation", SQL("correlation_id, position")),
            ("type", SQL("event_type, position")),
            ("time", SQL("timestamp, position")),
        )),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._columns = SQL(", ").join(Identifier(c) for c in COLUMNS)
        view = self.stable_name()
        self._for_workflow = SQL(
            "SELECT {} FROM {} WHERE workflow_id = %s AND position > %s"
            " ORDER BY position LIMIT %s").format(self._columns, view)
        self._search: dict[bool, Composed] = {
            descending: SQL(
                "SELECT {columns} FROM {view} WHERE"
                " (%(workflow_id)s::uuid IS NULL OR workflow_id = %(workflow_id)s::uuid)"
                " AND (%(correlation_id)s::text IS NULL"
                " OR correlation_id = %(correlation_id)s::text)"
                " AND (%(event_types)s::text[] IS NULL"
                " OR event_type = ANY(%(event_types)s::text[]))"
                " AND (%(after)s::timestamptz IS NULL OR timestamp >= %(after)s::timestamptz)"
                " AND (%(before)s::timestamptz IS NULL OR timestamp < %(before)s::timestamptz)"
                " AND (%(from)s::bigint IS NULL OR position {op} %(from)s::bigint)"
                " ORDER BY position {direction} LIMIT %(limit)s"
            ).format(columns=self._columns, view=view, op=SQL("<" if descending else ">"),
                     direction=SQL("DESC" if descending else "ASC"))
            for descending in (False, True)
        }
        # A range scan of the (timestamp, position) index, grouped: the count of a month of
        # events is one statement, not a page of rows per 500 events.
        self._counts = SQL(
            "SELECT date_bin(%(bucket)s::integer * interval '1 second', timestamp,"
            " {origin}) AS start, event_type, count(*) AS count FROM {view}"
            " WHERE timestamp >= %(after)s::timestamptz AND timestamp < %(before)s::timestamptz"
            " AND event_type = ANY(%(event_types)s::text[])"
            " GROUP BY 1, 2 ORDER BY 1, 2"
        ).format(origin=SQL("TIMESTAMPTZ '1970-01-01 00:00:00+00'"), view=view)

    def generation_statements(self, tables: GenerationTables) -> _AuditSQL:
        return _AuditSQL(
            actors=SQL("SELECT workflow_id, actor FROM {} WHERE workflow_id = ANY(%s)"
                       " AND version = 1").format(tables[""]),
            insert=SQL("INSERT INTO {} ({}) VALUES ({})").format(
                tables[""], self._columns, SQL(", ").join(SQL("%s") for _ in COLUMNS)),
            copy=SQL("COPY {} ({}) FROM STDIN").format(tables[""], self._columns),
        )

    def create_generation(self, generation: int) -> None:
        super().create_generation(generation)
        build_indexes_now(self, generation, [("", "workflow")])  # the fold's actor lookup

    # ------------------------------------------------------------------ queries

    def for_workflow(self, workflow_id: UUID, limit: int = 50,
                     cursor: str | None = None) -> Page[AuditRow]:
        check_limit(limit)
        key = {"w": str(workflow_id)}
        after = decode_cursor(cursor, "audit-workflow", key)["p"] if cursor else 0
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._for_workflow, (workflow_id, after, limit + 1), prepare=True)
            rows = curs.fetchall()
        return _page(rows, limit, "audit-workflow", key)

    def search(self, workflow_id: UUID | None = None, correlation_id: str | None = None,
               event_type: str | Sequence[str] | None = None, after: datetime | None = None,
               before: datetime | None = None, limit: int = 50, cursor: str | None = None,
               descending: bool = False) -> Page[AuditRow]:
        check_limit(limit)
        types = [event_type] if isinstance(event_type, str) else \
            list(event_type) if event_type is not None else None
        key = {"d": descending}
        start = decode_cursor(cursor, "audit", key)["p"] if cursor else None
        params = {"workflow_id": workflow_id, "correlation_id": correlation_id,
                  "event_types": types, "after": after, "before": before, "from": start,
                  "limit": limit + 1}
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._search[descending], params, prepare=True)
            rows = curs.fetchall()
        return _page(rows, limit, "audit", key)

    def counts(self, event_types: Sequence[str], after: datetime, before: datetime,
               bucket_seconds: int) -> AuditCounts:
        types = check_event_types(event_types)
        starts = bucket_starts(after, before, bucket_seconds)  # checked before any SQL
        params = {"bucket": bucket_seconds, "after": after, "before": before,
                  "event_types": list(types)}
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._counts, params, prepare=True)
            rows = curs.fetchall()
        return AuditCounts(types, after, before, bucket_seconds, starts, tuple(
            BucketCount(r["start"], r["event_type"], r["count"]) for r in rows))


def _isoformat(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def event_json(event: Event) -> bytes:
    """The audit row's `data`: `event_data(event)` as JSON, written by orjson from the
    event's fields in one C call (walking and re-encoding them in Python cost a rebuild
    over a fifth of its time). Anything orjson will not write the same way (non-str keys,
    64-bit overflow, other types) takes the `event_data` + `json.dumps` path, which
    succeeds or fails as it always did."""
    fields = {k: v for k, v in vars(event).items() if k not in _BASE_FIELDS}
    try:
        return orjson.dumps(fields, default=_isoformat, option=_ORJSON_OPTIONS)
    except TypeError:
        return json.dumps(event_data(event)).encode()


def _passthrough(data: bytes) -> bytes:
    """The Jsonb dumper for data already serialised by `event_json`."""
    return data


def _page(rows: Sequence[Mapping[str, Any]], limit: int, kind: str,
          key: Mapping[str, Any]) -> Page[AuditRow]:
    items = tuple(AuditRow(**{c: r[c] for c in COLUMNS}) for r in rows[:limit])
    more = len(rows) > limit
    return Page(items, encode_cursor(kind, {**key, "p": items[-1].position}) if more else None)


class AuditProjection(BatchProjection[PostgresAuditView]):
    """Appends a row per workflow event; every other event only moves the position."""

    name = "audit"

    def load(self, tx: BatchTransaction[Any], events: Sequence[Event]) -> _Batch:
        created = {e.originator_id for e in events if isinstance(e, Workflow.Created)}
        ids = sorted({cast(UUID, e.originator_id) for e in events
                      if isinstance(e, Workflow.Event)} - created)
        actors: dict[UUID, str] = {}
        if ids:
            tx.cursor.execute(tx.sql.actors, (ids,), prepare=True)
            actors = {r["workflow_id"]: r["actor"] for r in tx.cursor.fetchall()}
        return _Batch(actors)

    def fold(self, state: _Batch, event: Event, position: int) -> None:
        if not isinstance(event, Workflow.Event):
            return
        if isinstance(event, Workflow.Created):
            state.actors[event.originator_id] = event.triggered_by
        # The actor is who did it when the event says so, else who triggered the workflow.
        actor = getattr(event, "actor", None) or state.actors.get(event.originator_id)
        state.rows.append((
            position, event.originator_id, event.originator_version, type(event).__name__,
            event.timestamp, actor, event.correlation_id, getattr(event, "step_id", None),
            Jsonb(event_json(event), _passthrough),
        ))

    def save(self, tx: BatchTransaction[Any], state: _Batch) -> None:
        if len(state.rows) >= COPY_THRESHOLD:
            with tx.cursor.copy(tx.sql.copy) as copy:
                for row in state.rows:
                    copy.write_row(row)
        elif state.rows:
            tx.cursor.executemany(tx.sql.insert, state.rows)
