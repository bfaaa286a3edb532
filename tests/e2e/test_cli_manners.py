"""CLI manners, with real processes: `wes demo` beside a running `wes serve` (whose worker
must not take the demo's orders), and failures that are one line on stderr."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from application.database import Database
from cli.background import free_port
from cli.demo import SCHEMA_PREFIX
from tests.e2e.cli_support import Served, base_env, module_schema, one_line_failure, serving, wes


@pytest.fixture(scope="module")
def db(server: Database) -> Database:
    return module_schema(server)


@pytest.fixture(scope="module")
def served(db: Database) -> Iterator[Served]:
    with serving(db) as running:
        yield running


def schemas(db: Database) -> set[str]:
    with psycopg.connect(db.conninfo) as conn:
        rows = conn.execute("SELECT nspname FROM pg_namespace").fetchall()
    return {r[0] for r in rows}


class TestDemoBesideServe:
    def test_passes_while_serve_and_its_worker_run_on_the_same_database(self, db, served):
        before = {s for s in schemas(db) if s.startswith(SCHEMA_PREFIX)}
        result = wes("demo", env=base_env(db), timeout=180)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "COMPLETED after a retry" in result.stdout
        # The serve process saw none of it: its read models and its services are untouched.
        with httpx.Client(base_url=served.url, timeout=10) as api:
            head = api.get("/v1/events", params={"limit": 1}).json()["head"]
            assert api.get("/v1/workflows", params={"min_position": head}).json()[
                "items"] == []
            assert api.get("/sim/calls").json()["items"] == []
        # Its throw-away schema is gone.
        assert {s for s in schemas(db) if s.startswith(SCHEMA_PREFIX)} == before
        assert all(len(line) <= 80 for line in result.stdout.splitlines())

    def test_keep_leaves_a_schema_that_replay_reads(self, db, served):
        result = wes("demo", "--keep", env=base_env(db), timeout=180)
        assert result.returncode == 0, result.stdout + result.stderr
        kept = next(w for w in result.stdout.split() if w.startswith("`WES_SCHEMA="))
        schema = kept.removeprefix("`WES_SCHEMA=")
        workflow_id = result.stdout.split("(workflow ")[1].split(")")[0]
        try:
            replay = wes("replay", workflow_id, env=base_env(db, WES_SCHEMA=schema))
            assert replay.returncode == 0, replay.stderr
            assert "state as of version" in replay.stdout
        finally:
            with psycopg.connect(db.conninfo, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


class TestOneLineFailures:
    def test_a_second_serve_on_a_busy_port(self, db, served):
        started = time.monotonic()
        result = wes("serve", "--port", str(served.port), env=base_env(db), timeout=60)
        line = one_line_failure(result)
        assert "port is in use" in line and str(served.port) in line
        assert time.monotonic() - started < 60
        assert served.process.poll() is None  # the first one is unharmed

    def test_services_on_a_busy_port(self, served):
        line = one_line_failure(wes("services", "--port", str(served.port),
                                    env=base_env(None), timeout=60))
        assert "port is in use" in line

    @pytest.mark.parametrize("command", [["worker"], ["serve", "--port", "0"]])
    def test_no_database_connection_is_a_line_per_try_then_one_line_failure(self, command):
        # A starting process waits for its database (WES_DB_START_WAIT_SECONDS), saying so
        # in one line per try, never a traceback; past the wait it ends with one line.
        url = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
        if command[0] == "serve":
            command = ["serve", "--port", str(free_port())]
        result = wes(*command, env={**base_env(None), "DATABASE_URL": url,
                                    "WES_DB_START_WAIT_SECONDS": "1"}, timeout=60)
        assert result.returncode != 0, result.stdout
        lines = result.stderr.strip().splitlines()
        assert "Traceback" not in result.stderr, result.stderr
        waits, last = lines[:-1], lines[-1]
        assert waits and all("no database connection" in w and "retrying in" in w
                             for w in waits), lines
        assert last.startswith("wes: ") and "cannot connect" in last, lines

    @pytest.mark.parametrize(("args", "expected"), [
        (["no-such-command"], "No such command"),
        (["workflows", "start"], "Missing argument"),
        (["workflows", "list", "--limit", "0"], "--limit"),
        (["replay", "not-a-uuid"], "not a workflow id"),
    ])
    def test_usage_errors(self, args, expected):
        assert expected in one_line_failure(wes(*args, env=base_env(None)))
