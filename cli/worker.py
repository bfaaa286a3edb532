"""`wes worker`: one engine worker process, competing with any others."""

from __future__ import annotations

import signal
import threading

import typer

from application import logs
from application.container import Container
from application.settings import Settings
from projections.read_models import ReadModels
from projections.waveless_signals import waveless_signals


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
    # A database that cannot be reached is an ApplicationError: `wes` prints it as one line.
    container = Container.build(settings, simulator_url=simulator_url, kind="worker")
    if rebuild_queue:
        due = container.workflows.rebuild_work_queue()
        typer.echo(f"work queue rebuilt from the events: {due} workflows have work", err=True)
    engine = container.worker(concurrency=concurrency)
    read_models = ReadModels(container.read_models_env(container.reads_only_budget()),
                             container.workflows)
    releaser = container.releaser(waveless_signals(read_models))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    engine.start()
    releaser.start()
    typer.echo(f"worker {engine.worker_id} running on {container.db.url} "
               f"(concurrency {concurrency}); Ctrl-C to stop", err=True)
    stop.wait()
    typer.echo("stopping: finishing steps in flight", err=True)
    container.close()
    read_models.close()
