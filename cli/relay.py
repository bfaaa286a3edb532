"""`wes relay`: every domain event, in global order, to NATS JetStream, exactly once."""

from __future__ import annotations

import signal
import threading

import typer

from application import logs
from application.errors import ApplicationError
from application.settings import Settings
from bootstrap.container import relay_process
from cli.output import fail


def relay() -> None:
    """Relay the event store to JetStream until SIGTERM/SIGINT (WES_NATS_URL,
    WES_NATS_STREAM, ...); several may run: one is active, the others stand by."""
    try:
        settings = Settings.from_env()
        logs.configure(settings.log_level, settings.log_json)
        process = relay_process(settings)
    except ApplicationError as e:
        fail(str(e))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    typer.echo(f"wes: relaying {process.db.url} to {process.sink_description}; Ctrl-C to stop",
               err=True)
    try:
        process.relay.run(stop)
    except Exception as e:  # an event it cannot read: its position is in the status
        fail(" ".join(str(e).split()))
    finally:
        process.close()
