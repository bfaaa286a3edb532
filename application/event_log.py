"""The event log: the library's PostgreSQL application recorder, appending without a table lock.

`WesApplicationRecorder` is the library's recorder with two changes. Its appends also write
the engine's work queue in the same statement (application/work_queue.py says why), and:

**Appends run concurrently; readers still never pass over an event.** The library takes
an EXCLUSIVE lock on the events table for every append and holds it until commit, so that
positions (notification ids) become visible in order; appends are then serialised through
each commit's disk flush, and its NOTIFY (which PostgreSQL also serialises through commit)
does the same. Here an append holds a lock only while it takes its positions:

1. Positions are handed out in contiguous blocks, one block per append, under a session
   advisory lock that is released before the rows are even written (microseconds). While
   it holds that lock, the append also takes transaction-scoped advisory locks named after
   the first and the last position of its block: the block's *markers*, held until the
   append commits or aborts.
2. A reader returns rows in position order from any start and never passes over a missing
   position until it knows that position's transaction has ended. Every missing position
   below a row it has read lies in a block handed out before that row's block, so its
   markers were taken before the row's block existed; and a block still in flight that
   holds a missing position has its first or its last position among the missing ones
   (it cannot reach the row, which is committed), even when it began below the read's
   start. So if no marker among the missing positions is held, their writers have
   finished: the reader reads them again with a fresh snapshot (rows now present committed
   late and are returned in order; rows still missing were rolled back and can never
   appear). A held marker stops the read just before it; a subscription then waits on that
   very marker (no timeout decides anything).

   "From now" is the *settled head* (`settled_head`), not the highest committed position:
   the position just below the first block still in flight (its lowest held marker), read
   from pg_locks in the statement that reads the highest position. A reader that starts
   after it misses nothing that commits later; it may get a few events that committed just
   before it asked.
3. NOTIFY is sent after commit by one background sender per recorder, coalescing bursts,
   so it does not serialise commits either. It only wakes subscribers up: correctness
   never depends on it.

Positions are therefore contiguous per append (the library's non-interleaving contract),
returned by `insert_events` as before, and read in order exactly once. Anything that
reads the events table must go through `select_notifications` / `subscribe` (a bare
`ORDER BY notification_id` query can pass over an append still in flight), and a reader
"from now" starts after `settled_head()`: `max_notification_id()` stays the library's
highest committed position, right for "wait until this is applied", not as a start.

The locks used here (allocation, markers, setup) are named in application/locks.py; the
audit reads of one stream are application/audit_reads.py, following the log live is
application/log_following.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple
from uuid import UUID

import psycopg
import psycopg.errors
from eventsourcing.persistence import (
    InterfaceError,
    Notification,
    OperationalError,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Composed, Identifier, Literal

from application.audit_reads import AuditReads
from application.connection_check import check_now_and_then
from application.database import render
from application.locks import (
    LOW_31_BITS,
    LockKind,
    held_exclusive_in_class,
    lock,
    lock_call,
    lock_key,
)
from application.log_following import Notifier, WesSubscription, unlisten
from application.pool import held_connections, listening
from application.work_queue import WorkItem, WorkQueue, work_table_name

# Markers live in the two-int advisory-lock space (classid = a hash of the table, objid =
# the position's low 31 bits). A hash collision can only make a reader or writer wait for
# another transaction to end (or, past 2**31 positions, hold the settled head lower); it
# can never make a reader pass over an event.
_POSITION_BITS = LOW_31_BITS
# Appends with up to this many events (or work items) send them as scalar parameters.
_SCALAR_ROWS = 8
# Reads try markers one by one up to this many missing positions (each try holds a lock
# slot until the statement's transaction ends), then read pg_locks instead.
_PROBE_LIMIT = 64


def _rows(n: int) -> int:
    """How an append sends `n` rows of one kind: as `n` scalar rows, or as arrays (-1)."""
    return n if n <= _SCALAR_ROWS else -1


def _event_params(stored_events: Sequence[StoredEvent], *, as_arrays: bool) -> list[Any]:
    """The parameters of the append's events half: their count, then the rows."""
    if not stored_events:
        return []
    params: list[Any] = [len(stored_events)]
    if as_arrays:
        params += ([e.originator_id for e in stored_events],
                   [e.originator_version for e in stored_events],
                   [e.topic for e in stored_events], [e.state for e in stored_events])
    else:
        for e in stored_events:
            params += (e.originator_id, e.originator_version, e.topic, e.state)
    return params


