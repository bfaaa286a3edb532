"""`wes replay`: a workflow's history and its state as of a version or a time."""

from __future__ import annotations

import json
from datetime import datetime
from uuid import UUID

import typer
from rich.console import Console
from rich.table import Table

from application import database
from application.errors import ApplicationError
from application.settings import Settings
from application.workflows import Workflows
from domain.exceptions import DomainError


def replay(
    workflow_id: str = typer.Argument(..., help="The workflow's id."),
    version: int = typer.Option(None, help="State after this many events."),
    at: str = typer.Option(None, help="State as of this ISO time."),
) -> None:
    """Print the history, then the state as of --version / --at (default: now)."""
    from cli.main import fail

    try:
        wf_id = UUID(workflow_id)
    except ValueError:
        fail(f"not a workflow id: {workflow_id!r}")
        return
    when = None
    if at is not None:
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            fail(f"--at is not an ISO time: {at!r}")
    settings = Settings.from_env()
    app = Workflows(env=database.resolve(settings.database_url, settings.schema).env())
    try:
        history = app.history(wf_id)
        state = app.state_at(wf_id, version=version, at=when)
    except (ApplicationError, DomainError) as e:
        fail(str(e))
        return
    finally:
        app.close()
    console = Console()
    table = Table(title=f"history of {wf_id}")
    for column in ("version", "position", "time", "event", "details"):
        table.add_column(column)
    for event in history:
        marked = "" if event.version <= state.version else " (after)"
        details = {k: v for k, v in event.data.items() if k != "correlation_id"}
        table.add_row(str(event.version), str(event.position), event.timestamp.isoformat(),
                      event.event_type + marked, json.dumps(details, default=str)[:120])
    console.print(table)
    console.print(f"state as of version {state.version}:")
    console.print_json(json.dumps(state.snapshot_state(), default=str))
