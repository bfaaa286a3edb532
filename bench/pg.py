"""The benchmark's own database, and the raw-PostgreSQL baselines measured on it."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import quote

from psycopg import sql

from application import database
from application.database import Database

PAYLOAD = b"x" * 300  # about the size of a stored workflow event


@contextmanager
def throwaway_database() -> Iterator[Database]:
    """A database of its own on DATABASE_URL's server (or the embedded one), dropped after."""
    url = os.environ.get("DATABASE_URL")
    base = database.parse_url(url) if url else database.start_embedded()
    db = base.with_database(f"wes_bench_{uuid.uuid4().hex[:10]}")
    database.ensure_database(db)
    try:
        yield db
    finally:
        database.drop_database(db)


def database_url(db: Database) -> str:
    """DATABASE_URL for a child process (with the password, unlike `Database.url`)."""
    credentials = quote(db.user, safe="")
    if db.password:
        credentials += ":" + quote(db.password, safe="")
    if db.host.startswith("/"):
        return f"postgresql://{credentials}@/{db.dbname}?host={quote(db.host)}&port={db.port}"
    return f"postgresql://{credentials}@{db.host}:{db.port}/{db.dbname}"


def server_facts(db: Database) -> tuple[str, dict[str, str]]:
    """The server's version and the settings that decide commit throughput."""
    names = ("synchronous_commit", "fsync", "wal_sync_method", "commit_delay",
             "shared_buffers", "max_connections")
    with db.connect(autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        settings = {name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
                    for name in names}
    return str(version), settings


def run_clients(clients: int, seconds: float,
                work: Callable[[int, Callable[[], None], Callable[[], bool]], int]) -> float:
    """Runs `work(i, ready, running)` in `clients` threads that start together: each sets
    itself up, calls `ready()`, works while `running()` and returns how many operations it
    did. Answers operations per second over the run."""
    counts = [0] * clients
    start = threading.Barrier(clients + 1)
    deadline: list[float] = []

    def running() -> bool:
        return time.perf_counter() < deadline[0]

    def client(i: int) -> None:
        counts[i] = work(i, start.wait, running)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    deadline.append(time.perf_counter() + seconds)
    began = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - began)


def raw_commits(db: Database, clients: int, seconds: float) -> float:
    """Single-row INSERT commits per second with `clients` connections (threads)."""
    with db.connect(autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_raw_commits"
                     " (id bigserial PRIMARY KEY, payload bytea NOT NULL)")

    def client(i: int, ready: Callable[[], None], running: Callable[[], bool]) -> int:
        with db.connect(autocommit=True) as conn:
            conn.execute("INSERT INTO bench_raw_commits (payload) VALUES (%s)", (PAYLOAD,),
                         prepare=True)
            ready()
            n = 0
            while running():
                conn.execute("INSERT INTO bench_raw_commits (payload) VALUES (%s)", (PAYLOAD,),
                             prepare=True)
                n += 1
            return n

    return run_clients(clients, seconds, client)


def raw_copy(db: Database, rows: int) -> float:
    """Rows per second of one COPY of `rows` event-like rows into an indexed table."""
    with db.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS bench_raw_copy")
        conn.execute("CREATE TABLE bench_raw_copy (originator_id uuid, originator_version bigint,"
                     " topic text, state bytea, notification_id bigint,"
                     " PRIMARY KEY (originator_id, originator_version))")
        conn.execute("CREATE UNIQUE INDEX ON bench_raw_copy (notification_id)")
        conn.commit()
        oids = [uuid.uuid4() for _ in range(max(rows // 20, 1))]
        began = time.perf_counter()
        with conn.cursor() as curs, curs.copy(
                "COPY bench_raw_copy FROM STDIN") as copy:
            for i in range(rows):
                copy.write_row((oids[i % len(oids)], i // len(oids) + 1, "Workflow.Event",
                                PAYLOAD, i + 1))
        conn.commit()
        elapsed = time.perf_counter() - began
        conn.execute("DROP TABLE bench_raw_copy")
        conn.commit()
    return rows / elapsed


def raw_fetch_stream(db: Database, table: str, originator_id: uuid.UUID) -> float:
    """Seconds to fetch one aggregate's whole stream with plain psycopg (best of three)."""
    query = sql.SQL("SELECT originator_version, state FROM {}.{} WHERE originator_id = %s"
                    " ORDER BY originator_version").format(sql.Identifier(db.schema),
                                                           sql.Identifier(table))
    best = float("inf")
    with db.connect() as conn:
        for _ in range(4):
            began = time.perf_counter()
            conn.execute(query, (originator_id,)).fetchall()
            best = min(best, time.perf_counter() - began)
    return best
