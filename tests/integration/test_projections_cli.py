"""`wes projections status | rebuild` on real PostgreSQL (in-process, typer's runner)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from application.database import Database
from application.workflows import Workflows
from cli.main import app as wes
from tests.support.projection_history import completed_orders


@pytest.fixture(autouse=True)
def _logging() -> Iterator[None]:
    """The CLI points logging at the runner's stderr, closed after each invocation: put
    logging back as it was, or later tests' log lines would go to a closed stream."""
    handlers, level = list(logging.root.handlers), logging.root.level
    yield
    logging.root.handlers[:] = handlers
    logging.root.setLevel(level)


@pytest.fixture
def cli_env(db: Database, monkeypatch: pytest.MonkeyPatch) -> Database:
    monkeypatch.setenv("DATABASE_URL", db.dsn)
    monkeypatch.setenv("WES_SCHEMA", db.schema)
    return db


def test_status_lists_every_projection(cli_env: Database, app: Workflows) -> None:
    completed_orders(app, 1)
    head = app.recorder.max_notification_id()
    result = CliRunner().invoke(wes, ["projections", "status", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["name"], r["position"], r["head"], r["lag_events"], r["state"]) for r in rows] \
        == [(name, 0, head, head, "stopped") for name in ("progress", "load", "audit", "relay")]
    table = CliRunner().invoke(wes, ["projections", "status"])
    assert table.exit_code == 0
    assert "lag seconds" in table.stdout and "stopped" in table.stdout


def test_rebuild_all_reports_each_projection(cli_env: Database, app: Workflows) -> None:
    completed_orders(app, 2)
    head = app.recorder.max_notification_id()
    result = CliRunner().invoke(wes, ["projections", "rebuild", "--all", "--batch-size", "5"])
    assert result.exit_code == 0, result.output
    for name in ("progress", "load", "audit"):
        assert f"{name}: generation 2 is live at position {head}" in result.stdout
    status = json.loads(CliRunner().invoke(wes, ["projections", "status", "--json"]).stdout)
    assert {(s["generation"], s["position"]) for s in status if s["name"] != "relay"} \
        == {(2, head)}


@pytest.mark.parametrize("args, reason", [
    (["rebuild"], "give a projection name or --all"),
    (["rebuild", "progress", "--all"], "give a projection name or --all"),
    (["rebuild", "nope"], "no projection 'nope'"),
    (["run", "--name", "nope"], "no projection 'nope'"),
])
def test_bad_arguments_exit_non_zero_with_one_line(cli_env: Database, args: list[str],
                                                   reason: str) -> None:
    result = CliRunner().invoke(wes, ["projections", *args])
    assert result.exit_code != 0
    assert result.stderr.startswith(f"wes: {reason}")
    assert result.stderr.count("\n") == 1


def test_an_unreachable_database_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nowhere")
    result = CliRunner().invoke(wes, ["projections", "status"])
    assert result.exit_code == 1
    assert result.stderr.startswith("wes: cannot connect to postgresql://postgres@127.0.0.1:1/")
    assert result.stderr.count("\n") == 1
