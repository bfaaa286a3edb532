"""Figure `relay`: events/s the relay publishes to JetStream, against the engine's append
rate in the same run, and the relay's lag under the engine's load.

A nats-server of the benchmark's own (free port, temporary store) is started when the
`nats-server` binary is there (otherwise the figure is not available). First the engine
runs `sagas` order-fulfillment sagas (one worker, four threads, in-process no-op handlers
as local activities, as in the `engine` figure) while `wes relay` follows in a process of
its own, as deployed: the append rate is the events the engine appended per second, and
the lag of each event is from its timestamp (taken just before its commit) to the time
JetStream stored its message. Then the stream is dropped and a relay in this process
publishes the whole history again from position 0: the relay's own rate (catching up,
with nothing else running).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import nats

from application.database import Database
from application.engine.dispatch import Dispatcher
from application.engine.handlers import PythonHandler
from application.engine.worker import Worker
from application.relay.envelope import Naming
from application.relay.jetstream import NatsJetStreamSink
from application.relay.relay import Relay
from application.relay.tracking import RelayTracking
from application.settings import RelaySettings
from application.workflows import Workflows
from bench import pg
from bench.engine import SERVICES, StepClock
from bench.report import Figure, percentile, ratio

UNIT = "events/s"
TARGET = "ratio >= 1 (keeps up with the engine), lag p99 <= 250 ms"
LAG_TARGET_MS = 250.0


def measure(db: Database, *, sagas: int, concurrency: int = 4) -> Figure:
    binary = shutil.which("nats-server") or next(
        (p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server") if Path(p).exists()), None)
    if binary is None:
        return Figure.unavailable("relay", UNIT, TARGET, "nats-server is not installed")
    with _Broker(binary) as broker:
        settings = RelaySettings(nats_url=broker.url, stream="BENCH")
        app = Workflows(env={**db.env(), "POSTGRES_POOL_SIZE": str(concurrency + 8)})
        try:
            app.ensure_builtin_definitions()
            appended, append_seconds = _engine_run(app, db, broker, sagas, concurrency)
            head = app.recorder.max_notification_id() or 0
            lags = _lags(broker.url, settings.stream)
            asyncio.run(_delete_stream(broker.url, settings.stream))
            relayed, relay_seconds = _catch_up(app, settings, head)
        finally:
            app.close()
    append_rate = appended / append_seconds
    rate = relayed / relay_seconds
    p99 = percentile(lags, 99) * 1000 if lags else None
    return Figure(
        "relay", rate, UNIT, append_rate, ratio(rate, append_rate), TARGET,
        baseline_name="events/s the engine appended in the same run (sagas, one worker)",
        met=rate >= append_rate and p99 is not None and p99 <= LAG_TARGET_MS,
        details={"events": relayed, "catch_up_seconds": round(relay_seconds, 2),
                 "engine_events": appended, "engine_seconds": round(append_seconds, 2),
                 "lag_p50_ms": round(percentile(lags, 50) * 1000, 2) if lags else None,
                 "lag_p99_ms": p99 and round(p99, 2),
                 "lag_max_ms": round(max(lags) * 1000, 2) if lags else None,
                 "lag_samples": len(lags), "relay": "wes relay in its own process"})


def _engine_run(app: Workflows, db: Database, broker: _Broker, sagas: int,
                concurrency: int) -> tuple[int, float]:
    """Runs the sagas with `wes relay` following; (events appended, seconds)."""
    relay = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "relay"],
        env={**os.environ, "DATABASE_URL": pg.database_url(db), "WES_SCHEMA": db.schema,
             "WES_NATS_URL": broker.url, "WES_NATS_STREAM": "BENCH"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tracking = RelayTracking(app.recorder.datastore)  # type: ignore[attr-defined]
    python = PythonHandler()
    for service in SERVICES:
        python.register(service, StepClock(), local=True)
    dispatcher = Dispatcher(python)
    try:
        _wait(lambda: (tracking.position() or 0) >= (app.recorder.max_notification_id() or 0),
              60, relay)
        ids = [app.start_workflow(definition="order-fulfillment",
                                  input={"orderId": f"order-{i}"}).workflow_id
               for i in range(sagas)]
        before = app.recorder.max_notification_id() or 0
        worker = Worker(app, dispatcher, concurrency=concurrency, poll_seconds=0.05)
        began = time.perf_counter()
        worker.start()
        while app.store.work_queue_size() > 0:
            time.sleep(0.02)
        elapsed = time.perf_counter() - began
        worker.stop()
        del ids
        head = app.recorder.max_notification_id() or 0
        _wait(lambda: (tracking.position() or 0) >= head, 120, relay)
    finally:
        relay.terminate()
        relay.wait(30)
        dispatcher.close()
    return head - before, elapsed


def _catch_up(app: Workflows, settings: RelaySettings, head: int) -> tuple[int, float]:
    """A relay in this process publishes the whole history; (events, seconds)."""
    relay = Relay(app, NatsJetStreamSink(settings), Naming(), batch_size=settings.batch_size)
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    began = time.perf_counter()
    thread.start()
    while (relay.position or 0) < head:
        if not thread.is_alive():
            raise RuntimeError(f"the relay stopped at {relay.position}: {relay.state}")
        time.sleep(0.005)
    elapsed = time.perf_counter() - began
    stop.set()
    thread.join(30)
    return head, elapsed


def _lags(url: str, stream: str) -> list[float]:
    """Seconds from each event's timestamp to its message's storage in the stream."""
    async def read() -> list[float]:
        nc = await nats.connect(url)
        lags = []
        try:
            js = nc.jetstream()
            sub = await js.subscribe(f"{RelaySettings().subject_prefix}.>", stream=stream,
                                     ordered_consumer=True)
            total = (await js.stream_info(stream)).state.messages
            while len(lags) < total:
                msg = await sub.next_msg(timeout=10)
                event_time = datetime.fromisoformat(json.loads(msg.data)["time"])
                stored = msg.metadata.timestamp
                lags.append(max((stored - event_time).total_seconds(), 0.0))
        finally:
            await nc.close()
        return lags
    return asyncio.run(read())


async def _delete_stream(url: str, stream: str) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().delete_stream(stream)
    finally:
        await nc.close()


def _wait(done: Any, timeout: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if process.poll() is not None:
            raise RuntimeError(f"wes relay exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"wes relay did not catch up in {timeout:.0f} s")
        time.sleep(0.02)


class _Broker:
    """A nats-server with JetStream on a free port and a temporary store."""

    def __init__(self, binary: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.store = tempfile.mkdtemp(prefix="wes-bench-nats-")
        self.process = subprocess.Popen(
            [binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", self.store],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.close()
                    raise RuntimeError("nats-server did not start") from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.store, ignore_errors=True)

    def __enter__(self) -> _Broker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
