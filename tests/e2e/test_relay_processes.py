"""`wes relay` as a real process: killed with SIGKILL mid-run, and a broker that stops and
starts under a running engine (`wes worker` processes calling the simulated services over
HTTP). Whatever happens, the stream ends up holding every event once, in global order."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
import uuid
from collections.abc import Iterator
from uuid import UUID

import nats
import pytest
from nats.js.api import RetentionPolicy, StreamConfig

from api.feed import EventReader
from application.database import Database
from application.relay.envelope import event_id
from application.relay.tracking import RelayTracking
from application.workflows import Workflows
from simulator.client import SimulatorClient
from tests.support.nats_server import NatsServer, read_stream
from tests.support.processes import kill9, output, spawn_wes, spawn_worker, stop
from tests.support.projection_history import completed_orders
from tests.support.waiting import wait_for, wait_for_status

ITEMS = [{"sku": "SKU-12345", "quantity": 2}]
NO_SERVICES = "http://127.0.0.1:9"  # the relay calls no service


@pytest.fixture
def broker() -> Iterator[NatsServer]:
    server = NatsServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def stream() -> str:
    return f"E2E{uuid.uuid4().hex[:8]}".upper()


def spawn_relay(db: Database, broker: NatsServer, stream: str, **extra: str):
    settings = {"WES_NATS_URL": broker.url, "WES_NATS_STREAM": stream,
                "WES_RELAY_MAX_BACKOFF_SECONDS": "0.5", "WES_LOG_JSON": "0", **extra}
    return spawn_wes(db, NO_SERVICES, "relay", **settings)


def relayed(app: Workflows) -> int:
    """The position the relay's tracking row says the broker holds."""
    return RelayTracking(app.recorder.datastore).position() or 0


def assert_stream_is_the_feed(app: Workflows, broker: NatsServer, stream: str) -> None:
    feed = EventReader(app).read(0, 1_000_000)
    bodies = [json.loads(m.data) for m in read_stream(broker.url, stream)]
    positions = [b["position"] for b in bodies]
    assert len(positions) == len(set(positions)), "a message is doubled"
    assert positions == [e.position for e in feed], "a message is lost or out of order"
    assert [b["id"] for b in bodies] == [event_id(e.aggregate_id, e.version) for e in feed]
    assert [b["data"] for b in bodies] == [json.loads(json.dumps(e.data)) for e in feed]


def kill_loop(app: Workflows, db: Database, broker: NatsServer, stream: str,
              kills: int, **extra: str) -> None:
    """Writes completed orders steadily while `wes relay` is killed `kills` times."""
    killing = threading.Event()

    def write() -> None:
        n = 0
        while not killing.is_set():
            completed_orders(app, 1, prefix=f"K{n}")
            n += 1
            time.sleep(0.01)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    rng = random.Random(13)
    try:
        for _ in range(kills):
            relay = spawn_relay(db, broker, stream, WES_RELAY_BATCH_SIZE="20", **extra)
            before = relayed(app)
            # Let it publish some (so it dies mid-stream, not before it started), then
            # kill it at a random moment: before, during or after a batch's acks.
            wait_for(lambda b=before, r=relay: relayed(app) > b or r.poll() is not None, 60,
                     message="the relay to publish")
            assert relay.poll() is None, output(relay)
            time.sleep(rng.uniform(0.0, 0.4))
            kill9(relay)
    finally:
        killing.set()
        writer.join(60)
    relay = spawn_relay(db, broker, stream, **extra)
    try:
        head = app.recorder.max_notification_id() or 0
        wait_for(lambda: relayed(app) >= head, 60, message=f"the relay to reach {head}")
    finally:
        assert stop(relay) == 0, output(relay)


