"""PostgreSQL clusters of a run's own: a primary on a free port, a streaming standby.

For the benchmark's second-server figures and the tests of read models on their own
server. Made with Debian's `pg_createcluster` / `pg_ctlcluster` (they run the server as
the `postgres` user, which initdb and postgres require), a standby by `pg_basebackup -R`.
Every cluster is dropped when its context ends, also on failure. Needs root (as in CI);
`unavailable_reason()` says why not otherwise.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from application.database import Database, parse_url

VERSION = "15"
_TOOLS = ("pg_createcluster", "pg_ctlcluster", "pg_dropcluster", "pg_basebackup")


def unavailable_reason() -> str | None:
    """Why clusters cannot be made here (None when they can)."""
    if os.geteuid() != 0:
        return "making PostgreSQL clusters needs root (pg_createcluster)"
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing PostgreSQL tools: {', '.join(missing)}"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    """One cluster: `name` under `VERSION`, listening on 127.0.0.1:`port`."""

    name: str
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def data_dir(self) -> str:
        return f"/var/lib/postgresql/{VERSION}/{self.name}"

    def database(self, dbname: str = "postgres") -> Database:
        return parse_url(self.url).with_database(dbname)

    def start(self) -> None:
        _run("pg_ctlcluster", VERSION, self.name, "start")
        _wait_ready(self.url)

    def stop(self) -> None:
        _run("pg_ctlcluster", VERSION, self.name, "stop", "-m", "fast")

    def execute(self, statement: str, dbname: str = "postgres") -> list[tuple[object, ...]]:
        with psycopg.connect(self.database(dbname).conninfo, autocommit=True) as conn:
            cursor = conn.execute(statement)
            return cursor.fetchall() if cursor.description else []

    def drop(self) -> None:
        subprocess.run(["pg_dropcluster", VERSION, self.name, "--stop"],
                       capture_output=True, check=False)


def _run(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stdout}{done.stderr}")


def _wait_ready(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(url, connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# A test's data: durability is not what is tested, speed on a shared box is. The benchmark
# passes the settings of the server it compares with instead.
FAST = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
        "shared_buffers": "32MB"}


def _create(max_connections: int, options: dict[str, str]) -> Cluster:
    cluster = Cluster(f"wes_t{uuid.uuid4().hex[:8]}", free_port())
    settings = {"listen_addresses": "'127.0.0.1'", "max_connections": str(max_connections),
                **options}
    try:
        _run("pg_createcluster", VERSION, cluster.name, "-p", str(cluster.port), "--",
             "--auth=trust")
        # Debian's postgresql.conf reads conf.d/ last: our settings win.
        conf = Path(f"/etc/postgresql/{VERSION}/{cluster.name}/conf.d/wes-test.conf")
        conf.write_text("".join(f"{key} = {value}\n" for key, value in settings.items()))
    except BaseException:
        cluster.drop()
        raise
    return cluster


@contextmanager
def primary(max_connections: int = 100, settings: dict[str, str] | None = None,
            **options: str) -> Iterator[Cluster]:
    """A running cluster of the run's own (trust auth, replication allowed locally), with
    `settings` (default `FAST`) and `options` in its configuration."""
    cluster = _create(max_connections, {**(FAST if settings is None else settings), **options})
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.drop()


@contextmanager
def standby(of: Cluster, settings: dict[str, str] | None = None) -> Iterator[Cluster]:
    """A hot standby of `of`, streaming from it (`pg_basebackup -R`), running."""
    cluster = _create(100, {**(FAST if settings is None else settings), "hot_standby": "on"})
    try:
        # pg_basebackup fills an empty directory (the parent is not the postgres user's).
        for entry in Path(cluster.data_dir).iterdir():
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        _run("runuser", "-u", "postgres", "--", "pg_basebackup", "-D", cluster.data_dir,
             "-h", "127.0.0.1", "-p", str(of.port), "-U", "postgres", "-R", "-X", "stream",
             "-c", "fast")
        cluster.start()
        yield cluster
    finally:
        cluster.drop()


def wait_replayed(primary_cluster: Cluster, standby_cluster: Cluster,
                  timeout: float = 30.0) -> None:
    """Blocks until the standby has replayed everything the primary had written so far."""
    [(lsn,)] = primary_cluster.execute("SELECT pg_current_wal_lsn()::text")
    deadline = time.monotonic() + timeout
    while True:
        [(done,)] = standby_cluster.execute(
            f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn")
        if done:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"standby did not replay up to {lsn}")
        time.sleep(0.05)
