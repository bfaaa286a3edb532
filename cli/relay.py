"""`wes relay`: every domain event, in global order, to NATS JetStream, exactly once."""

from __future__ import annotations

import signal
import threading

import typer

from application import logs
from application.errors import ApplicationError
from application.pool import name_process
from application.relay.envelope import Naming
from application.relay.jetstream import NatsJetStreamSink
from application.relay.relay import Relay
from application.settings import RelaySettings, Settings


def relay() -> None:
    """Relay the event store to JetStream until SIGTERM/SIGINT (WES_NATS_URL,
    WES_NATS_STREAM, ...); several may run: one is active, the others stand by."""
    from application.database import resolve
    from application.workflows import Workflows
    from cli.main import fail

    name_process("relay")  # pg_stat_activity tells its connections apart
    settings = Settings.from_env()
    logs.configure(settings.log_level, settings.log_json)
    try:
        relay_settings = RelaySettings.from_env()
        db = resolve(settings.database_url, settings.schema)
    except ApplicationError as e:
        fail(str(e))
        return
    app = Workflows(env={**db.env(), **settings.extra_env})
    sink = NatsJetStreamSink(relay_settings)
    naming = Naming(relay_settings.subject_prefix, relay_settings.type_prefix,
                    relay_settings.source)
    runner = Relay(app, sink, naming, batch_size=relay_settings.batch_size,
                   max_backoff=relay_settings.max_backoff_seconds)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    typer.echo(f"wes: relaying {db.url} to {sink.describe()}; Ctrl-C to stop", err=True)
    try:
        runner.run(stop)
    except Exception as e:  # an event it cannot read: its position is in the status
        fail(" ".join(str(e).split()))
    finally:
        app.close()
