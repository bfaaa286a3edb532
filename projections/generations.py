"""Generational views: read-model tables that can be rebuilt beside the live ones.

A read model's tables come in *generations* (`wes_progress_g1`, `wes_progress_g2`, ...), each
with its own tracking table. A small pointer table, `wes_projections`, names the live
generation of every projection, and plain SQL views with the stable names (`wes_progress`,
`wes_progress_tracking`) select from it. Query methods only read the stable names, so a
rebuild can fill a fresh generation while the live one keeps serving, and the switch is one
transaction that moves the pointer and the SQL views together.

Every write is a batch transaction (projections.batch) on one generation. Live writes
find their generation by reading the pointer row `FOR SHARE`; the switch takes it `FOR
UPDATE`, so it waits for a live write in flight and holds the next one until the new
generation is live.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier, Literal

from application.locks import HELD_SQL, LockKey, LockRole, lock, projection_lock_key
from application.pool import held_connections
from projections.batch import BatchTransaction, TrackingSQL, as_strings, batch_transaction
from projections.status import EventLog, HasEventStore, ProjectionStatus, status_of
from projections.waiting import poll_until

POINTER_TABLE = "wes_projections"
TABLE_PREFIX = "wes_"
SWITCH_LOCK_TIMEOUT = "5s"

S = TypeVar("S")


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


class GenerationalView(PostgresTrackingRecorder, Generic[S]):
    """A `PostgresTrackingRecorder` whose tables come in rebuildable generations."""

    projection_name: ClassVar[str]
    table_specs: ClassVar[tuple[TableSpec, ...]]
    retired_suffixes: ClassVar[tuple[str, ...]] = ()
    """Tables an earlier release kept in each generation: dropped with their generation."""

    def __init__(self, datastore: PostgresDatastore, *,
                 tracking_table_name: str | None = None, **kwargs: Any) -> None:
        # The factory proposes a tracking table name; ours follows the generations instead.
        del tracking_table_name
        self.prefix = TABLE_PREFIX + self.projection_name
        super().__init__(datastore, tracking_table_name=self.prefix + "_tracking", **kwargs)
        schema = Identifier(self.datastore.schema)
        self.schema = self.datastore.schema
        pointer = SQL("{}.{}").format(schema, Identifier(POINTER_TABLE))
        self._generations: dict[int, tuple[GenerationTables, TrackingSQL, S]] = {}
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
            suffixes = [spec.suffix for spec in self.table_specs] + ["_tracking"]
            for suffix in suffixes + list(self.retired_suffixes):
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

    def _generation(self, generation: int) -> tuple[GenerationTables, TrackingSQL, S]:
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
            cached = (tables, as_strings(TrackingSQL.of(tables.tracking)),
                      as_strings(self.generation_statements(tables)))
            self._generations[generation] = cached
        return cached

    def _tracking_sql(self, generation: int) -> TrackingSQL:
        return self._generation(generation)[1]

    @contextmanager
    def batch(self, application_name: str,
              generation: int | None = None) -> Iterator[BatchTransaction[S]]:
        """A batch transaction (projections.batch) on the live generation, or the given one."""

        def find_generation(curs: Cursor[DictRow]) -> int:
            if generation is not None:
                return generation
            curs.execute(self._select_pointer_for_share, (self.projection_name,), prepare=True)
            row = curs.fetchone()
            if row is None:
                raise LookupError(f"projection {self.projection_name} has no pointer row")
            return int(row["generation"])

        with batch_transaction(self.datastore, application_name, find_generation,
                               self._batch_statements) as tx:
            yield tx

    def _batch_statements(self, generation: int) -> tuple[TrackingSQL, S]:
        _, tracking, sql = self._generation(generation)
        return tracking, sql

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

    def status(self, events: EventLog | HasEventStore) -> ProjectionStatus:
        """Position, head of the event store, lag and state, as any process sees them."""
        log = events if isinstance(events, EventLog) else EventLog.of(events)
        head = log.head()
        active = self._keys[LockRole.ACTIVE]
        present = self._keys[LockRole.PRESENCE]
        rebuild = self._keys[LockRole.REBUILD]
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._state, (
                log.application_name, active.class_id, active.object_id, present.class_id,
                present.object_id, rebuild.class_id, rebuild.object_id, self.schema,
                self.prefix, self.projection_name,
            ), prepare=True)
            row = curs.fetchone()
        if row is None:
            raise LookupError(f"projection {self.projection_name} has no pointer row")
        position = row["position"] or 0
        building = row["building"]
        building_position = (self.generation_position(building, log.application_name)
                             if building is not None and row["rebuilding"] else None)
        lag_seconds = log.oldest_wait_seconds(position) if head > position else 0.0
        return status_of(self.projection_name, row, head, lag_seconds, building_position)

    def wait_for(self, position: int, application_name: str, timeout: float) -> None:
        """Blocks until the live generation has applied `position` (TimeoutError if not)."""
        poll_until(lambda: (self.max_tracking_id(application_name) or 0) >= position,
                   timeout, f"{self.projection_name} to reach position {position}")

