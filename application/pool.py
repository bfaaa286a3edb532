"""The connection budget: small lazy pools, named connections, waiting instead of dying.

Every datastore (the event store's, the read models') has one pool of at most
`WES_DB_POOL_SIZE + WES_DB_MAX_OVERFLOW` connections for its transactions (the library's
`POSTGRES_POOL_SIZE` / `POSTGRES_MAX_OVERFLOW`, which still override them). None is opened at
start: the pool grows when a caller finds no idle connection, and gives one back to the
server after each `WES_DB_MAX_IDLE_SECONDS` it went unused (psycopg_pool's `max_idle`).
A connection held for a process's life by a LISTEN counts on top of the budget (see
`listening`): otherwise a projector following three projections would hold its whole pool
in LISTENs and have nothing left to read with.

Every connection names its process in `application_name` (`wes-worker-3f2a`), through
libpq's `PGAPPNAME`, so `pg_stat_activity` tells the processes apart.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TypeVar

import psycopg
from eventsourcing import persistence as es_persistence
from eventsourcing.postgres import PostgresDatastore, PostgresFactory
from eventsourcing.utils import Environment, EnvType

from application.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_POOL_SIZE = 1
DEFAULT_MAX_OVERFLOW = 1
DEFAULT_MAX_IDLE_SECONDS = 10.0
# Our own key beside the library's POSTGRES_* ones (prefixed like them per datastore).
MAX_IDLE_KEY = "POSTGRES_POOL_MAX_IDLE"
FACTORY_TOPIC = "application.pool:BudgetedPostgresFactory"
# Refusals that waiting does not cure: a wrong password, role or database, no hba entry.
_PERMANENT = re.compile(r"password authentication failed|role .* does not exist|"
                        r"no pg_hba\.conf entry|authentication failed", re.IGNORECASE)
# Errors that mean "no connection now" (a full server, a restart, a pool time-out).
UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError, DatabaseUnavailable,
               es_persistence.OperationalError, es_persistence.InterfaceError)


@dataclass(frozen=True)
class PoolBudget:
    """Connections per datastore of one process (API.md "Scaling settings"; read from
    `WES_DB_*` by `Settings.pool`)."""

    pool_size: int = DEFAULT_POOL_SIZE
    max_overflow: int = DEFAULT_MAX_OVERFLOW
    max_idle_seconds: float = DEFAULT_MAX_IDLE_SECONDS

    def times(self, parts: int) -> PoolBudget:
        """The budget of `parts` processes, for one process doing all their work."""
        return PoolBudget(self.pool_size * parts, self.max_overflow * parts,
                          self.max_idle_seconds)

    def env(self) -> dict[str, str]:
        """The library's keys for this budget (an explicit POSTGRES_* in the process's
        environment wins, as before)."""
        return {
            "POSTGRES_POOL_SIZE": os.environ.get("POSTGRES_POOL_SIZE", str(self.pool_size)),
            "POSTGRES_MAX_OVERFLOW": os.environ.get("POSTGRES_MAX_OVERFLOW",
                                                    str(self.max_overflow)),
            MAX_IDLE_KEY: str(self.max_idle_seconds),
        }


class BudgetedPostgresFactory(PostgresFactory):
    """The library's PostgreSQL factory, whose pool opens nothing until used and closes
    idle connections (the library's pool opens `POSTGRES_POOL_SIZE` at once and keeps them
    for an hour)."""

    def __init__(self, env: Environment | EnvType | None):
        super().__init__(env)
        raw = self.env.get(MAX_IDLE_KEY)
        make_lazy(self.datastore, float(raw) if raw else DEFAULT_MAX_IDLE_SECONDS)


def make_lazy(datastore: PostgresDatastore, max_idle_seconds: float) -> None:
    """Before the pool opens: the same ceiling, no connection kept when unused."""
    pool = datastore.pool
    pool.resize(0, pool.max_size)
    pool.max_idle = max_idle_seconds


_listeners_lock = threading.Lock()


@contextmanager
def held_connections(datastore: PostgresDatastore, count: int = 1) -> Iterator[None]:
    """Room for `count` more connections in the datastore's pool while some are held
    across a wait: a LISTEN (held until stopped), or a transaction that makes others wait
    for it while it takes another connection itself (a rebuild's switch). Without it a
    small pool can hand its last connection to a waiter and leave the holder none."""
    pool = datastore.pool
    with _listeners_lock:
        pool.resize(pool.min_size, pool.max_size + count)
    try:
        yield
    finally:
        with _listeners_lock:
            pool.resize(pool.min_size, max(pool.max_size - count, 1))


def listening(datastore: PostgresDatastore) -> AbstractContextManager[None]:
    """Room for one more connection in the datastore's pool while a LISTEN holds one."""
    return held_connections(datastore, 1)


# ---------------------------------------------------------------------------- names

_name: str | None = None


def name_process(kind: str, ident: str | None = None) -> str:
    """Names this process's connections `wes-<kind>-<id>` (PGAPPNAME, read by libpq for
    every connection opened from now on); returns the name."""
    global _name
    _name = f"wes-{kind}-{ident or uuid.uuid4().hex[:6]}"[:63]
    os.environ["PGAPPNAME"] = _name
    return _name


def process_name(default_kind: str = "process") -> str:
    """This process's connection name: the one given, else `PGAPPNAME` as the user set it,
    else one made now (`wes-<default_kind>-<id>`)."""
    return _name or os.environ.get("PGAPPNAME") or name_process(default_kind)


# ---------------------------------------------------------------------------- waiting

DEFAULT_START_WAIT_SECONDS = 60.0


def until_available(what: str, action: Callable[[], T], *,
                    stopped: Callable[[], bool] = lambda: False,
                    first_delay: float = 0.5, max_delay: float = 10.0,
                    deadline_seconds: float | None = None) -> T:
    """`action()`, retried with backoff while the database gives no connection (a full
    server, a restart), saying so in one line per attempt instead of a traceback. Raises
    the last error when `stopped()` or past `deadline_seconds` (a process's
    `WES_DB_START_WAIT_SECONDS`, given by bootstrap.container; 60 by default: a process
    that never reaches its database ends with one line instead of waiting forever)."""
    if deadline_seconds is None:
        deadline_seconds = DEFAULT_START_WAIT_SECONDS
    delay = first_delay
    start = time.monotonic()
    while True:
        try:
            return action()
        except UNAVAILABLE as e:
            late = deadline_seconds is not None and time.monotonic() - start > deadline_seconds
            if stopped() or late or _PERMANENT.search(str(e)):
                raise
            reason = " ".join(str(e).split())[:160] or type(e).__name__
            log.warning("%s: %s: no database connection (%s); retrying in %.1f s",
                        process_name(), what, reason, delay)
            time.sleep(delay)
            delay = min(delay * 2, max_delay)
