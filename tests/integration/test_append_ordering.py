"""Concurrent appends commit out of order; readers still see every event exactly once.

Appends take their positions without holding a lock until commit, so a later position can
commit before an earlier one, and an append can roll back after taking its positions. The
recorder's readers must neither pass over a position whose append is still in flight nor
wait forever for one that rolled back, and must not rely on any timeout to tell the two
apart.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.postgres import PostgresDatastore

from application.database import Database
from application.event_log import WesApplicationRecorder
from application.log_following import WesSubscription
from tests.integration.test_recorder_contract import make_recorder


@pytest.fixture
def store(db: Database) -> Iterator[tuple[PostgresDatastore, WesApplicationRecorder]]:
    datastore, recorder = make_recorder(db, pool_size=12)
    yield datastore, recorder
    datastore.close()


def events(n: int = 1, originator_id: uuid.UUID | None = None, first_version: int = 1
           ) -> list[StoredEvent]:
    oid = originator_id or uuid.uuid4()
    return [StoredEvent(oid, first_version + i, "topic", b"{}") for i in range(n)]


def naive_positions(datastore: PostgresDatastore, recorder: WesApplicationRecorder) -> list[int]:
    """What a reader that trusts `ORDER BY notification_id` would see right now."""
    with datastore.get_connection() as conn:
        rows = conn.execute(f"SELECT notification_id FROM {datastore.schema}."
                            f"{recorder.events_table_name} ORDER BY notification_id").fetchall()
    return [row["notification_id"] for row in rows]


class TestAppendInFlight:
    def test_a_reader_stops_before_an_append_that_has_not_committed(self, store: Any) -> None:
        datastore, recorder = store
        recorder.insert_events(events())
        with datastore.get_connection() as slow, slow.transaction():
            in_flight = recorder.append(slow, events(2))
            assert in_flight == [2, 3]
            later = recorder.insert_events(events())
            assert later == [4]
            # The later append is committed and a plain query already shows it ...
            assert naive_positions(datastore, recorder) == [1, 4]
            # ... but the recorder does not hand it out past the open append.
            assert [n.id for n in recorder.select_notifications(None, 10)] == [1]
            assert recorder.select_committed(2, 10) == ([], 2)
        assert [n.id for n in recorder.select_notifications(None, 10)] == [1, 2, 3, 4]

    def test_a_rolled_back_append_is_stepped_over_without_waiting(self, store: Any) -> None:
        datastore, recorder = store
        with datastore.get_connection() as conn:
            conn.execute("BEGIN")
            assert recorder.append(conn, events(3)) == [1, 2, 3]
            conn.execute("ROLLBACK")
        recorder.insert_events(events())
        started = time.monotonic()
        assert [n.id for n in recorder.select_notifications(None, 10)] == [4]
        assert time.monotonic() - started < 1.0

    def test_a_conflicting_append_takes_no_place_in_the_order(self, store: Any) -> None:
        _, recorder = store
        first = events(2)
        recorder.insert_events(first)
        with pytest.raises(IntegrityError):
            recorder.insert_events(first[1:])
        recorder.insert_events(events())
        assert [n.id for n in recorder.select_notifications(None, 10)] == [1, 2, 4]

    def test_a_subscription_waits_for_exactly_the_append_in_flight(self, store: Any) -> None:
        datastore, recorder = store
        received: list[int] = []
        with datastore.get_connection() as slow, recorder.subscribe(gt=0) as subscription:
            slow.execute("BEGIN")
            recorder.append(slow, events())
            recorder.insert_events(events())
            reader = threading.Thread(target=lambda: received.extend(
                n.id for _, n in zip(range(2), subscription, strict=False)))
            reader.start()
            time.sleep(0.3)
            assert received == []  # position 2 is committed, but 1 is not yet
            slow.execute("COMMIT")
            reader.join(5)
        assert received == [1, 2]

    def test_a_subscription_sees_an_append_that_commits_before_its_listen(
            self, store: Any) -> None:
        _, recorder = store
        first_read = threading.Event()
        appended = threading.Event()

        class LateListener(WesSubscription):
            """Its LISTEN starts only after the first read and an append, as when the
            listening thread is slow to get a connection on a busy machine."""

            def _pull(self) -> None:
                super()._pull()
                first_read.set()

            def _listen(self) -> None:
                appended.wait(5)
                super()._listen()

        received: list[int] = []
        with LateListener(recorder, gt=0) as subscription:
            assert first_read.wait(5)
            recorder.insert_events(events())
            appended.set()
            reader = threading.Thread(target=lambda: received.extend(
                n.id for _, n in zip(range(1), subscription, strict=False)), daemon=True)
            reader.start()
            reader.join(5)
            assert received == [1]

    def test_a_stopped_subscription_leaves_no_pooled_connection_listening(self, db: Database) -> None:
        datastore, recorder = make_recorder(db, pool_size=2)
        try:
            with recorder.subscribe(gt=0) as subscription:
                recorder.insert_events(events())
                assert next(iter(subscription)).id == 1
                subscription.stop()
            with contextlib.ExitStack() as stack:
                # Every connection the pool holds (the subscription used three at most).
                pooled = [stack.enter_context(datastore.get_connection()) for _ in range(4)]
                assert [conn.execute("SELECT count(*) AS n FROM pg_listening_channels()"
                                     ).fetchone()["n"] for conn in pooled] == [0, 0, 0, 0]
        finally:
            datastore.close()

    def test_topics_are_filtered_without_passing_an_append_in_flight(self, store: Any) -> None:
        datastore, recorder = store
        oid = uuid.uuid4()
        recorder.insert_events([StoredEvent(oid, 1, "a", b"{}"), StoredEvent(oid, 2, "b", b"{}")])
        with datastore.get_connection() as slow, slow.transaction():
            recorder.append(slow, [StoredEvent(uuid.uuid4(), 1, "b", b"{}")])
            recorder.insert_events([StoredEvent(uuid.uuid4(), 1, "b", b"{}")])
            assert [n.id for n in recorder.select_notifications(None, 10, topics=["b"])] == [2]
        assert [n.id for n in recorder.select_notifications(None, 10, topics=["b"])] == [2, 3, 4]


class TestReadsFromAnyPosition:
    """A read may start anywhere: inside a block still in flight, or "from now"."""

    def test_a_read_starting_inside_an_open_append_does_not_pass_over_it(
            self, store: Any) -> None:
        datastore, recorder = store
        recorder.insert_events(events())
        with datastore.get_connection() as slow, slow.transaction():
            assert recorder.append(slow, events(6)) == [2, 3, 4, 5, 6, 7]
            assert recorder.insert_events(events()) == [8]
            assert naive_positions(datastore, recorder) == [1, 8]
            for start in range(2, 8):
                assert [n.id for n in recorder.select_notifications(start, 10)] == [], start
                assert recorder.select_notifications(start - 1, 10,
                                                     inclusive_of_start=False) == []
                found, blocked = recorder.select_committed(start, 10)
                assert found == [] and blocked is not None
            # Above the block nothing is in flight: position 8 is the next event there.
            assert [n.id for n in recorder.select_notifications(8, 10)] == [8]
        assert [n.id for n in recorder.select_notifications(4, 10)] == [4, 5, 6, 7, 8]

    def test_a_read_inside_a_long_open_append_does_not_pass_over_it(self, store: Any) -> None:
        # More missing positions than the reader probes one by one: it reads pg_locks.
        datastore, recorder = store
        with datastore.get_connection() as slow, slow.transaction():
            assert recorder.append(slow, events(200)) == list(range(1, 201))
            assert recorder.insert_events(events()) == [201]
            assert recorder.select_notifications(50, 10) == []
            assert recorder.select_notifications(120, 10, topics=["topic"]) == []
        assert [n.id for n in recorder.select_notifications(195, 10)] == [
            195, 196, 197, 198, 199, 200, 201]

    def test_a_subscription_from_inside_an_open_append_waits_for_it(self, store: Any) -> None:
        datastore, recorder = store
        recorder.insert_events(events())
        received: list[int] = []
        with datastore.get_connection() as slow, recorder.subscribe(gt=3) as subscription:
            slow.execute("BEGIN")
            assert recorder.append(slow, events(6)) == [2, 3, 4, 5, 6, 7]
            recorder.insert_events(events())
            reader = threading.Thread(target=lambda: received.extend(
                n.id for _, n in zip(range(5), subscription, strict=False)))
            reader.start()
            time.sleep(0.3)
            assert received == []  # position 8 is committed, but 4..7 are not yet
            slow.execute("COMMIT")
            reader.join(5)
        assert received == [4, 5, 6, 7, 8]

    def test_the_settled_head_stays_below_an_open_append(self, store: Any) -> None:
        datastore, recorder = store
        recorder.insert_events(events())
        assert recorder.settled_head() == 1
        with datastore.get_connection() as slow, slow.transaction():
            recorder.append(slow, events(6))
            # An append in flight above every committed position holds nothing back.
            assert recorder.settled_head() == 1
            recorder.insert_events(events())
            assert recorder.max_notification_id() == 8
            assert recorder.settled_head() == 1
        assert recorder.settled_head() == 8

    def test_the_settled_head_steps_over_a_rolled_back_append(self, store: Any) -> None:
        datastore, recorder = store
        with datastore.get_connection() as conn:
            conn.execute("BEGIN")
            recorder.append(conn, events(3))
            recorder.insert_events(events())
            assert recorder.settled_head() == 0
            conn.execute("ROLLBACK")
        assert recorder.settled_head() == 4

    def test_a_subscription_from_the_settled_head_gets_what_commits_later(
            self, store: Any) -> None:
        datastore, recorder = store
        recorder.insert_events(events())
        received: list[int] = []
        with datastore.get_connection() as slow:
            slow.execute("BEGIN")
            recorder.append(slow, events(2))
            recorder.insert_events(events())
            with recorder.subscribe(gt=recorder.settled_head()) as subscription:
                slow.execute("COMMIT")
                received.extend(n.id for _, n in zip(range(3), subscription, strict=False))
        assert received == [2, 3, 4]


@dataclass
class Workload:
    """Threads appending to and reading one store until `stop`, and the errors they met."""

    datastore: PostgresDatastore
    recorder: WesApplicationRecorder
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    errors: list[BaseException] = field(default_factory=list)

    def thread(self, target: Callable[..., None], *args: Any) -> threading.Thread:
        """A thread running `target(*args)` whose exception is kept in `errors`."""
        def run() -> None:
            try:
                target(*args)
            except BaseException as e:  # pragma: no cover - reported by the test
                self.errors.append(e)
        return threading.Thread(target=run)

    def run_for(self, seconds: float, threads: list[threading.Thread]) -> None:
        """Starts the threads, and tells them to stop after `seconds`."""
        for thread in threads:
            thread.start()
        time.sleep(seconds)
        self.stop.set()


def append_out_of_order(work: Workload, rng: random.Random, batch: list[StoredEvent]
                        ) -> tuple[list[int], float] | None:
    """Appends `batch` in a transaction that commits after others took their positions, or
    rolls it back (None); returns its positions and when its COMMIT was sent."""
    with work.datastore.get_connection() as conn:
        conn.execute("BEGIN")
        positions = work.recorder.append(conn, batch) or []
        time.sleep(rng.random() * 0.004)  # commit after others took theirs
        if rng.random() < 0.1:
            conn.execute("ROLLBACK")
            return None
        sent = time.monotonic()
        conn.execute("COMMIT")
    return positions, sent


class TestManyWritersCommittingOutOfOrder:
    WRITERS = 8
    SECONDS = 3.0

    @staticmethod
    def write(work: Workload, seed: int, committed: dict[int, float]) -> None:
        """Appends out of order, now and then a conflicting one too; `committed`: position ->
        when its append committed."""
        rng = random.Random(seed)
        while not work.stop.is_set():
            batch = events(rng.randint(1, 4))
            appended = append_out_of_order(work, rng, batch)
            if appended is None:
                continue
            with work.lock:
                committed.update(dict.fromkeys(appended[0], time.monotonic()))
            if rng.random() < 0.05:  # a conflict: rolled back inside the statement
                with contextlib.suppress(IntegrityError):
                    work.recorder.insert_events(batch[:1])
            work.recorder.announce()

    @staticmethod
    def subscribe(recorder: WesApplicationRecorder, stop: threading.Event,
                  final: dict[str, int], seen: list[int]) -> None:
        with recorder.subscribe(gt=0) as subscription:
            for notification in subscription:
                seen.append(notification.id)
                if stop.is_set() and notification.id >= final.get("last", 1 << 62):
                    return

    @staticmethod
    def poll(recorder: WesApplicationRecorder, stop: threading.Event, final: dict[str, int],
             seen: list[int]) -> None:
        # A projection in the library's style: ask for what comes after its position.
        position = 0
        while True:
            batch = recorder.select_notifications(position, 7, inclusive_of_start=False)
            seen.extend(n.id for n in batch)
            if batch:
                position = batch[-1].id
                continue
            time.sleep(0.001)
            if stop.is_set() and position >= final.get("last", 1 << 62):
                return

    def test_every_event_is_seen_exactly_once_in_position_order(self, store: Any) -> None:
        work = Workload(*store)
        recorder = work.recorder
        committed: dict[int, float] = {}  # position -> when its append committed
        seen_by_subscription: list[int] = []
        seen_by_poller: list[int] = []
        final: dict[str, int] = {}

        writers = [work.thread(self.write, work, i, committed) for i in range(self.WRITERS)]
        readers = [
            threading.Thread(target=self.subscribe,
                             args=(recorder, work.stop, final, seen_by_subscription)),
            threading.Thread(target=self.poll, args=(recorder, work.stop, final, seen_by_poller)),
        ]
        work.run_for(self.SECONDS, writers + readers)
        for thread in writers:
            thread.join()
        assert not work.errors, work.errors
        final["last"] = max(committed)
        recorder.insert_events(events())  # one more, so the subscription wakes to finish
        final["last"] = max(committed)
        for thread in readers:
            thread.join(15)
        assert not any(thread.is_alive() for thread in readers), "a reader got stuck"

        expected = sorted(committed)
        assert len(expected) > 200
        by_commit_time = sorted(committed, key=committed.__getitem__)
        assert by_commit_time != expected, "the workload did not commit out of order"
        # Rolled-back and conflicting appends left holes a reader had to step over.
        assert len(expected) < expected[-1]
        for seen in (seen_by_subscription, seen_by_poller):
            assert seen == sorted(set(seen)), "a position came twice or out of order"
            assert [p for p in seen if p <= final["last"]] == expected


class TestReadersStartingAnywhereWhileWritersCommitOutOfOrder:
    WRITERS = 6
    SECONDS = 3.0

    @staticmethod
    def write(work: Workload, seed: int, commit_sent: dict[int, float]) -> None:
        """Appends out of order; `commit_sent`: position -> when its COMMIT was sent."""
        rng = random.Random(seed)
        while not work.stop.is_set():
            appended = append_out_of_order(work, rng, events(rng.randint(1, 6)))
            if appended is not None:
                positions, sent = appended
                with work.lock:
                    commit_sent.update(dict.fromkeys(positions, sent))

    @staticmethod
    def read_from_anywhere(work: Workload, seed: int, reads: list[tuple[int, list[int]]],
                           heads: list[tuple[int, float]]) -> None:
        """Reads a few pages from a start near the newest positions, and takes settled
        heads; `reads`: (start, what a reader from there saw), `heads`: (settled head,
        when it was handed out)."""
        rng = random.Random(seed)
        recorder = work.recorder
        while not work.stop.is_set():
            heads.append((recorder.settled_head(), time.monotonic()))
            # Often inside an append still in flight: the newest positions.
            latest = recorder.max_notification_id() or 0
            start = rng.randint(max(0, latest - 12), latest)
            seen: list[int] = []
            for _ in range(rng.randint(1, 3)):
                batch = recorder.select_notifications(
                    seen[-1] if seen else start, 5, inclusive_of_start=False)
                seen += [n.id for n in batch]
            if seen:
                reads.append((start, seen))

    def test_no_start_position_and_no_settled_head_passes_over_an_event(
            self, store: Any) -> None:
        work = Workload(*store)
        commit_sent: dict[int, float] = {}  # position -> when its COMMIT was sent
        reads: list[tuple[int, list[int]]] = []
        heads: list[tuple[int, float]] = []

        threads = [work.thread(self.write, work, i, commit_sent) for i in range(self.WRITERS)]
        threads += [work.thread(self.read_from_anywhere, work, 100 + i, reads, heads)
                    for i in range(2)]
        work.run_for(self.SECONDS, threads)
        for thread in threads:
            thread.join()
        assert not work.errors, work.errors

        committed = sorted(commit_sent)
        assert len(reads) > 50 and len(committed) > 200
        for start, seen in reads:
            # Everything that ever committed between the start and the last position read.
            assert seen == [p for p in committed if start < p <= seen[-1]], start
        for head, handed_out in heads:
            # Whatever lies at or below a head had its COMMIT sent before the head was read.
            late = [p for p in committed if p <= head and commit_sent[p] > handed_out]
            assert late == [], (head, late)