class WorkQueueConsumer:
    """A durable consumer acking every message as it comes, on a thread of its own: under
    work-queue retention each ack removes the message, so the stream rarely has a last
    message to tell a restarted relay where it stopped."""

    def __init__(self, url: str, stream: str) -> None:
        self.url, self.stream = url, stream
        self.positions: list[int] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        nc = await nats.connect(self.url)
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name=self.stream,
                                         subjects=["orchestration.workflow.events.>"],
                                         retention=RetentionPolicy.WORK_QUEUE))
        sub = await js.pull_subscribe("orchestration.workflow.events.>", durable="wms",
                                      stream=self.stream)
        self.ready.set()
        while True:
            try:
                batch = await sub.fetch(50, timeout=0.5)
            except TimeoutError:
                if self.done.is_set():
                    break
                continue
            for msg in batch:
                self.positions.append(json.loads(msg.data)["position"])
                await msg.ack_sync()
        await nc.close()

    def start(self) -> None:
        self.ready = threading.Event()
        self.thread.start()
        assert self.ready.wait(20), "the consumer did not start"

    def drain(self) -> list[int]:
        self.done.set()
        self.thread.join(60)
        assert not self.thread.is_alive()
        return self.positions


class TestKilledRelay:
    def test_kill_9_mid_run_loses_and_doubles_nothing(self, app, db, broker, stream):
        kill_loop(app, db, broker, stream, kills=3)
        assert_stream_is_the_feed(app, broker, stream)

    @pytest.mark.slow
    def test_kill_9_ten_times_under_a_steady_stream_of_events(self, app, db, broker, stream):
        kill_loop(app, db, broker, stream, kills=10)
        assert_stream_is_the_feed(app, broker, stream)

    def test_kill_9_under_work_queue_retention_delivers_each_event_once(
            self, app, db, broker, stream):
        # Restarts resume from the tracking row, which lags the stream after a kill -9:
        # the events re-sent count as stored (duplicate acks), none is stored twice.
        consumer = WorkQueueConsumer(broker.url, stream)
        consumer.start()
        try:
            kill_loop(app, db, broker, stream, kills=3, WES_NATS_RETENTION="workqueue")
        finally:
            positions = consumer.drain()
        assert len(positions) == len(set(positions)), "an event is delivered twice"
        assert positions == [e.position for e in EventReader(app).read(0, 1_000_000)]


def start(app: Workflows, order: str) -> UUID:
    return app.start_workflow(definition="order-fulfillment",
                              input={"orderId": order, "items": ITEMS},
                              correlation_id=f"ord-{order}").workflow_id


class TestBrokerOutage:
    def test_the_engine_runs_on_while_the_broker_is_down_and_the_relay_catches_up(
            self, app, db, broker, stream, simulator: SimulatorClient):
        workers = [spawn_worker(db, simulator.base_url) for _ in range(2)]
        # Credentials in the URL (this server takes any): they must never be logged.
        relay = spawn_relay(db, broker, stream,
                            WES_NATS_URL=broker.url.replace("nats://", "nats://relay:s3cret@"))
        try:
            first = [start(app, f"UP-{n}") for n in range(5)]
            for wf_id in first:
                wait_for_status(app, wf_id, "COMPLETED", timeout=60)
            wait_for(lambda: relayed(app) > 0, 30, message="the relay to publish")
            broker.stop()
            # Every workflow started while the broker is down completes: the engine saves
            # to the store, and only the relay waits for the broker.
            during = [start(app, f"DOWN-{n}") for n in range(10)]
            for wf_id in during:
                wait_for_status(app, wf_id, "COMPLETED", timeout=60)
            head = app.recorder.max_notification_id() or 0
            assert relayed(app) < head  # nothing relayed while the broker is down
            assert relay.poll() is None, output(relay)
            broker.start()
            wait_for(lambda: relayed(app) >= head, 60, message="the relay to catch up")
            for wf_id in [start(app, f"AFTER-{n}") for n in range(3)]:
                wait_for_status(app, wf_id, "COMPLETED", timeout=60)
            head = app.recorder.max_notification_id() or 0
            wait_for(lambda: relayed(app) >= head, 60, message="the relay to follow")
        finally:
            assert stop(relay) == 0, output(relay)
            for worker in workers:
                stop(worker)
        assert_stream_is_the_feed(app, broker, stream)
        log = output(relay)
        assert "waiting" in log or "retrying" in log  # it did log its retries ...
        assert "s3cret" not in log and "nats://***@127.0.0.1" in log  # ... never the password
