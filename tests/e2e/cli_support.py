"""Real `wes` processes for the CLI tests: a `wes serve` for a whole test module, and `wes`
commands run to completion with their stdout and stderr."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from application import database
from application.database import Database
from tests.support.processes import ROOT, Served, serving_process

__all__ = ["KEYS", "Served", "base_env", "module_schema", "one_line_failure", "serving", "wes"]

KEYS = "reader-key:reader,operator-key:operator,admin-key:admin"


def module_schema(server: Database) -> Database:
    """A fresh schema for a test module (the `db` fixture is per test)."""
    db = server.with_schema(f"m_{uuid.uuid4().hex[:12]}")
    database.ensure_database(db)
    return db


def base_env(db: Database | None, **extra: str) -> dict[str, str]:
    """The environment of a `wes` process: the test's database (none: embedded), 80
    columns, and nothing of the developer's own WES_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WES_")}
    env.pop("DATABASE_URL", None)
    if db is not None:
        env.update({"DATABASE_URL": db.dsn, "WES_SCHEMA": db.schema})
    env.update({"COLUMNS": "80", "WES_LOG_LEVEL": "WARNING"})
    env.update(extra)
    return env


@contextmanager
def serving(db: Database, *args: str, **extra: str) -> Iterator[Served]:
    """Runs `wes serve` (API, projections, worker, simulated services) until the block ends."""
    with serving_process(Served, base_env(db, **extra), *args) as running:
        yield running


def wes(*args: str, env: dict[str, str], timeout: float = 120.0
        ) -> subprocess.CompletedProcess[str]:
    """Runs `wes <args>` to completion."""
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def one_line_failure(result: subprocess.CompletedProcess[str]) -> str:
    """Asserts the command failed with exactly one line on stderr, and returns it."""
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("wes: "), lines
    return lines[0]
