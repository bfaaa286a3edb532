"""Every override of an `eventsourcing` internal, run beside the library's own path on the
same input in real PostgreSQL: the same stored events and snapshots (our `save` and
`_take_snapshots` against a plain library `Application.save`), the same aggregates (our
one-statement repository and aggregate cache against the library's `Repository.get`), the
same decoded events (`_FastDecoder` against `Mapper.to_domain_event`), the same
notifications (`WesSubscription` against `PostgresSubscription`) and the same reads (our
recorder against the library's on the same table). docs/library-overrides.md lists them."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, ClassVar
from uuid import UUID

import pytest
from eventsourcing.application import AggregateNotFoundError, Application, Repository
from eventsourcing.persistence import Notification, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresSubscription
from eventsourcing.utils import get_topic
from psycopg_pool import ConnectionPool

from application.connection_check import _CheckNowAndThen, check_now_and_then
from application.database import Database
from application.log_following import WesSubscription
from application.workflows import Workflows, fold
from domain.load import LoadMetrics
from domain.system_load import SystemLoad
from domain.workflow import Workflow
from projections.base import _decoder, _FastDecoder
from tests.support import override_history as history
from tests.support.override_history import dump, record_history
from tests.unit.sagas import order_fulfillment_steps


class LibraryWorkflows(Application[UUID]):
    """A plain library application: its own recorder, save, snapshots and repository."""

    name = "Lib"
    env: ClassVar[dict[str, str]] = {"ORIGINATOR_ID_TYPE": "uuid"}  # type: ignore[misc]
    snapshotting_intervals = dict(Workflows.snapshotting_intervals)


@pytest.fixture
def ours(db: Database) -> Iterator[Workflows]:
    app = Workflows(env=db.env())
    yield app
    app.close()


@pytest.fixture
def library(db: Database) -> Iterator[LibraryWorkflows]:
    app = LibraryWorkflows(env=db.env())
    yield app
    app.close()


def _rows(stored: list[StoredEvent] | Any) -> list[tuple[Any, ...]]:
    return [(e.originator_id, e.originator_version, e.topic, type(e.state), bytes(e.state))
            for e in stored]


def _versions_saved(save: Callable[..., Any]) -> tuple[Callable[..., Any], list[tuple[int, int]]]:
    """Wraps `save`, noting (first, last) version of each save of the long workflow."""
    spans: list[tuple[int, int]] = []

    def saving(*objs: Any, **kwargs: Any) -> Any:
        for obj in objs:
            if obj.id == history.EVERYTHING:
                pending = obj.pending_events
                spans.append((pending[0].originator_version, pending[-1].originator_version))
        return save(*objs, **kwargs)

    return saving, spans


class TestSave:
    def test_our_save_stores_the_events_and_snapshots_the_library_save_stores(self, ours,
                                                                             library):
        saving, spans = _versions_saved(ours.save)
        ids = record_history(saving)
        assert record_history(library.save) == ids
        # Both branches of our `_take_snapshots`: a save ending on a snapshot version (the
        # aggregate in hand) and one stepping over it (loaded again, as the library does).
        assert any(last % 50 == 0 for _, last in spans)
        assert any(first % 50 and last % 50 and first // 50 != last // 50
                   for first, last in spans)
        for aggregate_id in ids:
            assert _rows(ours.recorder.select_events(aggregate_id)) == _rows(
                library.recorder.select_events(aggregate_id))
        snapshotted = {}
        for aggregate_id in ids:
            mine = list(ours.snapshots.get(aggregate_id))
            theirs = list(library.snapshots.get(aggregate_id))
            assert [type(s) for s in mine] == [type(s) for s in theirs]
            for a, b in zip(mine, theirs, strict=True):
                state_a, state_b = dict(vars(a)), dict(vars(b))
                if not isinstance(a, Workflow.Snapshot):
                    # The library's Snapshot.take stamps the time of taking.
                    state_a.pop("timestamp"), state_b.pop("timestamp")
                assert dump(state_a) == dump(state_b)
            snapshotted[aggregate_id] = [s.originator_version for s in mine]
        assert snapshotted[history.EVERYTHING] == [50, 100]
        assert snapshotted[history.LOAD] == [100]

    def test_our_save_records_exactly_the_events_the_aggregates_held(self, ours):
        held: dict[UUID, list[Any]] = {}

        def saving(*objs: Any, **kwargs: Any) -> Any:
            for obj in objs:
                held.setdefault(obj.id, []).extend(obj.pending_events)
            return ours.save(*objs, **kwargs)

        record_history(saving)
        for aggregate_id, events in held.items():
            stored = [ours.mapper.to_domain_event(e)
                      for e in ours.recorder.select_events(aggregate_id)]
            assert dump([vars(e) for e in stored]) == dump([vars(e) for e in events])


def _library_repository(app: Application[UUID], snapshots: bool) -> Repository[UUID]:
    """The library's own repository over `app`'s stores: no cache, `project_aggregate`."""
    return Repository(app.events, snapshot_store=app.snapshots if snapshots else None)


def _toggle(app: Workflows, workflow_id: UUID, times: int) -> None:
    for _ in range(times):
        wf = app.get_workflow(workflow_id)
        if wf.status == "PAUSED":
            wf.resume(app.clock())
        else:
            wf.pause(app.clock(), "toggle", "operator")
        app.save(wf)


class TestRepository:
    def test_a_load_through_our_repository_equals_the_library_repository(self, ours, db):
        ids = record_history(ours.save)
        reader = Workflows(env=db.env())  # an empty cache: the first load is a miss
        try:
            repository = reader.repository
            # Snapshots are decoded with the event store's mapper, as the library's
            # snapshot store would decode them.
            assert reader.snapshots is not None and reader.snapshots.mapper is reader.mapper
            assert reader.events.mapper is reader.mapper
            assert repository._store is not None and repository._snapshots_table, (
                "the one-statement read is not in use")
            plain = _library_repository(reader, snapshots=False)
            with_snapshots = _library_repository(reader, snapshots=True)
            for aggregate_id in ids:
                expected = dump(plain.get(aggregate_id))
                assert dump(with_snapshots.get(aggregate_id)) == expected
                miss = repository.get(aggregate_id, projector_func=fold)
                assert dump(miss) == expected
                hit = repository.get(aggregate_id, projector_func=fold)  # cached, copied
                assert hit is not miss and dump(hit) == expected
            assert dump(reader.get_workflow(history.EVERYTHING)) == dump(
                plain.get(history.EVERYTHING))
        finally:
            reader.close()

    def test_a_cache_hit_brought_forward_equals_the_library_load(self, ours, db):
        record_history(ours.save)
        workflow_id = ours.start_workflow(
            steps=[s.to_dict() for s in order_fulfillment_steps()], driven_by="caller",
        ).workflow_id
        _toggle(ours, workflow_id, 52)  # past the snapshot at 50
        reader, writer = Workflows(env=db.env()), Workflows(env=db.env())
        try:
            cached = {aggregate_id: reader.repository.get(aggregate_id, projector_func=fold)
                      .version for aggregate_id in (workflow_id, history.LOAD)}  # into the cache
            _toggle(writer, workflow_id, 3)  # another process saves meanwhile
            load = writer.repository.get(history.LOAD)
            load.report(LoadMetrics("inventory-1", "inventory-service", 1.0, 2.0, 3, 4, 5.0,
                                    0.5), writer.clock())
            writer.save(load)
            for aggregate_id in (workflow_id, history.LOAD):
                forward = reader.repository.get(aggregate_id, projector_func=fold)
                expected = _library_repository(reader, snapshots=False).get(aggregate_id)
                assert forward.version == expected.version > cached[aggregate_id]
                assert dump(forward) == dump(expected)
            assert reader.get_workflow(workflow_id).version == cached[workflow_id] + 3
        finally:
            reader.close()
            writer.close()

    def test_a_load_as_of_a_version_equals_the_library_load(self, ours):
        record_history(ours.save)
        library_load = _library_repository(ours, snapshots=True)
        last = ours.get_workflow(history.EVERYTHING).version
        for version in (1, 2, 10, 49, 50, 51, 99, 100, 101, last):
            ours_wf = ours.get_workflow(history.EVERYTHING, version=version)
            assert dump(ours_wf) == dump(library_load.get(history.EVERYTHING, version=version))

    def test_an_unknown_id_is_not_found_on_both_paths(self, ours):
        record_history(ours.save)
        unknown = uuid.uuid4()
        with pytest.raises(AggregateNotFoundError):
            ours.repository.get(unknown, projector_func=fold)
        with pytest.raises(AggregateNotFoundError):
            _library_repository(ours, snapshots=True).get(unknown)


class TestDecoder:
    def test_the_fast_decoder_gives_the_mappers_events_for_every_event_type(self, ours):
        record_history(ours.save)
        notifications = ours.recorder.select_notifications(start=None, limit=100_000)
        decode = _decoder(ours.mapper)
        fast = getattr(decode, "__self__", None)
        assert isinstance(fast, _FastDecoder), "the fast decoder is not in use"
        seen: set[type[Any]] = set()
        for notification in notifications:
            fast._state(notification.state)  # the fast path itself, no fallback to the mapper
            ours_event = decode(notification)
            library_event = ours.mapper.to_domain_event(notification)
            assert type(ours_event) is type(library_event)
            assert dump(vars(ours_event)) == dump(vars(library_event))
            seen.add(type(library_event))
        assert history.workflow_event_classes() <= seen
        for cls in history.aggregate_classes():
            assert any(event_class.__qualname__.startswith(cls.__name__ + ".")
                       for event_class in seen)
        assert {SystemLoad.Registered, SystemLoad.MetricsReported,
                SystemLoad.CircuitStateChanged} <= seen


def _notification(n: Notification) -> tuple[Any, ...]:
    return (n.id, n.originator_id, n.originator_version, n.topic, bytes(n.state))


class _Collector:
    """Iterates a subscription in a thread of its own, keeping what it yields."""

    def __init__(self, subscription: Any) -> None:
        self.subscription = subscription
        self.items: list[Notification] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for notification in self.subscription:
                self.items.append(notification)
        except BaseException as e:  # reported by wait_for
            self.error = e

    def wait_for(self, count: int, poke: Callable[[], None], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.items) < count and time.monotonic() < deadline and self.error is None:
            poke()
            time.sleep(0.05)
        assert self.error is None, self.error
        assert len(self.items) >= count, f"{len(self.items)} of {count} notifications came"


class TestSubscription:
    @pytest.mark.parametrize(("gt", "topics"), [
        (None, ()),
        (17, ()),
        (None, (get_topic(Workflow.Paused), get_topic(SystemLoad.MetricsReported))),
    ], ids=["all", "after-a-position", "some-topics"])
    def test_ours_yields_what_the_library_subscription_yields(self, ours, gt, topics):
        record_history(ours.save)
        store = ours.store
        library_recorder = PostgresApplicationRecorder(
            store.datastore, events_table_name=store.events_table_name)
        with store.subscribe(gt=gt, topics=topics) as mine, \
                library_recorder.subscribe(gt=gt, topics=topics) as theirs:
            assert isinstance(mine, WesSubscription)
            assert type(theirs) is PostgresSubscription
            for name in ("_recorder", "_has_been_notified", "_has_been_stopped",
                         "_thread_error", "_notifications_queue", "_last_notification_id",
                         "_select_limit", "_topics"):
                assert hasattr(theirs, name), f"PostgresSubscription has no {name} now"
            wanted = [n for n in store.select_notifications(start=None, limit=100_000)
                      if (gt is None or n.id > gt) and (not topics or n.topic in topics)]
            collectors = [_Collector(mine), _Collector(theirs)]
            for collector in collectors:
                # A bare NOTIFY only wakes a subscriber (the library's may have started
                # listening after an append): it adds no event to compare.
                collector.wait_for(len(wanted), store.announce)
            # Live: events saved while both listen.
            _toggle_load(ours, 3)
            grown = [n for n in store.select_notifications(start=None, limit=100_000)
                     if (gt is None or n.id > gt) and (not topics or n.topic in topics)]
            assert len(grown) == len(wanted) + 3 * bool(
                not topics or get_topic(SystemLoad.MetricsReported) in topics)
            for collector in collectors:
                collector.wait_for(len(grown), store.announce)
        for collector in collectors:
            collector.thread.join(5)
        mine_items, theirs_items = ([_notification(n) for n in c.items] for c in collectors)
        assert mine_items == theirs_items == [_notification(n) for n in grown]


def _toggle_load(app: Workflows, times: int) -> None:
    for n in range(times):
        load = app.repository.get(history.LOAD)
        load.report(LoadMetrics("inventory-1", "inventory-service", float(n), 2.0, 3, 4, 5.0,
                                0.5), app.clock())
        app.save(load)


class TestRecorderReads:
    def test_our_reads_equal_the_library_recorders_on_the_same_table(self, ours):
        ids = record_history(ours.save)
        store = ours.store
        library_recorder = PostgresApplicationRecorder(
            store.datastore, events_table_name=store.events_table_name)
        assert store.max_notification_id() == library_recorder.max_notification_id()
        for aggregate_id in ids:
            for kwargs in ({}, {"gt": 3}, {"lte": 7}, {"gt": 2, "lte": 60}, {"desc": True},
                           {"desc": True, "limit": 1}, {"gt": 49, "limit": 5}):
                assert _rows(store.select_events(aggregate_id, **kwargs)) == _rows(
                    library_recorder.select_events(aggregate_id, **kwargs)), kwargs
        topics = (get_topic(Workflow.Started), get_topic(SystemLoad.MetricsReported))
        for args, kwargs in (((None, 1000), {}), ((1, 10), {}), ((5, 10), {"stop": 9}),
                             ((5, 10), {"inclusive_of_start": False}),
                             ((None, 10), {"topics": topics}),
                             ((20, 1000), {"topics": topics, "stop": 200})):
            assert [_notification(n) for n in store.select_notifications(*args, **kwargs)] \
                == [_notification(n) for n in library_recorder.select_notifications(
                    *args, **kwargs)], (args, kwargs)


class TestConnectionCheck:
    def test_the_library_datastore_pre_pings_with_the_check_we_replace(self, library):
        pool = library.recorder.datastore.pool
        assert pool._check is ConnectionPool.check_connection  # the library's, untouched
        check = check_now_and_then(library.recorder.datastore)
        assert isinstance(check, _CheckNowAndThen) and pool._check is check
        with library.recorder.datastore.transaction(commit=False) as curs:
            curs.execute("SELECT 1")
        assert check.pings == 1  # the pool runs the check we put in
