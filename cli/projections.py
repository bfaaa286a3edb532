"""`wes projections run | status | rebuild`."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict

import typer
from eventsourcing.persistence import PersistenceError
from psycopg import Error as PsycopgError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from application import logs
from application.errors import ApplicationError
from application.pool import name_process
from application.relay.tracking import relay_status
from application.settings import Settings
from bootstrap.container import projection_views, projector_runner
from cli.output import fail, one_line
from projections.base import UnhandledEvent
from projections.read_models import PROJECTION_NAMES, ProjectionViews, UnknownProjection
from projections.rebuild import DEFAULT_BATCH_SIZE, RebuildInProgress, rebuild

projections_app = typer.Typer(help="Run the projectors, show their position and lag, rebuild.",
                              no_args_is_help=True)

# Errors worth one line on stderr rather than a traceback.
_EXPECTED = (ApplicationError, UnknownProjection, RebuildInProgress, UnhandledEvent,
             PersistenceError, PsycopgError, TimeoutError)


@contextmanager
def _read_models(wait: bool = False) -> Iterator[ProjectionViews]:
    """The configured database's read models (exits non-zero with a reason on errors;
    with `wait`, a long-running process, it waits for a connection instead)."""
    try:
        settings = Settings.from_env()
        logs.configure(settings.log_level, settings.log_json)
        models = projection_views(settings, deadline_seconds=None if wait else 0.0)
    except _EXPECTED as e:
        fail(_one_line(e))
        raise  # unreachable: fail() exits
    try:
        yield models
    except _EXPECTED as e:
        fail(_one_line(e))
    finally:
        models.close()


def _one_line(error: BaseException) -> str:
    return one_line(str(error)) or type(error).__name__


@projections_app.command()
def run(
    name: list[str] = typer.Option(  # noqa: B008 - typer's way to declare an option
        None, "--name", "-n", help="Run only these projections (repeatable); default all."),
) -> None:
    """Run the projectors until SIGTERM/SIGINT: one process is active per projection,
    others wait on standby and take over if it dies."""
    names = name or list(PROJECTION_NAMES)
    unknown = [n for n in names if n not in PROJECTION_NAMES]
    if unknown:
        fail(str(UnknownProjection(unknown[0])))
    name_process("projector")
    with _read_models(wait=True) as models:
        runner = projector_runner(models, names)
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        runner.start()
        typer.echo(f"wes: projecting {', '.join(names)}; Ctrl-C to stop", err=True)
        watcher = threading.Thread(target=lambda: (stop.wait(), runner.stop()), daemon=True)
        watcher.start()
        try:
            runner.run_forever()
        finally:
            stop.set()
            watcher.join()


@projections_app.command()
def status(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Position, head of the event store, lag and state of every projection and of the
    event relay."""
    with _read_models() as models:
        statuses = [*models.status(), relay_status(models.app)]
    if as_json:
        typer.echo(json.dumps([asdict(s) for s in statuses], indent=2))
        return
    table = Table("name", "position", "head", "lag events", "lag seconds", "state",
                  "generation", title="projections")
    for s in statuses:
        lag_seconds = "?" if s.lag_seconds is None else f"{s.lag_seconds:.1f}"
        state = s.state
        if s.rebuilding_generation is not None:
            state += f" (g{s.rebuilding_generation} at {s.rebuilding_position or 0})"
        if getattr(s, "rebuild_needed", None):
            state += f"; rebuild needed: {s.rebuild_needed}"
        table.add_row(s.name, str(s.position), str(s.head), str(s.lag_events), lag_seconds,
                      state, "-" if s.generation is None else str(s.generation))
    Console().print(table)


class _EventsPerSecond(ProgressColumn):
    """Events per second over the whole rebuild so far."""

    def __init__(self, started: float) -> None:
        super().__init__()
        self.started = started

    def render(self, task: Task) -> Text:
        elapsed = time.monotonic() - self.started
        rate = task.fields.get("events", 0) / elapsed if elapsed > 0 else 0.0
        return Text(f"{rate:,.0f} events/s", style="cyan")


@projections_app.command("rebuild")
def rebuild_command(
    name: str = typer.Argument(None, help="The projection to rebuild: "
                                          + ", ".join(PROJECTION_NAMES) + "."),
    all_: bool = typer.Option(False, "--all", help="Rebuild every projection (one pass)."),
    batch_size: int = typer.Option(DEFAULT_BATCH_SIZE, min=1, max=100_000,
                                   help="Events read and written per transaction."),
    restart: bool = typer.Option(False, "--restart",
                                 help="Discard an interrupted rebuild instead of resuming it."),
) -> None:
    """Build fresh tables from the whole history while the live ones keep serving, then
    switch to them atomically (blue/green)."""
    if all_ == (name is not None):
        fail("give a projection name or --all")
    names = list(PROJECTION_NAMES) if all_ else [name]
    if name is not None and name not in PROJECTION_NAMES:
        fail(str(UnknownProjection(name)))
    with _read_models() as models:
        started = time.monotonic()
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   _EventsPerSecond(started), TimeElapsedColumn())
        with Progress(*columns, console=Console(stderr=True)) as bar:
            task = bar.add_task(f"rebuilding {', '.join(names)}", total=None, events=0)

            def show(events: int, position: int, head: int) -> None:
                bar.update(task, completed=position, total=head, events=events)

            reports = rebuild(models, names, batch_size=batch_size, restart=restart,
                              on_progress=show)
        for report in reports:
            resumed = (f", resumed from {report.resumed_from}"
                       if report.resumed_from is not None else "")
            typer.echo(f"{report.name}: generation {report.generation} is live at position "
                       f"{report.position} ({report.events} events in {report.seconds:.1f} s, "
                       f"{report.events_per_second:,.0f} events/s{resumed})")
