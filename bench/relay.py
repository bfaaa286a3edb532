"""Figure `relay`: events/s the relay publishes to JetStream, against the engine's append
rate in the same run, and the relay's lag under the engine's load.

A nats-server of the benchmark's own (free port, temporary store) is started when the
`nats-server` binary is there (otherwise the figure is not available). First the engine
runs `sagas` order-fulfillment sagas (one worker, four threads, in-process no-op handlers
as local activities, as in the `engine` figure) while `wes relay` follows in a process of
its own, as deployed: the append rate is the events the engine appended per second. The
lag is measured as the `lag` figure measures the projections': meanwhile a probe pauses or
resumes a workflow of its own every 20 ms and times each command from its commit until a
JetStream consumer in this process receives its event. Then the stream is dropped and a relay in this process
publishes the whole history again from position 0: the relay's own rate (catching up,
with nothing else running).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import nats

from application.database import Database
from application.relay.tracking import RelayTracking
from application.settings import RelaySettings
from application.workflows import Workflows
from bench import pg
from bench.engine import SERVICES, StepClock
from bench.report import Figure, percentile, ratio
from bootstrap.container import engine_over, jetstream_relay, open_workflows
from domain.enums import WorkflowStatus

UNIT = "events/s"
TARGET = "ratio >= 1 (keeps up with the engine), lag p99 <= 250 ms"
LAG_TARGET_MS = 250.0


def measure(db: Database, *, sagas: int, concurrency: int = 4) -> Figure:
    binary = shutil.which("nats-server")
    if binary is None:
        return Figure.unavailable("relay", UNIT, TARGET, "nats-server is not installed")
    with _Broker(binary) as broker:
        settings = RelaySettings(nats_url=broker.url, stream="BENCH")
        app = open_workflows(db, env={"POSTGRES_POOL_SIZE": str(concurrency + 8)})
        try:
            appended, append_seconds, lags, idle_lags = _engine_run(app, db, broker, sagas,
                                                                    concurrency)
        finally:
            app.close()
        asyncio.run(_delete_stream(broker.url, settings.stream))
        # A fresh application, as a relay process has: the engine's cached workflows
        # would make every garbage collection of the relay's many small objects slower.
        del app
        gc.collect()
        app = open_workflows(db, builtin_definitions=False)
        try:
            head = app.recorder.max_notification_id() or 0
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
                 "lag_samples": len(lags),
                 "idle_lag_p50_ms": round(percentile(idle_lags, 50) * 1000, 2)
                 if idle_lags else None,
                 "idle_lag_p99_ms": round(percentile(idle_lags, 99) * 1000, 2)
                 if idle_lags else None,
                 "relay": "wes relay in its own process",
                 "lag": "probe command commit -> received by a JetStream consumer"})


def _engine_run(app: Workflows, db: Database, broker: _Broker, sagas: int,
                concurrency: int) -> tuple[int, float, list[float], list[float]]:
    """Runs the sagas with `wes relay` following and the probe timing its lag; (events
    the engine appended, seconds, lags, lags with the engine idle)."""
    log = tempfile.TemporaryFile()  # noqa: SIM115 - read if the relay fails
    relay = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "relay"],
        env={**os.environ, "DATABASE_URL": pg.database_url(db), "WES_SCHEMA": db.schema,
             "WES_NATS_URL": broker.url, "WES_NATS_STREAM": "BENCH"},
        stdout=subprocess.DEVNULL, stderr=log)
    relay.log = log  # type: ignore[attr-defined]
    tracking = RelayTracking(app.recorder.datastore)  # type: ignore[attr-defined]
    engine = engine_over(app, {service: StepClock() for service in SERVICES}, local=True)
    try:
        _wait(lambda: (tracking.position() or 0) >= (app.recorder.max_notification_id() or 0),
              60, relay)
        ids = [app.start_workflow(definition="order-fulfillment",
                                  input={"orderId": f"order-{i}",
                                         "items": [{"sku": "A", "quantity": 1}]}).workflow_id
               for i in range(sagas)]
        idle = _LagProbe(app, broker.url, "BENCH")  # the same probe with the engine idle
        idle.start()
        time.sleep(1.0)
        idle_lags = idle.stop()
        probe = _LagProbe(app, broker.url, "BENCH")
        before = app.recorder.max_notification_id() or 0
        worker = engine.worker(concurrency=concurrency, poll_seconds=0.05)
        probe.start()
        began = time.perf_counter()
        worker.start()
        while app.store.work_queue.size() > 0:
            time.sleep(0.02)
        elapsed = time.perf_counter() - began
        worker.stop()
        lags = probe.stop()
        completed = sum(app.get_workflow(i).status == WorkflowStatus.COMPLETED for i in ids)
        if completed != len(ids):
            raise RuntimeError(f"only {completed} of {len(ids)} sagas completed")
        head = app.recorder.max_notification_id() or 0
        _wait(lambda: (tracking.position() or 0) >= head, 120, relay)
    finally:
        relay.terminate()
        relay.wait(30)
        log.close()
        engine.close()
    # The engine's events only: the probe's commands are not the engine's appends.
    return head - before - probe.commands, elapsed, lags, idle_lags


def _catch_up(app: Workflows, settings: RelaySettings, head: int) -> tuple[int, float]:
    """A relay in this process publishes the whole history; (events, seconds)."""
    relay = jetstream_relay(app, settings)
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


class _LagProbe:
    """Commands a probe workflow every `interval` seconds and times each from its commit
    until a JetStream consumer (new messages only) receives its event."""

    def __init__(self, app: Workflows, url: str, stream: str, interval: float = 0.02) -> None:
        self.app, self.url, self.stream, self.interval = app, url, stream, interval
        self.workflow_id = app.start_workflow(definition="order-fulfillment",
                                              driven_by="caller",
                                              input={"orderId": "relay-probe"}).workflow_id
        self._sent: dict[int, float] = {}
        self.commands = 0
        self._received: dict[int, float] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._subscribed = threading.Event()
        self._threads = [threading.Thread(target=self._command, daemon=True),
                         threading.Thread(target=lambda: asyncio.run(self._consume()),
                                          daemon=True)]

    def start(self) -> None:
        self._threads[1].start()
        if not self._subscribed.wait(20):
            raise RuntimeError("the probe's consumer did not subscribe")
        self._threads[0].start()

    def stop(self, timeout: float = 20.0) -> list[float]:
        """Stops commanding, waits (bounded) for the events in flight; returns the lags."""
        self._stopping.set()
        self._threads[0].join(30)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if set(self._sent) <= set(self._received):
                    break
            time.sleep(0.01)
        self._done = True
        self._threads[1].join(30)
        with self._lock:
            self.commands = len(self._sent)
            return [self._received[p] - at for p, at in self._sent.items()
                    if p in self._received]

    def _command(self) -> None:
        paused = False
        while not self._stopping.wait(self.interval):
            if paused:
                position = self.app.resume(self.workflow_id, actor="bench")
            else:
                position = self.app.pause(self.workflow_id, reason="probe", actor="bench")
            at = time.perf_counter()
            paused = not paused
            with self._lock:
                self._sent[position or 0] = at

    async def _consume(self) -> None:
        from nats.js.api import DeliverPolicy

        nc = await nats.connect(self.url)
        probe = str(self.workflow_id)
        self._done = False
        try:
            sub = await nc.jetstream().subscribe(
                f"{RelaySettings().subject_prefix}.workflow.>", stream=self.stream,
                ordered_consumer=True, deliver_policy=DeliverPolicy.NEW)
            self._subscribed.set()
            while not self._done:
                try:
                    msg = await sub.next_msg(timeout=0.2)
                except nats.errors.TimeoutError:
                    continue
                now = time.perf_counter()
                event = json.loads(msg.data)
                if event["subject"] == probe:
                    with self._lock:
                        self._received[event["position"]] = now
        finally:
            await nc.close()


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
            log = process.log  # type: ignore[attr-defined]
            log.seek(0)
            raise RuntimeError(f"wes relay exited with {process.returncode}: "
                               + log.read().decode(errors="replace")[-1000:])
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
