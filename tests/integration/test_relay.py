"""The event relay against a real nats-server of the test's own: the stream is the event
feed one for one, exactly once across restarts, stale publishers and a broker outage."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import nats
import pytest
from cloudevents.core.formats.json import JSONFormat
from cloudevents.v1.http import from_json
from nats.js.api import ConsumerConfig, DeliverPolicy

from api.feed import EventReader
from application.engine.ports import StepCall
from application.relay.envelope import Naming, envelope, event_id, names, snake
from application.relay.jetstream import NatsJetStreamSink, first_sequence_after, redact
from application.relay.relay import Relay
from application.relay.sink import SinkUnavailable
from application.relay.tracking import RelayTracking
from application.settings import RelaySettings
from application.waveless import LoadSignals, Releaser, WavelessSettings
from application.workflows import Workflows
from bootstrap.container import engine_over
from projections.base import to_events
from tests.support.nats_server import NatsServer, delete_stream, read_stream, stream_state
from tests.support.projection_history import completed_orders, mixed_history
from tests.support.waiting import wait_for, wait_for_status

FAST = {"max_retries": 3, "initial_delay_ms": 20, "max_delay_ms": 100, "multiplier": 2.0}
SAGA = [{"step_id": sid, "service": svc, "operation": op, "retry_policy": FAST,
         "input": {"orderId": "${input.orderId}"},
         "compensation": {"operation": f"undo-{op}", "parameters": {}}}
        for sid, svc, op in (("reserve", "inventory-service", "reserve"),
                             ("pick", "warehouse-service", "pick"),
                             ("pack", "packing-service", "pack"))]


class Rejected(Exception):
    """A business rule violation: not retried, the saga compensates."""


@pytest.fixture
def broker() -> Iterator[NatsServer]:
    server = NatsServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def settings(broker: NatsServer) -> RelaySettings:
    return RelaySettings(nats_url=broker.url, stream=f"T{uuid.uuid4().hex[:8]}".upper())


def relay_for(app: Workflows, settings: RelaySettings, **kwargs: Any) -> Relay:
    kwargs.setdefault("max_backoff", 0.3)
    kwargs.setdefault("standby_poll", 0.05)
    return Relay(app, NatsJetStreamSink(settings, connect_timeout=0.5, ack_timeout=2.0),
                 Naming(settings.subject_prefix, settings.type_prefix, settings.source),
                 idle_wait=0.2, **kwargs)


@contextmanager
def running(relay: Relay) -> Iterator[Relay]:
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield relay
    finally:
        stop.set()
        thread.join(15)
        assert not thread.is_alive()


def caught_up(relay: Relay, app: Workflows, timeout: float = 30.0) -> None:
    head = app.recorder.max_notification_id() or 0
    wait_for(lambda: (relay.position or 0) >= head, timeout,
             message=f"the relay to reach {head} (at {relay.position}, {relay.state})")


def assert_stream_is_the_feed(app: Workflows, settings: RelaySettings) -> list[dict[str, Any]]:
    """The stream's messages are the event feed's events one for one: ids, order, payloads."""
    feed = EventReader(app).read(0, 1_000_000)
    messages = read_stream(settings.nats_url, settings.stream)
    bodies = [json.loads(m.data) for m in messages]
    assert [b["position"] for b in bodies] == [e.position for e in feed]
    assert [m.sequence for m in messages] == list(range(1, len(feed) + 1))
    for message, body, event in zip(messages, bodies, feed, strict=True):
        assert body["id"] == event_id(event.aggregate_id, event.version)
        assert message.headers["Nats-Msg-Id"] == body["id"]
        assert body["subject"] == str(event.aggregate_id)
        assert body["aggregateversion"] == event.version
        assert body.get("correlationid") == event.correlation_id
        assert body["data"] == json.loads(json.dumps(event.data))
        assert body["type"].endswith("." + snake(event.event_type))
    assert len({b["id"] for b in bodies}) == len(bodies)
    return bodies


class Handlers:
    """In-process warehouse services: pick fails per order as scripted."""

    def __init__(self) -> None:
        self.script: dict[str, list[Exception]] = {}
        self.lock = threading.Lock()

    def __call__(self, call: StepCall) -> dict[str, Any]:
        with self.lock:
            planned = self.script.get(f"{call.input.get('orderId')}:{call.operation}")
            outcome = planned.pop(0) if planned else None
        if outcome is not None:
            raise outcome
        return {"operation": call.operation}


def mixed_workload(app: Workflows) -> dict[str, uuid.UUID]:
    """Success, retry, compensation and waveless, run by the engine."""
    handlers = Handlers()
    handlers.script = {"RETRY:pick": [ConnectionError("robot network down")],
                       "REJECT:pick": [Rejected("item damaged")]}
    engine = engine_over(app, dict.fromkeys(
        ("inventory-service", "warehouse-service", "packing-service"), handlers))
    engine.worker(concurrency=2, lease_seconds=1.0, poll_seconds=0.05).start()
    try:
        ids = {order: app.start_workflow(steps=SAGA, input={"orderId": order},
                                         correlation_id=f"corr-{order}").workflow_id
               for order in ("OK", "RETRY", "REJECT")}
        ids["WAVELESS"] = app.start_workflow(steps=SAGA, input={"orderId": "WAVELESS"},
                                             waveless=True, priority="HIGH").workflow_id
        Releaser(app, LoadSignals(pending=lambda: [ids["WAVELESS"]]),
                 WavelessSettings(adaptive=False)).release_once()
        for order, status in (("OK", "COMPLETED"), ("RETRY", "COMPLETED"),
                              ("REJECT", "COMPENSATED"), ("WAVELESS", "COMPLETED")):
            wait_for_status(app, ids[order], status)
    finally:
        engine.close()
    return ids


class TestRelayedWorkload:
    def test_the_stream_holds_the_event_feed_one_for_one(self, app, settings):
        with running(relay_for(app, settings)) as relay:
            ids = mixed_workload(app)
            caught_up(relay, app)
        bodies = assert_stream_is_the_feed(app, settings)
        types = {b["type"].removeprefix(settings.type_prefix + ".") for b in bodies}
        assert {"workflow.step_retry_scheduled", "workflow.compensation_completed",
                "waveless_batch.released", "workflow.released_in_batch",
                "definition_catalog.created"} <= types
        assert {b["subject"] for b in bodies} >= {str(i) for i in ids.values()}

    def test_every_message_is_a_cloudevent_with_the_events_attributes(self, app, settings):
        mixed_history(app)
        with running(relay_for(app, settings)) as relay:
            caught_up(relay, app)
        notifications = app.recorder.select_notifications(start=1, limit=10_000)
        events = dict((n.id, (event, n)) for (event, _), n in zip(
            to_events(app, "test", notifications)[0], notifications, strict=True))
        messages = read_stream(settings.nats_url, settings.stream)
        assert len(messages) == len(events)
        for message in messages:
            assert message.headers["Content-Type"] == "application/cloudevents+json"
            parsed = JSONFormat().read(None, message.data)
            legacy = from_json(message.data)  # the SDK's v1 HTTP API reads them too
            event, notification = events[parsed.get_extension("position")]
            aggregate, event_type = names(notification.topic)
            assert parsed.get_specversion() == "1.0" == legacy["specversion"]
            assert parsed.get_id() == event_id(event.originator_id, event.originator_version)
            assert parsed.get_source() == "/wes-orchestrator"
            assert parsed.get_type() == f"com.paklog.wes.orchestration.{aggregate}.{event_type}"
            assert parsed.get_time() == event.timestamp
            assert parsed.get_subject() == str(event.originator_id)
            assert parsed.get_extension("aggregateversion") == event.originator_version
            assert parsed.get_extension("correlationid") == getattr(event, "correlation_id",
                                                                     None)
            assert message.subject == f"orchestration.workflow.events.{aggregate}.{event_type}"
            assert legacy.data == parsed.get_data()

    def test_names_are_snake_case_aggregate_and_event(self):
        assert names("domain.workflow:Workflow.StepExecuted") == ("workflow", "step_executed")
        assert names("domain.system_load:SystemLoad.SystemLoadRebalanced") == (
            "system_load", "system_load_rebalanced")
        assert snake("HTTPCallFailed") == "http_call_failed"

    def test_the_event_id_is_the_uuid5_of_aggregate_and_version(self):
        for _ in range(50):
            aggregate, version = uuid.uuid4(), random.randint(1, 10**6)
            assert event_id(aggregate, version) == str(uuid.uuid5(
                uuid.uuid5(uuid.NAMESPACE_URL, "urn:wes-orchestrator:event"),
                f"{aggregate}/{version}"))

    def test_a_timestamp_without_zone_is_refused(self, app):
        (event, _), = to_events(app, "t", app.recorder.select_notifications(1, 1))[0][:1]
        object.__setattr__(event, "timestamp", event.timestamp.replace(tzinfo=None))
        with pytest.raises(ValueError, match="no time zone"):
            envelope(event, "domain.x:X.Y", 1, Naming())


class TestExactlyOnce:
    def test_a_restarted_relay_continues_after_the_streams_last_message(self, app, settings):
        completed_orders(app, 3, prefix="A")
        with running(relay_for(app, settings)) as relay:
            caught_up(relay, app)
        completed_orders(app, 3, prefix="B")
        # Where it stopped is the stream's, not the tracking row's, word: a row set back
        # (as a crash between the ack and its write would leave it) must not double.
        RelayTracking(app.recorder.datastore).save(2, None, "test")
        with running(relay_for(app, settings)) as relay:
            caught_up(relay, app)
        assert_stream_is_the_feed(app, settings)

    def test_a_stale_publisher_can_neither_double_nor_reorder(self, app, settings):
        completed_orders(app, 2)
        notifications = app.recorder.select_notifications(start=1, limit=100)
        items = to_events(app, "t", notifications)[0]
        outgoing = [envelope(e, n.topic, n.id, Naming()) for (e, _), n in
                    zip(items, notifications, strict=True)]

        async def race() -> None:
            first, stale = NatsJetStreamSink(settings), NatsJetStreamSink(settings)
            await first.open()
            await stale.open()
            assert await first.resume_point() == 0 == await stale.resume_point()
            await first.publish(outgoing[:5])
            with pytest.raises(SinkUnavailable):  # the same events again: refused
                await stale.publish(outgoing[:5])
            with pytest.raises(SinkUnavailable):  # later events, past a gap: refused
                await stale.publish(outgoing[7:9])
            assert await stale.resume_point() == outgoing[4].position
            await stale.publish(outgoing[5:])  # after asking again: appended
            with pytest.raises(SinkUnavailable):
                await first.publish(outgoing[5:])
            await first.close()
            await stale.close()

        asyncio.run(race())
        assert_stream_is_the_feed(app, settings)

    def test_a_batch_cut_off_midway_is_completed_not_doubled(self, app, settings):
        completed_orders(app, 2)
        notifications = app.recorder.select_notifications(start=1, limit=100)
        items = to_events(app, "t", notifications)[0]
        outgoing = [envelope(e, n.topic, n.id, Naming()) for (e, _), n in
                    zip(items, notifications, strict=True)]

        async def die_after_sending() -> None:  # as a relay killed before the acks came
            sink = NatsJetStreamSink(settings)
            await sink.open()
            await sink.resume_point()
            await sink.send(outgoing[:7])
            await sink.close()

        asyncio.run(die_after_sending())
        assert stream_state(settings.nats_url, settings.stream).messages == 7
        with running(relay_for(app, settings)) as relay:
            caught_up(relay, app)
        assert_stream_is_the_feed(app, settings)

    def test_a_deleted_stream_is_filled_again_from_the_first_event(self, app, settings):
        completed_orders(app, 1)
        with running(relay_for(app, settings)) as relay:
            caught_up(relay, app)
        delete_stream(settings.nats_url, settings.stream)
        with running(relay_for(app, settings)) as relay:
            caught_up(relay, app)
        assert_stream_is_the_feed(app, settings)

    @pytest.mark.parametrize("behind", [5, None], ids=["row-behind", "row-missing"])
    def test_a_stream_whose_last_message_is_gone_resumes_from_the_tracking_row(
            self, app, settings, behind):
        # The row lags the stream after a kill -9 (written at most every 0.25 s) or is
        # missing: the relay re-sends events the stream already holds. JetStream answers
        # those as duplicates; they count as stored, so the relay moves on at once instead
        # of retrying them until the duplicate window lets them in a second time.
        completed_orders(app, 2, prefix="A")
        with running(relay_for(app, settings)) as relay:
            caught_up(relay, app)
        before = stream_state(settings.nats_url, settings.stream)
        delete_last_message(settings, before.last_seq)
        feed = [e.position for e in EventReader(app).read(0, 10_000)]
        RelayTracking(app.recorder.datastore).save(
            0 if behind is None else feed[-1 - behind], None, "test")
        completed_orders(app, 2, prefix="B")
        relay = relay_for(app, settings)
        relay.sink = sink = CountingSink(relay.sink.settings, connect_timeout=0.5,
                                         ack_timeout=2.0)
        head = app.recorder.max_notification_id() or 0
        with running(relay):
            # Structural, not timed: either it caught up, or it went round again.
            wait_for(lambda: (relay.position or 0) >= head or sink.resumes > 1, 30,
                     message=f"the relay to reach {head} (at {relay.position})")
            assert sink.resumes == 1, "the re-sent events made the relay start over"
            assert (relay.position or 0) >= head
        messages = read_stream(settings.nats_url, settings.stream)
        positions = [json.loads(m.data)["position"] for m in messages]
        feed = [e.position for e in EventReader(app).read(0, 10_000)]
        assert positions == feed[:before.last_seq - 1] + feed[before.last_seq:]
        assert [m.sequence for m in messages] == (list(range(1, before.last_seq))
                                                  + list(range(before.last_seq + 1,
                                                               len(feed) + 1)))

    def test_a_duplicate_after_a_stored_message_is_still_refused(self, app, settings):
        completed_orders(app, 1)
        notifications = app.recorder.select_notifications(start=1, limit=100)
        items = to_events(app, "t", notifications)[0]
        outgoing = [envelope(e, n.topic, n.id, Naming()) for (e, _), n in
                    zip(items, notifications, strict=True)]

        async def resend() -> None:
            sink = NatsJetStreamSink(settings)
            await sink.open()
            assert await sink.resume_point() == 0
            await sink.publish(outgoing[:4])
            await sink.close()
            await delete_message(settings, 4)
            sink = NatsJetStreamSink(settings)
            await sink.open()
            assert await sink.resume_point() is None
            # Only a leading run of repeats counts as stored: one after a new message
            # (#5) is a stale publisher's, and is refused.
            with pytest.raises(SinkUnavailable, match="duplicate=True"):
                await sink.publish(outgoing[2:5] + outgoing[1:2])
            await sink.close()

        asyncio.run(resend())
        assert [json.loads(m.data)["position"] for m in read_stream(
            settings.nats_url, settings.stream)] == [o.position for o in outgoing[:3]
                                                     + outgoing[4:5]]


    @pytest.mark.parametrize("retention", ["interest", "workqueue"])
    def test_a_consumed_stream_gets_each_event_once_after_a_restart_behind_it(
            self, app, retention, broker):
        # Under interest or work-queue retention the consumer's acks remove the messages,
        # so the stream never has a last message to tell: every start is from the row.
        settings = RelaySettings(nats_url=broker.url, retention=retention,
                                 stream=f"Q{uuid.uuid4().hex[:8]}".upper())
        seen: list[int] = []

        async def create_stream_and_consumer() -> None:
            sink = NatsJetStreamSink(settings)
            await sink.open()
            await sink.close()
            nc = await nats.connect(settings.nats_url)
            await nc.jetstream().pull_subscribe("orchestration.workflow.events.>",
                                                durable="wms", stream=settings.stream)
            await nc.close()

        async def consume() -> None:
            nc = await nats.connect(settings.nats_url)
            sub = await nc.jetstream().pull_subscribe(
                "orchestration.workflow.events.>", durable="wms", stream=settings.stream)
            while True:
                try:
                    batch = await sub.fetch(100, timeout=1)
                except TimeoutError:
                    break
                for msg in batch:
                    seen.append(json.loads(msg.data)["position"])
                    await msg.ack_sync()
            await nc.close()

        asyncio.run(create_stream_and_consumer())
        completed_orders(app, 2, prefix="A")
        with running(relay_for(app, settings)) as relay:
            caught_up(relay, app)
        asyncio.run(consume())
        assert stream_state(settings.nats_url, settings.stream).messages == 0
        feed = [e.position for e in EventReader(app).read(0, 10_000)]
        RelayTracking(app.recorder.datastore).save(feed[-6], None, "test")  # a kill -9's lag
        completed_orders(app, 2, prefix="B")
        relay = relay_for(app, settings)
        relay.sink = sink = CountingSink(settings, connect_timeout=0.5, ack_timeout=2.0)
        head = app.recorder.max_notification_id() or 0
        with running(relay):
            wait_for(lambda: (relay.position or 0) >= head or sink.resumes > 1, 30,
                     message=f"the relay to reach {head} (at {relay.position})")
            assert sink.resumes == 1, "the re-sent events made the relay start over"
        asyncio.run(consume())
        assert seen == [e.position for e in EventReader(app).read(0, 10_000)]


class CountingSink(NatsJetStreamSink):
    """The real sink, counting how often the relay asked where the stream ends."""

    resumes = 0

    async def resume_point(self) -> int | None:
        self.resumes += 1
        return await super().resume_point()


def delete_last_message(settings: RelaySettings, sequence: int) -> None:
    asyncio.run(delete_message(settings, sequence))


async def delete_message(settings: RelaySettings, sequence: int) -> None:
    nc = await nats.connect(settings.nats_url)
    await nc.jetstream().delete_msg(settings.stream, sequence)
    await nc.close()


class TestStandby:
    def test_one_relay_is_active_and_a_standby_takes_over(self, app, settings):
        first, second = relay_for(app, settings), relay_for(app, settings)
        with running(first):
            completed_orders(app, 2, prefix="A")
            caught_up(first, app)
            with running(second):
                wait_for(lambda: second.state == "standby", 10, message="a standby")
                assert RelayTracking(app.recorder.datastore).status(app).state == "running"
                with pytest.raises(AssertionError):  # the standby publishes nothing
                    wait_for(lambda: second.position is not None, 1.0)
                first.stop()
                completed_orders(app, 2, prefix="B")
                caught_up(second, app)
        assert_stream_is_the_feed(app, settings)


class TestBrokerOutage:
    def test_waits_for_a_broker_that_is_down_and_catches_up(self, app, settings, broker):
        broker.stop()
        with running(relay_for(app, settings)) as relay:
            completed_orders(app, 3, prefix="DOWN")  # the store does not wait for it
            wait_for(lambda: relay.state == "waiting for the broker", 10,
                     message="the relay to wait")
            broker.start()
            caught_up(relay, app)
            broker.stop()  # and once more, mid-run
            completed_orders(app, 3, prefix="AGAIN")
            broker.start()
            caught_up(relay, app)
        assert_stream_is_the_feed(app, settings)


class TestStatus:
    def test_shows_position_lag_and_state_when_the_relay_is_not_running(self, app, settings):
        tracking = RelayTracking(app.recorder.datastore)
        assert tracking.status(app).state == "stopped"
        completed_orders(app, 1)
        with running(relay_for(app, settings)) as relay:
            caught_up(relay, app)
            wait_for(lambda: tracking.status(app).lag_events == 0, 10, message="no lag")
            assert tracking.status(app).state == "running"
        completed_orders(app, 1, prefix="LATER")
        status = tracking.status(app)
        assert status.state == "stopped"
        assert status.position == relay.position
        assert status.lag_events == status.head - status.position > 0
        assert status.lag_seconds is not None and status.lag_seconds >= 0

    def test_credentials_never_show(self):
        assert redact("nats://alice:s3cret@broker:4222") == "nats://***@broker:4222"
        assert redact("nats://tok3n@a:1,nats://b:2") == "nats://***@a:1,nats://b:2"
        sink = NatsJetStreamSink(RelaySettings(nats_url="nats://u:pw@h:4222"))
        assert "pw" not in sink.describe()


class TestConsumers:
    """The README's consumer: a durable pull consumer, replays from the start and from a
    global position."""

    def test_a_durable_consumer_replays_from_the_start_and_from_a_position(self, app,
                                                                           settings):
        completed_orders(app, 4)
        with running(relay_for(app, settings)) as relay:
            caught_up(relay, app)
        feed = [e.position for e in EventReader(app).read(0, 10_000)]
        middle = feed[len(feed) // 2]

        async def consume() -> tuple[list[int], list[int], list[int]]:
            nc = await nats.connect(settings.nats_url)
            js = nc.jetstream()

            async def drain(sub: Any) -> list[int]:
                seen: list[int] = []
                while True:
                    try:
                        batch = await sub.fetch(100, timeout=1)
                    except TimeoutError:  # nats-py raises its own or asyncio's (both are TimeoutError)
                        return seen
                    for msg in batch:
                        seen.append(json.loads(msg.data)["position"])
                        await msg.ack()

            everything = await js.pull_subscribe("orchestration.workflow.events.>",
                                                 durable="audit-copy", stream=settings.stream)
            first = await drain(everything)
            again = await drain(await js.pull_subscribe(
                "orchestration.workflow.events.>", durable="audit-copy",
                stream=settings.stream))  # the durable remembers what was acknowledged
            start = await first_sequence_after(js, settings.stream, middle)
            later = await drain(await js.pull_subscribe(
                "orchestration.workflow.events.>", durable="from-middle",
                stream=settings.stream, config=ConsumerConfig(
                    deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start)))
            await nc.close()
            return first, again, later

        first, again, later = asyncio.run(consume())
        assert first == feed
        assert again == []
        assert later == [p for p in feed if p > middle]
