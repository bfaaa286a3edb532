"""Generational views: read-model tables that can be rebuilt beside the live ones.

A read model's tables come in *generations* (`wes_progress_g1`, `wes_progress_g2`, ...), each
with its own tracking table. A small pointer table, `wes_projections`, names the live
generation of every projection, and plain SQL views with the stable names (`wes_progress`,
`wes_progress_tracking`) select from it. Query methods only read the stable names, so a
rebuild can fill a fresh generation while the live one keeps serving, and the switch is one
transaction that moves the pointer and the SQL views together.

Every write is a *batch transaction*: it locks the target generation's tracking row, skips
the events that generation already has, writes the rows and moves the tracking position in
the same transaction. So an event is applied exactly once per generation, however many
processes try, and a crash can neither skip nor double-apply one. Live writes find their
generation by reading the pointer row `FOR SHARE`; the switch takes it `FOR UPDATE`, so it
waits for a live write in flight and holds the next one until the new generation is live.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

import psycopg
from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg import AsyncConnection, Cursor
from psycopg.rows import DictRow, dict_row
from psycopg.sql import SQL, Composable, Composed, Identifier, Literal
from psycopg_pool import AsyncConnectionPool

from application.locks import HELD_SQL, LockKey, LockRole, lock, projection_lock_key
from application.pool import held_connections
from projections.waiting import poll_until

POINTER_TABLE = "wes_projections"
TABLE_PREFIX = "wes_"
SWITCH_LOCK_TIMEOUT = "5s"

S = TypeVar("S")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TableSpec:
    """One table of a read model; `suffix` "" is the main table."""

    suffix: str
    columns: SQL
    indexes: tuple[tuple[str, SQL], ...] = ()


@dataclass(frozen=True, slots=True)
class Pointer:
    """A projection's row in the pointer table."""

    generation: int
    building: int | None
    error: str | None
    error_position: int | None


@dataclass(frozen=True, slots=True)
class GenerationTables:
    """The schema-qualified names of one generation's tables."""

    generation: int
    tables: dict[str, Composed]
    tracking: Composed

    def __getitem__(self, suffix: str) -> Composed:
        return self.tables[suffix]


@dataclass(frozen=True, slots=True)
class _TrackingSQL:
    lock: Composed
    upsert: Composed
    position: Composed


_BEGIN = "BEGIN"
_COMMIT = "COMMIT"
_IDLE = psycopg.pq.TransactionStatus.IDLE


@dataclass(frozen=True, slots=True)
class ProjectionStatus:
    """How far a projection is (API.md `GET /v1/projections`)."""

    name: str
    position: int
    head: int
    lag_events: int
    lag_seconds: float | None
    state: str
    generation: int
    rebuilding_generation: int | None = None
    rebuilding_position: int | None = None
    error_position: int | None = None
    rebuild_needed: str | None = None  # why the live generation's rows are incomplete


def _as_strings(statements: T) -> T:
    """The same statements as plain strings. psycopg caches the conversion of a string
    query, but turns a `Composed` into bytes again on every execute (measured: 15 % of a
    live projector's time went there)."""
    return replace(statements, **{  # type: ignore[type-var]
        f.name: value.as_string() for f in fields(statements)  # type: ignore[arg-type]
        if isinstance(value := getattr(statements, f.name), Composable)})


class BatchTransaction(Generic[S]):
    """Writes to one generation in one transaction; events up to `after` are already in."""

    def __init__(self, cursor: Cursor[DictRow], generation: int, sql: S,
                 after: int | None) -> None:
        self.cursor = cursor
        self.generation = generation
        self.sql = sql
        self.after = after
        self.tracked: int | None = None  # the position to record at commit

    def is_new(self, position: int) -> bool:
        return self.after is None or position > self.after

    def track(self, position: int) -> None:
        """Moves the generation's position; commits with the rows written alongside (the
        statement goes out with the COMMIT, in one round trip)."""
        self.tracked = position


