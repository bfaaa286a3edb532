"""Work-in-progress caps for every step, across all workers: PostgreSQL slots with leases.

`WES_WIP_CAPS` says how many steps of a service may be in flight at once. The release loop
already admits waveless work by the cap of each workflow's *first* service; this gate holds
the cap for *every* step (and compensation call) of a capped service, whichever worker runs
it and whether or not its workflow is waveless.

A service with cap N has N slot rows. Before a step's start is saved, the worker takes a
free slot (`FOR UPDATE SKIP LOCKED`, as work items are claimed) with a lease; it holds it
through the call and the recording of its outcome, renews it while it works, and frees it
afterwards. A worker killed mid-call stops renewing: its slot comes back when the lease
expires, and whoever re-invokes the attempt takes a slot again. No count lives in a
process's memory, so the cap holds across processes and crashes.

A step whose service has no free slot is not started and spends no retry (as backpressure
when no instance can take work): its work item is held back under the owner
`wip:<service>`, and freeing a slot hands the item with the highest priority and the
earliest due time back to the queue at once (NOTIFY wakes the workers). A hand-back lost
in a race is made up by the re-check `recheck_seconds` later.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from uuid import UUID

from psycopg.sql import SQL, Identifier

from application.database import render
from application.event_log import WesApplicationRecorder

log = logging.getLogger(__name__)

WAITING_OWNER = "wip:"
DEFAULT_RECHECK_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Slot:
    """One held slot of a capped service."""

    service: str
    number: int
    holder: str


class WipGate:
    """Slots of the capped services, shared by every worker through the database."""

    def __init__(self, store: WesApplicationRecorder, caps: Mapping[str, int], *,
                 lease_seconds: float = 3.0,
                 recheck_seconds: float = DEFAULT_RECHECK_SECONDS) -> None:
        self.store = store
        self.caps = {service: int(cap) for service, cap in caps.items()}
        self.lease_seconds = lease_seconds
        self.recheck_seconds = recheck_seconds
        self._held = 0
        self._lock = threading.Lock()
        schema = Identifier(store.datastore.schema)
        table = store.work_queue.table_name.rsplit("_work_queue", 1)[0] + "_wip_slots"
        slots = Identifier(table)
        work = Identifier(store.work_queue.table_name)
        self._create = SQL(
            "CREATE TABLE IF NOT EXISTS {schema}.{slots} ("
            " service text NOT NULL, slot integer NOT NULL, holder text, owner text,"
            " lease_until timestamptz, PRIMARY KEY (service, slot))"
        ).format(schema=schema, slots=slots)
        self._add_slots = render(SQL(
            "INSERT INTO {schema}.{slots} (service, slot)"
            " SELECT %s, g FROM generate_series(0, %s - 1) g ON CONFLICT DO NOTHING"
        ).format(schema=schema, slots=slots))
        # Only slots below this process's cap count: processes configured with different
        # caps each keep to their own.
        self._acquire = render(SQL(
            "WITH free AS (SELECT service, slot FROM {schema}.{slots}"
            " WHERE service = %s AND slot < %s AND (lease_until IS NULL OR lease_until < now())"
            " ORDER BY slot LIMIT 1 FOR UPDATE SKIP LOCKED)"
            " UPDATE {schema}.{slots} s SET holder = %s, owner = %s,"
            " lease_until = now() + make_interval(secs => %s)"
            " FROM free WHERE s.service = free.service AND s.slot = free.slot RETURNING s.slot"
        ).format(schema=schema, slots=slots))
        self._free = render(SQL(
            "UPDATE {schema}.{slots} SET holder = NULL, owner = NULL, lease_until = NULL"
            " WHERE service = %s AND slot = %s AND holder = %s"
        ).format(schema=schema, slots=slots))
        self._renew = render(SQL(
            "UPDATE {schema}.{slots} SET lease_until = now() + make_interval(secs => %s)"
            " WHERE owner = %s AND holder IS NOT NULL"
        ).format(schema=schema, slots=slots))
        self._count = render(SQL(
            "SELECT service, count(*) AS n FROM {schema}.{slots}"
            " WHERE holder IS NOT NULL AND lease_until >= now() GROUP BY service"
        ).format(schema=schema, slots=slots))
        self._busy = render(SQL(
            "SELECT count(*) AS n FROM {schema}.{slots}"
            " WHERE service = %s AND slot < %s AND holder IS NOT NULL AND lease_until >= now()"
        ).format(schema=schema, slots=slots))
        self._hold = render(SQL(
            "UPDATE {schema}.{work} SET lease_owner = %s,"
            " lease_until = now() + make_interval(secs => %s)"
            " WHERE workflow_id = %s AND lease_owner = %s"
        ).format(schema=schema, work=work))
        self._wake = render(SQL(
            "WITH w AS (SELECT workflow_id FROM {schema}.{work} WHERE lease_owner = %s"
            " ORDER BY priority, due_at LIMIT %s FOR UPDATE SKIP LOCKED)"
            " UPDATE {schema}.{work} q SET lease_owner = NULL, lease_until = NULL"
            " FROM w WHERE q.workflow_id = w.workflow_id"
        ).format(schema=schema, work=work))
        self._notify = SQL("SELECT pg_notify(%s, '')")
        with store.datastore.transaction(commit=True) as curs:
            curs.execute(self._create)
            for service, cap in self.caps.items():
                if cap > 0:
                    curs.execute(self._add_slots, (service, cap))

    def capped(self, service: str) -> bool:
        """Whether steps of `service` need a slot."""
        return service in self.caps

    def acquire(self, service: str, holder: str, owner: str) -> Slot | None:
        """Takes a free slot of `service` for `holder` (a step attempt), leased to `owner`
        (a worker); None when the service is at its cap."""
        cap = self.caps[service]
        if cap <= 0:
            return None
        with self.store.datastore.transaction(commit=True) as curs:
            curs.execute(self._acquire, (service, cap, holder, owner, self.lease_seconds),
                         prepare=True)
            row = curs.fetchone()
        if row is None:
            return None
        with self._lock:
            self._held += 1
        return Slot(service, int(row["slot"]), holder)

    def release(self, slot: Slot) -> None:
        """Frees a slot and hands the most urgent step waiting for it back to the queue."""
        with self._lock:
            self._held = max(self._held - 1, 0)
        with self.store.datastore.transaction(commit=True) as curs:
            curs.execute(self._free, (slot.service, slot.number, slot.holder), prepare=True)
            self._wake_in(curs, slot.service)

    def hold(self, workflow_id: UUID, service: str, owner: str) -> None:
        """Gives back `owner`'s claim on a workflow whose step waits for a slot: it stays
        out of the queue until a slot frees (or the re-check)."""
        with self.store.datastore.transaction(commit=True) as curs:
            curs.execute(self._hold, (WAITING_OWNER + service, self.recheck_seconds,
                                      workflow_id, owner), prepare=True)
        # A slot freed between our failed try and the hold found nobody to wake: look again.
        with self.store.datastore.transaction(commit=True) as curs:
            curs.execute(self._busy, (service, self.caps[service]), prepare=True)
            row = curs.fetchone()
            if row is not None and int(row["n"]) < self.caps[service]:
                self._wake_in(curs, service)

    def _wake_in(self, curs: object, service: str) -> None:
        curs.execute(self._wake, (WAITING_OWNER + service, 1), prepare=True)  # type: ignore[attr-defined]
        if curs.rowcount:  # type: ignore[attr-defined]
            curs.execute(self._notify, (self.store.channel_name,))  # type: ignore[attr-defined]

    def renew(self, owner: str) -> None:
        """Extends the leases of the slots `owner` holds (the worker's renewer calls it)."""
        with self._lock:
            if not self._held:
                return
        with self.store.datastore.transaction(commit=True) as curs:
            curs.execute(self._renew, (self.lease_seconds, owner), prepare=True)

    def in_flight(self) -> dict[str, int]:
        """Slots held now, per service (expired leases do not count)."""
        with self.store.datastore.transaction(commit=False) as curs:
            curs.execute(self._count, prepare=True)
            return {r["service"]: int(r["n"]) for r in curs.fetchall()}