class Heads(NamedTuple):
    """Two heads of the event log, read at one instant."""

    latest: int
    """The highest committed position (the library's `max_notification_id`)."""
    settled: int
    """The highest position at or below which every append has ended (committed or rolled
    back); at most `latest`. Positions above it may still commit."""


class WesApplicationRecorder(PostgresApplicationRecorder):
    """The library's recorder, appending without a table lock, plus the work queue written
    with the events (`work_queue`) and the audit reads of one stream (`audit`)."""

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
        check_now_and_then(datastore)
        self.work_queue = WorkQueue(datastore, work_table_name(events_table_name))
        self.sql_create_statements += self.work_queue.create_statements
        self.audit = AuditReads(datastore, events_table_name)
        self._init_appends(Identifier(datastore.schema))
        self._init_reads(Identifier(datastore.schema))

    # ---- appending

    def _init_appends(self, schema: Identifier) -> None:
        events = Identifier(self.events_table_name)
        qualified = f"{self.datastore.schema}.{self.events_table_name}"
        self.allocate_function_name = f"{self.events_table_name}_allocate"
        self.check_identifier_length(self.allocate_function_name)
        # The first key, shared by every marker of this table; the second is a position.
        self._marker_class = lock_key(LockKind.APPEND_MARKER, qualified).params[0]
        self._allocation_key = lock_key(LockKind.APPEND_ALLOCATION, qualified)
        self._setup_key = lock_key(LockKind.EVENT_LOG_SETUP, qualified)
        allocate = SQL("{}.{}").format(schema, Identifier(self.allocate_function_name))
        self._id_type = SQL(self.datastore.originator_id_type)
        self._append_parts = {
            "events": SQL(
                "allocation AS MATERIALIZED (SELECT {allocate}(%s) AS first_id),"
                " inserted AS (INSERT INTO {schema}.{events}"
                " (notification_id, originator_id, originator_version, topic, state)"
                " SELECT allocation.first_id + e.ord - 1, e.originator_id, e.originator_version,"
                " e.topic, e.state FROM allocation, {rows}"
                " AS e(originator_id, originator_version, topic, state, ord)"
                " RETURNING notification_id)"
            ).format(allocate=allocate, schema=schema, events=events, rows=SQL("{rows}")),
            **self.work_queue.append_parts,
        }
        # Few rows (the usual save) go as scalar parameters: psycopg dumps those much
        # faster than arrays. Many rows go as arrays.
        self._append_rows = {
            "events": (SQL("(VALUES {})"), SQL("(%s::{}, %s::bigint, %s::text, %s::bytea, {})"),
                       SQL("unnest(%s::{}[], %s::bigint[], %s::text[], %s::bytea[])"
                           " WITH ORDINALITY")),
            **self.work_queue.append_rows,
        }
        self._append_sql: dict[tuple[int, int, int], str] = {}
        self._notify = render(SQL("NOTIFY {}").format(Identifier(self.channel_name)))
        self._notifier = Notifier(self.datastore, self._notify)

    def _marker(self, position: str) -> Composed:
        """The lock arguments of the marker of a position computed in SQL (`position`): the
        same two keys as `lock_key(LockKind.APPEND_MARKER, table, position)`."""
        return SQL("{}, ({} & {})::integer").format(
            Literal(self._marker_class), SQL(position), Literal(_POSITION_BITS))

    def _build_append(self, shape: tuple[int, int, int]) -> str:
        """The append statement for (events, due items, done items); -1 means many."""
        ctes = []
        for part, n in zip(("events", "due", "done"), shape, strict=True):
            if n == 0:
                continue
            many, one, arrays = self._append_rows[part]
            if n < 0:
                rows = arrays.format(self._id_type) if part == "events" else arrays
            elif part == "events":
                rows = many.format(SQL(", ").join(one.format(self._id_type, Literal(i + 1))
                                                  for i in range(n)))
            else:
                rows = many.format(SQL(", ").join([one] * n))
            ctes.append(SQL(self._append_parts[part].as_string()).format(rows=rows))
        select = SQL(" SELECT notification_id FROM inserted" if shape[0] else " SELECT 1")
        query = render(SQL("WITH ") + SQL(", ").join(ctes) + select)
        self._append_sql[shape] = query
        return query

    def _create_table(self, curs: Cursor[DictRow]) -> None:
        # Several processes may start at once; CREATE OR REPLACE FUNCTION does not like that.
        lock(curs, self._setup_key, transaction=True)
        super()._create_table(curs)
        curs.execute("SELECT pg_get_serial_sequence(%s, 'notification_id') AS seq",
                     (SQL("{}.{}").format(Identifier(self.datastore.schema),
                                          Identifier(self.events_table_name)).as_string(),))
        row = curs.fetchone()
        assert row is not None and row["seq"], "the events table has no notification_id sequence"
        allocation = self._allocation_key.literal()
        curs.execute(SQL(
            "CREATE OR REPLACE FUNCTION {schema}.{name}(n integer) RETURNS bigint"
            " LANGUAGE plpgsql AS $body$"
            " DECLARE first_id bigint;"
            " BEGIN"
            "  PERFORM {lock_allocation};"
            "  first_id := nextval({seq}::regclass);"
            "  IF n > 1 THEN"
            "   PERFORM setval({seq}::regclass, first_id + n - 1);"
            "   PERFORM {mark_last};"
            "  END IF;"
            "  PERFORM {mark_first};"
            "  PERFORM {unlock_allocation};"
            "  RETURN first_id;"
            " END $body$"
        ).format(schema=Identifier(self.datastore.schema),
                 name=Identifier(self.allocate_function_name),
                 lock_allocation=lock_call(allocation), seq=Literal(row["seq"]),
                 mark_last=lock_call(self._marker("(first_id + n - 1)"), transaction=True),
                 mark_first=lock_call(self._marker("first_id"), transaction=True),
                 unlock_allocation=lock_call(allocation, unlock=True)))

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(self, stored_events: Sequence[StoredEvent],
                      **kwargs: Any) -> Sequence[int] | None:
        """Appends events (and `work=[WorkItem]`) atomically; returns their positions."""
        with self.datastore.get_connection() as conn:
            positions = self.append(conn, stored_events, kwargs.get("work") or ())
        if positions:
            self.announce()
        return positions

    def announce(self) -> None:
        """Wakes subscribers (soon, after this call) to read what has been committed."""
        self._notifier.wake()

    def append(self, conn: psycopg.Connection[Any], stored_events: Sequence[StoredEvent],
               work: Sequence[WorkItem] = ()) -> list[int] | None:
        """Appends events and work items in one statement on `conn`, inside the caller's
        transaction if one is open (else it commits by itself); returns the positions.
        A caller that commits its own transaction then calls `announce`."""
        items = {item.workflow_id: item for item in work}  # one row per workflow: the last
        if not stored_events and not items:
            return None
        due = [item for item in items.values() if item.due_at is not None]
        done = [item.workflow_id for item in items.values() if item.due_at is None]
        shape = (_rows(len(stored_events)), _rows(len(due)), _rows(len(done)))
        query = self._append_sql.get(shape) or self._build_append(shape)
        params = _event_params(stored_events, as_arrays=shape[0] < 0)
        params += self.work_queue.append_params(due, done, due_as_arrays=shape[1] < 0,
                                                done_as_arrays=shape[2] < 0)
        try:
            curs = conn.cursor(row_factory=tuple_row)
            curs.execute(query, params, prepare=shape[0] >= 0)
            if not stored_events:
                return None
            positions = sorted(row[0] for row in curs.fetchall())
        except psycopg.IntegrityError:
            # The append is rolled back after its block was handed out: wake the readers,
            # so that one waiting on that block sees it end.
            self._notifier.wake()
            raise
        except BaseException:
            # The allocation lock is session-scoped; a failure at the wrong moment could
            # leave it held, so this connection must not be used again.
            conn.close()
            raise
        if len(positions) != len(stored_events):
            raise ProgrammingError(f"{len(stored_events)} events got {len(positions)} positions")
        return positions

    # ---- reading

    def _init_reads(self, schema: Identifier) -> None:
        events = Identifier(self.events_table_name)
        columns = SQL("SELECT originator_version, topic, state FROM {}.{} WHERE originator_id = %s"
                      ).format(schema, events)
        self._select_events_sql: dict[tuple[bool, bool, bool, bool], str] = {}
        self._latest_sql: dict[str, str] = {}
        for gt in (False, True):
            for lte in (False, True):
                for desc in (False, True):
                    for limit in (False, True):
                        query = columns
                        query += SQL(" AND originator_version > %s") if gt else SQL("")
                        query += SQL(" AND originator_version <= %s") if lte else SQL("")
                        query += SQL(" ORDER BY originator_version DESC" if desc
                                     else " ORDER BY originator_version ASC")
                        query += SQL(" LIMIT %s") if limit else SQL("")
                        self._select_events_sql[gt, lte, desc, limit] = render(query)
        window = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, {state}"
            " FROM {schema}.{events} WHERE notification_id >= %s{stop}"
            " ORDER BY notification_id LIMIT %s")
        self._window_sql: dict[tuple[bool, bool], str] = {}
        for stop in (False, True):
            for topics in (False, True):
                state = SQL("CASE WHEN topic = ANY(%s) THEN state END") if topics else SQL("state")
                stop_sql = SQL(" AND notification_id <= %s") if stop else SQL("")
                self._window_sql[stop, topics] = render(window.format(
                    state=state, schema=schema, events=events, stop=stop_sql))
        self._reread_sql = render(SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state"
            " FROM {}.{} JOIN unnest(%s::bigint[], %s::bigint[]) AS r(lo, hi)"
            " ON notification_id BETWEEN r.lo AND r.hi ORDER BY notification_id"
        ).format(schema, events))
        self._probe_markers_sql = render(SQL(
            "SELECT g FROM unnest(%s::bigint[], %s::bigint[]) AS r(lo, hi),"
            " generate_series(r.lo, r.hi) AS g"
            " WHERE NOT {probe}"
        ).format(probe=lock_call(self._marker("g"), attempt=True, transaction=True,
                                 shared=True)))
        self._held_markers_sql = render(SQL(
            "SELECT objid::bigint FROM pg_locks WHERE {held}"
        ).format(held=held_exclusive_in_class(self._marker_class)))
        # One statement, so the events are read in a snapshot taken before pg_locks is: an
        # append whose marker is still held then has not committed in that snapshot.
        self._heads_sql = render(SQL(
            "WITH head AS (SELECT coalesce(max(notification_id), 0) AS latest FROM {events}),"
            " held AS (SELECT (head.latest & ~{bits}::bigint) | l.objid::bigint AS p"
            "  FROM head, pg_locks l WHERE {held}),"
            " named AS (SELECT CASE WHEN held.p > head.latest THEN held.p - {bits} - 1"
            "  ELSE held.p END AS p FROM held, head)"
            " SELECT head.latest, (SELECT min(named.p) FROM named WHERE named.p >= 1"
            "  AND NOT EXISTS (SELECT 1 FROM {events} e WHERE e.notification_id = named.p))"
            "  AS in_flight FROM head"
        ).format(events=SQL("{}.{}").format(schema, events), bits=Literal(_POSITION_BITS),
                 held=held_exclusive_in_class(self._marker_class, "l.")))
        self._wait_marker_sql = render(SQL("SELECT {}").format(
            lock_call(self._marker("%s::bigint"), transaction=True, shared=True)))

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_latest(self, originator_id: UUID, snapshots_table: str
                      ) -> tuple[StoredEvent | None, list[StoredEvent]]:
        """An aggregate's latest snapshot (in `snapshots_table`) and its events after it, in
        one statement: the library's repository asks twice (a round trip each, on every
        load of a workflow)."""
        query = self._latest_sql.get(snapshots_table)
        if query is None:
            schema = Identifier(self.datastore.schema)
            query = self._latest_sql[snapshots_table] = render(SQL(
                "WITH s AS (SELECT originator_version, topic, state FROM {schema}.{snapshots}"
                " WHERE originator_id = %s ORDER BY originator_version DESC LIMIT 1)"
                " SELECT true AS snapshot, originator_version, topic, state FROM s"
                " UNION ALL"
                " SELECT false, originator_version, topic, state FROM {schema}.{events}"
                " WHERE originator_id = %s"
                " AND originator_version > COALESCE((SELECT originator_version FROM s), 0)"
                " ORDER BY snapshot DESC, originator_version"
            ).format(schema=schema, snapshots=Identifier(snapshots_table),
                     events=Identifier(self.events_table_name)))
        with self.datastore.get_connection() as conn:
            curs = conn.cursor(row_factory=tuple_row)
            curs.execute(query, (originator_id, originator_id), prepare=True, binary=True)
            rows = curs.fetchall()
        snapshot = None
        if rows and rows[0][0]:
            _, version, topic, state = rows.pop(0)
            snapshot = StoredEvent(originator_id, version, topic, state)
        return snapshot, [StoredEvent(originator_id, version, topic, state)
                          for _, version, topic, state in rows]

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_events(self, originator_id: UUID | str, *, gt: int | None = None,
                      lte: int | None = None, desc: bool = False,
                      limit: int | None = None) -> Sequence[StoredEvent]:
        query = self._select_events_sql[gt is not None, lte is not None, desc, limit is not None]
        params = [originator_id, *(p for p in (gt, lte, limit) if p is not None)]
        with self.datastore.get_connection() as conn:
            curs = conn.cursor(row_factory=tuple_row)
            curs.execute(query, params, prepare=True, binary=True)
            return [StoredEvent(originator_id, version, topic, state)
                    for version, topic, state in curs.fetchall()]

    def select_notifications(self, start: int | None, limit: int, stop: int | None = None,
                             topics: Sequence[str] = (), *,
                             inclusive_of_start: bool = True) -> Sequence[Notification]:
        """Notifications in position order, never past an append that is still in flight."""
        first = 1 if start is None else start if inclusive_of_start else start + 1
        return self.select_committed(first, limit, stop, topics)[0]

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_committed(self, first: int, limit: int, stop: int | None = None,
                         topics: Sequence[str] = ()) -> tuple[list[Notification], int | None]:
        """Up to `limit` notifications from position `first` on, in order, and a marker
        position of an append still in flight that stopped the read (None if nothing did)."""
        found: list[Notification] = []
        wanted = set(topics)
        while True:
            window = self._read_window(first, limit, stop, topics)
            if not window:
                return found, None
            rows, blocked = self._resolve_gaps(first, window)
            for row in rows:
                if not wanted or row[3] in wanted:
                    found.append(Notification(id=row[0], originator_id=row[1],
                                              originator_version=row[2], topic=row[3],
                                              state=row[4]))
                    if len(found) == limit:
                        return found, None
            if blocked is not None:
                return found, blocked
            last = window[-1][0]
            if not topics or len(window) < limit or (stop is not None and last >= stop):
                return found, None
            # Topics are filtered here, so a window may hold fewer matches than asked for.
            first = last + 1

    def _read_window(self, first: int, limit: int, stop: int | None,
                topics: Sequence[str]) -> list[tuple[Any, ...]]:
        params: list[Any] = [list(topics)] if topics else []
        params.append(first)
        if stop is not None:
            params.append(stop)
        params.append(limit)
        with self.datastore.get_connection() as conn:
            curs = conn.cursor(row_factory=tuple_row)
            curs.execute(self._window_sql[stop is not None, bool(topics)], params, prepare=True,
                         binary=True)
            return curs.fetchall()

    def _resolve_gaps(self, first: int, rows: list[tuple[Any, ...]]
                ) -> tuple[list[tuple[Any, ...]], int | None]:
        """Resolves the positions missing below the last row read (see the module notes)."""
        gaps: list[tuple[int, int]] = []
        expected = first
        for row in rows:
            if row[0] > expected:
                gaps.append((expected, row[0] - 1))
            expected = row[0] + 1
        if not gaps:
            return rows, None
        blocked = self._first_in_flight(gaps)
        if blocked is not None:
            rows = [row for row in rows if row[0] < blocked]
            gaps = [(lo, min(hi, blocked - 1)) for lo, hi in gaps if lo < blocked]
        if gaps:
            # Those writers have finished: what they committed is visible to a new snapshot.
            late = self._reread_gaps(gaps)
            if late:
                rows = sorted(rows + late, key=lambda row: row[0])
        return rows, blocked

    def _first_in_flight(self, gaps: list[tuple[int, int]]) -> int | None:
        """The lowest missing position whose block marker is held (its append is in flight)."""
        with self.datastore.get_connection() as conn:
            if sum(hi - lo + 1 for lo, hi in gaps) <= _PROBE_LIMIT:
                rows = conn.execute(self._probe_markers_sql,
                                    ([lo for lo, _ in gaps], [hi for _, hi in gaps]),
                                    prepare=True).fetchall()
                return min((row["g"] for row in rows), default=None)
            held = [row["objid"] for row in conn.execute(self._held_markers_sql).fetchall()]
        # Markers name positions modulo 2**31: the lowest gap position with a held name.
        candidates = []
        for key in held:
            for lo, hi in gaps:
                position = (lo & ~_POSITION_BITS) | key
                if position < lo:
                    position += _POSITION_BITS + 1
                if position <= hi:
                    candidates.append(position)
                    break
        return min(candidates, default=None)

    def _reread_gaps(self, gaps: list[tuple[int, int]]) -> list[tuple[Any, ...]]:
        with self.datastore.get_connection() as conn:
            curs = conn.cursor(row_factory=tuple_row)
            curs.execute(self._reread_sql, ([lo for lo, _ in gaps], [hi for _, hi in gaps]),
                         prepare=True, binary=True)
            return curs.fetchall()

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def heads(self) -> Heads:
        """The latest committed position, and the settled head below every append in flight."""
        with self.datastore.get_connection() as conn:
            row = conn.execute(self._heads_sql, prepare=True).fetchone()
        latest, in_flight = (row["latest"], row["in_flight"]) if row else (0, None)
        # Markers name a block's first and last positions: the lowest held one is the
        # first position of the lowest block in flight (below `latest`, both are held).
        settled = latest if in_flight is None else min(latest, in_flight - 1)
        return Heads(latest=latest, settled=settled)

    def settled_head(self) -> int:
        """The highest position at or below which no append is in flight: where a reader
        "from now" starts so that it misses nothing that commits later."""
        return self.heads().settled

    def wait_for_append(self, position: int, stopped: Callable[[], bool]) -> None:
        """Blocks until the append whose block is marked at `position` (its first or last)
        has committed or rolled back (or `stopped()` turns true).

        The waiting connection counts on top of the pool's budget, as a LISTEN does: with a
        small pool, readers waiting for a slow writer would otherwise hold every connection
        and the process's own commands and queries would queue behind them."""
        with held_connections(self.datastore, 1):
            self._wait_marker(position, stopped)

    def _wait_marker(self, position: int, stopped: Callable[[], bool]) -> None:
        while not stopped():
            try:
                with self.datastore.transaction(commit=False) as curs:
                    # Only so that `stopped` is looked at now and then.
                    curs.execute("SET LOCAL lock_timeout = '500ms'")
                    curs.execute(self._wait_marker_sql, (position,))
                return
            except OperationalError as e:
                if not isinstance(e.__cause__, psycopg.errors.LockNotAvailable):
                    time.sleep(0.1)  # the database is unreachable: do not spin

    def subscribe(self, gt: int | None = None,
                  topics: Sequence[str] = ()) -> WesSubscription:
        return WesSubscription(self, gt=gt, topics=topics)


    def wait_for_appends(self, stop: threading.Event, on_append: Callable[[], None]) -> None:
        """LISTENs on the events channel until `stop`, calling `on_append` whenever appends
        are notified (workers wake up on them: a new event may mean new work)."""
        # The LISTEN holds its connection until stopped: one more than the budget.
        with listening(self.datastore), self.datastore.get_connection() as conn:
            conn.execute(SQL("LISTEN {}").format(Identifier(self.channel_name)))
            conn.commit()
            try:
                while not stop.is_set():
                    for _ in conn.notifies(timeout=0.5, stop_after=1):
                        on_append()
            finally:
                unlisten(conn)

