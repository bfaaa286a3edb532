"""`wes worker`: one engine worker process, competing with any others."""

from __future__ import annotations

import signal
import threading

import typer

from application import logs
from application.settings import Settings
from bootstrap.container import worker_process


def worker(
    concurrency: int = typer.Option(4, min=1, max=256, help="Workflows driven at once."),
    simulator_url: str = typer.Option(
        None, envvar="WES_SIMULATOR_URL",
        help="Base URL of simulated services when WES_SERVICES is not set."),
    rebuild_queue: bool = typer.Option(
        False, "--rebuild-queue",
        help="Re-derive the engine's work queue from the event streams before starting."),
) -> None:
    """Run an engine worker until SIGTERM/SIGINT (then finish the current steps and exit)."""
    settings = Settings.from_env()
    logs.configure(settings.log_level, settings.log_json)
    process = worker_process(settings, concurrency=concurrency, simulator_url=simulator_url,
                             rebuild_queue=rebuild_queue)
    if process.queue_rebuilt is not None:
        typer.echo(f"work queue rebuilt from the events: {process.queue_rebuilt} workflows "
                   "have work", err=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    process.start()
    typer.echo(f"worker {process.engine.worker_id} running on {process.container.db.url} "
               f"(concurrency {concurrency}); Ctrl-C to stop", err=True)
    stop.wait()
    typer.echo("stopping: finishing steps in flight", err=True)
    process.stop()