class AsyncReadPool:
    """Connections on the event loop for the read models' hot queries (the API's).

    A query is one statement in autocommit: no BEGIN/ROLLBACK around it and no pre-ping
    before it, so it costs one round trip (the datastore's pool spends four: the ping,
    BEGIN, the query, ROLLBACK). Without the ping a connection the server dropped
    since its last use (a restart) fails its next query: the pool discards it and the read
    is retried on another connection. Open it in the event loop that will use it.
    """

    def __init__(self, datastore: PostgresDatastore, *, min_size: int = 1,
                 max_size: int | None = None) -> None:
        sync_pool = datastore.pool
        kwargs: dict[str, Any] = {**(sync_pool.kwargs or {}), "autocommit": True,
                                  "row_factory": dict_row}
        if sync_pool.get_password_func is not None:
            kwargs["password"] = sync_pool.get_password_func()
        self.pool: AsyncConnectionPool[AsyncConnection[DictRow]] = AsyncConnectionPool(
            sync_pool.conninfo, kwargs=kwargs,
            connection_class=AsyncConnection[DictRow],
            min_size=min_size, max_size=max_size or sync_pool.max_size,
            timeout=sync_pool.timeout, name=f"{sync_pool.name}-async", open=False,
        )

    async def open(self) -> None:
        """Starts connecting in the background; the first query waits for a connection."""
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close()

    async def fetchall(self, query: Composed | bytes, params: Sequence[Any]) -> list[DictRow]:
        """The rows of one read-only statement (prepared on each connection).

        A connection found broken (the server closed it while it sat in the pool, e.g. a
        restart) is discarded by the pool and the read, safe to repeat, goes to the next
        one; after a restart every pooled connection is dead, hence up to one try per
        connection the pool may hold. Any other error, and PoolTimeout (no connection came
        in time), is raised at once.
        """
        tries = self.pool.max_size + 1
        for attempt in range(1, tries + 1):
            async with self.pool.connection() as conn:
                try:
                    cursor = await conn.execute(query, params, prepare=True)
                    return await cursor.fetchall()
                except psycopg.OperationalError:
                    if not conn.broken or attempt == tries:
                        raise
        raise AssertionError("unreachable: the last try returns or raises")


