"""`wes db status | start | stop`: the embedded PostgreSQL that commands start when no
DATABASE_URL is set. It keeps running after the command that started it, so the next
command (or a second worker) finds its data at once; `wes db stop` stops it."""

from __future__ import annotations

import os

import typer

from application import database
from cli.client import AsJson, print_json

db_app = typer.Typer(help="The embedded PostgreSQL (used when DATABASE_URL is not set).",
                     no_args_is_help=True)


def _note_configured() -> None:
    if os.environ.get("DATABASE_URL"):
        typer.echo("wes: note: DATABASE_URL is set, so commands use that server, not the "
                   "embedded one", err=True)


def _report(as_json: bool) -> None:
    status = database.embedded_status()
    if as_json:
        print_json(status.to_dict())
    elif status.running:
        typer.echo(f"running (pid {status.pid}): {status.url}, data in {status.data_dir}")
    elif status.initialized:
        typer.echo(f"stopped: data in {status.data_dir} (any command without DATABASE_URL "
                   "starts it)")
    else:
        typer.echo(f"not created yet: {status.data_dir}")


@db_app.command()
def status(as_json: AsJson = False) -> None:
    """Whether the embedded server runs, its pid, URL and data directory (starts nothing)."""
    _note_configured()
    _report(as_json)


@db_app.command()
def start(as_json: AsJson = False) -> None:
    """Start the embedded server (or find it running) and create the `wes` database."""
    _note_configured()
    database.ensure_database(database.start_embedded())
    _report(as_json)


@db_app.command()
def stop(as_json: AsJson = False) -> None:
    """Stop the embedded server (fast shutdown: open sessions are closed, data is kept)."""
    _note_configured()
    stopped = database.stop_embedded()
    if as_json:
        print_json({**database.embedded_status().to_dict(), "stopped": stopped})
    else:
        typer.echo("stopped" if stopped else "not running")