class GenerationalView(PostgresTrackingRecorder, Generic[S]):
    """A `PostgresTrackingRecorder` whose tables come in rebuildable generations."""

    projection_name: ClassVar[str]
    table_specs: ClassVar[tuple[TableSpec, ...]]

    def __init__(self, datastore: PostgresDatastore, *,
                 tracking_table_name: str | None = None, **kwargs: Any) -> None:
        # The factory proposes a tracking table name; ours follows the generations instead.
        del tracking_table_name
        self.prefix = TABLE_PREFIX + self.projection_name
        super().__init__(datastore, tracking_table_name=self.prefix + "_tracking", **kwargs)
        schema = Identifier(self.datastore.schema)
        self.schema = self.datastore.schema
        pointer = SQL("{}.{}").format(schema, Identifier(POINTER_TABLE))
        self._generations: dict[int, tuple[GenerationTables, _TrackingSQL, S]] = {}
        self._create_pointer_table = SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " name text PRIMARY KEY,"
            " generation integer NOT NULL,"
            " building integer,"
            " error text,"
            " error_position bigint,"
            " switched_at timestamptz)"
        ).format(pointer)
        self._insert_pointer = SQL(
            "INSERT INTO {} (name, generation) VALUES (%s, 1) ON CONFLICT (name) DO NOTHING"
        ).format(pointer)
        select_pointer = SQL(
            "SELECT generation, building, error, error_position FROM {} WHERE name = %s"
        ).format(pointer)
        self._select_pointer = select_pointer
        # Every live batch runs it: a string, whose conversion psycopg caches.
        self._select_pointer_for_share = (select_pointer + SQL(" FOR SHARE")).as_string()
        self._select_pointer_for_update = select_pointer + SQL(" FOR UPDATE")
        self._set_building = SQL("UPDATE {} SET building = %s WHERE name = %s").format(pointer)
        self._switch_pointer = SQL(
            "UPDATE {} SET generation = %s, building = NULL, switched_at = now(),"
            " error = CASE WHEN error_position <= %s THEN NULL ELSE error END,"
            " error_position = CASE WHEN error_position <= %s THEN NULL ELSE error_position END"
            " WHERE name = %s"
        ).format(pointer)
        self._set_error = SQL(
            "UPDATE {} SET error = %s, error_position = %s WHERE name = %s").format(pointer)
        self._clear_error = SQL(
            "UPDATE {} SET error = NULL, error_position = NULL WHERE name = %s").format(pointer)
        self._relation_exists = SQL(
            "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s) AS found")
        self._generation_tables = SQL(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename ~ %s")
        self._generation_pattern = re.compile(rf"^{re.escape(self.prefix)}_g(\d+)$")
        self._state = SQL(
            "SELECT p.generation, p.building, p.error, p.error_position,"
            " (SELECT notification_id FROM {tracking} WHERE application_name = %s) AS position,"
            " {held} AS active, {held} AS present, {held} AS rebuilding,"
            " obj_description(to_regclass(format('%%I.%%I', %s::text,"
            " %s::text || '_g' || p.generation)), 'pg_class') AS rebuild_needed"
            " FROM {pointer} p WHERE p.name = %s"
        ).format(tracking=SQL("{}.{}").format(schema, Identifier(self.prefix + "_tracking")),
                 held=HELD_SQL, pointer=pointer)
        self._keys = {role: projection_lock_key(self.schema, self.projection_name, role)
                      for role in LockRole}

    # ------------------------------------------------------------------ for subclasses

    @abstractmethod
    def generation_statements(self, tables: GenerationTables) -> S:
        """The statements that write one generation's tables (built once per generation)."""

    def stable_name(self, suffix: str = "") -> Composed:
        """The SQL view that always shows the live generation's table."""
        return SQL("{}.{}").format(Identifier(self.schema), Identifier(self.prefix + suffix))

    # ------------------------------------------------------------------ locks

    def lock_key(self, role: LockRole) -> LockKey:
        return self._keys[role]

    # ------------------------------------------------------------------ tables

    def create_table(self) -> None:
        """Creates the pointer row, the live generation and the stable SQL views, once."""
        setup = projection_lock_key(self.schema, "*", LockRole.SETUP)
        with self.datastore.transaction(commit=True) as curs:
            lock(curs, setup, transaction=True)
            curs.execute(self._create_pointer_table)
            curs.execute(self._insert_pointer, (self.projection_name,))
            # FOR SHARE: a switch in progress finishes first, so this sees the live generation.
            curs.execute(self._select_pointer_for_share, (self.projection_name,))
            row = curs.fetchone()
            assert row is not None  # inserted just above
            generation = int(row["generation"])
            self._create_generation_tables(curs, generation, with_indexes=True)
            for suffix in self._view_suffixes():
                curs.execute(self._relation_exists, (self.schema, self.prefix + suffix))
                found = curs.fetchone()
                if not (found and found["found"]):
                    self._create_view(curs, suffix, generation)

    def _view_suffixes(self) -> list[str]:
        return [spec.suffix for spec in self.table_specs] + ["_tracking"]

    def _table_name(self, generation: int, suffix: str) -> str:
        return f"{self.prefix}_g{generation}{suffix}"

    def _create_generation_tables(self, curs: Cursor[DictRow], generation: int, *,
                                  with_indexes: bool) -> None:
        schema = Identifier(self.schema)
        for spec in self.table_specs:
            curs.execute(SQL("CREATE TABLE IF NOT EXISTS {}.{} ({})").format(
                schema, Identifier(self._table_name(generation, spec.suffix)), spec.columns))
        curs.execute(SQL(
            "CREATE TABLE IF NOT EXISTS {}.{} ("
            " application_name text PRIMARY KEY, notification_id bigint NOT NULL)"
        ).format(schema, Identifier(self._table_name(generation, "_tracking"))))
        if with_indexes:
            self._create_indexes(curs, generation)

    def _create_indexes(self, curs: Cursor[DictRow], generation: int) -> None:
        schema = Identifier(self.schema)
        for spec in self.table_specs:
            table = self._table_name(generation, spec.suffix)
            for index_suffix, columns in spec.indexes:
                curs.execute(SQL("CREATE INDEX IF NOT EXISTS {} ON {}.{} ({})").format(
                    Identifier(f"{table}_{index_suffix}_idx"), schema, Identifier(table),
                    columns))

    def _create_view(self, curs: Cursor[DictRow], suffix: str, generation: int) -> None:
        schema = Identifier(self.schema)
        curs.execute(SQL("CREATE VIEW {}.{} AS SELECT * FROM {}.{}").format(
            schema, Identifier(self.prefix + suffix),
            schema, Identifier(self._table_name(generation, suffix))))

    def create_generation(self, generation: int) -> None:
        """Creates an empty generation's tables, without secondary indexes (bulk load)."""
        with self.datastore.transaction(commit=True) as curs:
            self._create_generation_tables(curs, generation, with_indexes=False)

    def create_indexes(self, generation: int) -> None:
        with self.datastore.transaction(commit=True) as curs:
            self._create_indexes(curs, generation)

    def drop_generation(self, generation: int) -> None:
        """Drops a generation that is not live (a finished or abandoned rebuild's leftovers)."""
        if generation == self.pointer().generation:
            raise ValueError(f"generation {generation} of {self.projection_name} is live")
        schema = Identifier(self.schema)
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(SQL("SET LOCAL lock_timeout = {}").format(SWITCH_LOCK_TIMEOUT))
            for suffix in [spec.suffix for spec in self.table_specs] + ["_tracking"]:
                curs.execute(SQL("DROP TABLE IF EXISTS {}.{}").format(
                    schema, Identifier(self._table_name(generation, suffix))))
        self._generations.pop(generation, None)

    def generations_on_disk(self) -> list[int]:
        """Every generation that has tables in the schema."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._generation_tables, (self.schema, self._generation_pattern.pattern))
            found = {int(m.group(1)) for r in curs.fetchall()
                     if (m := self._generation_pattern.match(r["tablename"]))}
        return sorted(found)

    # ------------------------------------------------------------------ pointer

    def pointer(self) -> Pointer:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._select_pointer, (self.projection_name,), prepare=True)
            row = curs.fetchone()
        if row is None:
            raise LookupError(f"projection {self.projection_name} has no pointer row")
        return Pointer(row["generation"], row["building"], row["error"], row["error_position"])

    def mark_rebuild_needed(self, curs: Cursor[DictRow], generation: int, reason: str) -> None:
        """Notes on the generation's main table that its rows need a rebuild; the status
        shows it until a rebuild switches to a new generation (whose tables carry no note)."""
        curs.execute(SQL("COMMENT ON TABLE {}.{} IS {}").format(
            Identifier(self.schema), Identifier(self._table_name(generation, "")),
            Literal(reason)))

    def set_building(self, generation: int | None) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._set_building, (generation, self.projection_name))

    def record_error(self, message: str, position: int | None) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._set_error, (message, position, self.projection_name))

    def clear_error(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._clear_error, (self.projection_name,))

    def switch(self, generation: int, application_name: str,
               catch_up: Callable[[int], int]) -> int:
        """Makes `generation` live, atomically; returns its position at the switch.

        Holds the pointer row `FOR UPDATE` (waiting for a live batch in flight, holding
        back the next), lets `catch_up(live_position)` bring the new generation at least as
        far as the live one, then moves the pointer and the SQL views in one commit. Live
        projectors resume on the new generation and skip what it already has.
        """
        # While this holds the pointer row, a live batch of this projection waits holding a
        # connection, and the catch-up takes one more: room for both beside the budget.
        with held_connections(self.datastore, 2), self.datastore.get_connection() as conn, \
                conn.transaction():
            curs = conn.cursor()
            curs.execute(SQL("SET LOCAL lock_timeout = {}").format(SWITCH_LOCK_TIMEOUT))
            curs.execute(self._select_pointer_for_update, (self.projection_name,))
            row = curs.fetchone()
            assert row is not None  # created with the view
            live = int(row["generation"])
            curs.execute(self._tracking_sql(live).position, (application_name,))
            live_row = curs.fetchone()
            position = catch_up(live_row["notification_id"] if live_row else 0)
            curs.execute(self._switch_pointer,
                         (generation, position, position, self.projection_name))
            for suffix in self._view_suffixes():
                curs.execute(SQL("DROP VIEW IF EXISTS {}").format(self.stable_name(suffix)))
                self._create_view(curs, suffix, generation)
        return position

    # ------------------------------------------------------------------ writing

    def _generation(self, generation: int) -> tuple[GenerationTables, _TrackingSQL, S]:
        cached = self._generations.get(generation)
        if cached is None:
            schema = Identifier(self.schema)
            tables = GenerationTables(
                generation,
                {spec.suffix: SQL("{}.{}").format(
                    schema, Identifier(self._table_name(generation, spec.suffix)))
                 for spec in self.table_specs},
                SQL("{}.{}").format(schema,
                                    Identifier(self._table_name(generation, "_tracking"))),
            )
            tracking = _TrackingSQL(
                lock=SQL("SELECT notification_id FROM {} WHERE application_name = %s"
                         " FOR UPDATE").format(tables.tracking),
                upsert=SQL("INSERT INTO {} (application_name, notification_id) VALUES (%s, %s)"
                           " ON CONFLICT (application_name) DO UPDATE"
                           " SET notification_id = EXCLUDED.notification_id"
                           ).format(tables.tracking),
                position=SQL("SELECT notification_id FROM {} WHERE application_name = %s"
                             ).format(tables.tracking),
            )
            cached = (tables, _as_strings(tracking),
                      _as_strings(self.generation_statements(tables)))
            self._generations[generation] = cached
        return cached

    def _tracking_sql(self, generation: int) -> _TrackingSQL:
        return self._generation(generation)[1]

    @contextmanager
    def batch(self, application_name: str,
              generation: int | None = None) -> Iterator[BatchTransaction[S]]:
        """One transaction on the live generation (or the given one) with its tracking row
        locked; rows and tracking commit together, or not at all."""
        # BEGIN goes out with the pointer's read, and the tracking row's update with the
        # COMMIT, each pair in one pipelined round trip: a live batch of a few events took
        # seven round trips, now five (the connections are in autocommit mode, so BEGIN and
        # COMMIT are ours to send).
        with self.datastore.get_connection() as conn:
            curs = conn.cursor()
            try:
                with conn.pipeline():
                    curs.execute(_BEGIN)
                    if generation is None:
                        curs.execute(self._select_pointer_for_share, (self.projection_name,),
                                     prepare=True)
                        row = curs.fetchone()
                        if row is None:
                            raise LookupError(
                                f"projection {self.projection_name} has no pointer row")
                        generation = int(row["generation"])
                _, tracking, sql = self._generation(generation)
                curs.execute(tracking.lock, (application_name,), prepare=True)
                found = curs.fetchone()
                tx = BatchTransaction(curs, generation, sql,
                                      found["notification_id"] if found else None)
                yield tx
                with conn.pipeline():
                    if tx.tracked is not None:
                        curs.execute(tracking.upsert, (application_name, tx.tracked),
                                     prepare=True)
                    curs.execute(_COMMIT)
            finally:
                if conn.info.transaction_status != _IDLE and not conn.closed:
                    conn.rollback()

    def insert_tracking(self, tracking: Tracking) -> None:
        """Records that an event was seen (the library's contract: never twice, no gaps
        filled in)."""
        with self.batch(tracking.application_name) as tx:
            if not tx.is_new(tracking.notification_id):
                raise IntegrityError(
                    f"{self.projection_name} already has {tracking.application_name} "
                    f"position {tx.after} >= {tracking.notification_id}")
            tx.track(tracking.notification_id)

    def generation_position(self, generation: int, application_name: str) -> int | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._tracking_sql(generation).position, (application_name,))
            row = curs.fetchone()
        return row["notification_id"] if row else None

    # ------------------------------------------------------------------ status

    def status(self, app: Application[Any]) -> ProjectionStatus:
        """Position, head of the event store, lag and state, as any process sees them."""
        head = app.recorder.max_notification_id() or 0
        active = self._keys[LockRole.ACTIVE]
        present = self._keys[LockRole.PRESENCE]
        rebuild = self._keys[LockRole.REBUILD]
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._state, (
                app.name, active.class_id, active.object_id, present.class_id,
                present.object_id, rebuild.class_id, rebuild.object_id, self.schema,
                self.prefix, self.projection_name,
            ), prepare=True)
            row = curs.fetchone()
        if row is None:
            raise LookupError(f"projection {self.projection_name} has no pointer row")
        position = row["position"] or 0
        building = row["building"]
        building_position = (self.generation_position(building, app.name)
                             if building is not None and row["rebuilding"] else None)
        if row["error"]:
            state = f"error: {row['error']}"
        elif row["rebuilding"]:
            state = "rebuilding"
        elif row["active"]:
            state = "running"
        elif row["present"]:
            state = "standby"
        else:
            state = "stopped"
        return ProjectionStatus(
            name=self.projection_name, position=position, head=head,
            lag_events=max(head - position, 0),
            lag_seconds=oldest_wait_seconds(app, position) if head > position else 0.0,
            state=state, generation=row["generation"],
            rebuilding_generation=building if row["rebuilding"] else None,
            rebuilding_position=building_position if row["rebuilding"] else None,
            error_position=row["error_position"],
            rebuild_needed=row["rebuild_needed"],
        )

    def wait_for(self, position: int, application_name: str, timeout: float) -> None:
        """Blocks until the live generation has applied `position` (TimeoutError if not)."""
        poll_until(lambda: (self.max_tracking_id(application_name) or 0) >= position,
                   timeout, f"{self.projection_name} to reach position {position}")


def oldest_wait_seconds(app: Application[Any], position: int) -> float | None:
    """How long the oldest event after `position` has been waiting to be applied (or
    relayed); None if it cannot be read."""
    notifications: Sequence[Any] = app.recorder.select_notifications(
        start=position, limit=1, inclusive_of_start=False)
    if not notifications:
        return 0.0
    try:
        event = app.mapper.to_domain_event(notifications[0])
    except Exception:  # an event this version cannot read: the state says so
        return None
    return max((datetime.now(UTC) - event.timestamp).total_seconds(), 0.0)
