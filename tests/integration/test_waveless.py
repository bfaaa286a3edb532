"""Waveless release on real PostgreSQL: batches by priority, FIFO, ageing, slack, WIP caps."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from application.errors import ConfigurationError
from application.locks import LeaderLock
from application.settings import Settings
from application.waveless import LoadSignals, Releaser, WavelessSettings
from application.workflows import Workflows
from bootstrap.container import Container
from domain.enums import WorkflowStatus
from domain.exceptions import InvalidValue
from tests.support.waiting import event_types

STEPS = [{"step_id": "pick", "service": "warehouse-service", "operation": "pick"},
         {"step_id": "pack", "service": "packing-service", "operation": "pack"}]


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: Any) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture
def clock(app: Workflows) -> Clock:
    c = Clock()
    app.clock = c
    return c


def waveless(app: Workflows, priority: str = "NORMAL", *, batch_size: int | None = None,
             interval_ms: int | None = None, **kwargs: Any) -> UUID:
    """A PENDING waveless workflow, enabled with these settings (default: the app's)."""
    if isinstance(app.clock, Clock):
        app.clock.advance(milliseconds=1)  # arrivals are ordered in time
    return app.start_workflow(steps=STEPS, priority=priority, waveless=True,
                              waveless_batch_size=batch_size, waveless_interval_ms=interval_ms,
                              input={"orderId": "x"}, **kwargs).workflow_id


def releaser(app: Workflows, ids: list[UUID], clock: Clock, **settings: Any) -> Releaser:
    in_flight = settings.pop("in_flight", {})
    signals = LoadSignals(pending=lambda: list(ids), in_flight=lambda: in_flight)
    return Releaser(app, signals, WavelessSettings(**settings), clock=clock,
                    timer=lambda: clock.now.timestamp())


def released_ids(plan) -> list[UUID]:
    return [c.workflow_id for c in plan.released]


class TestDynamicBatches:
    def test_a_waveless_workflow_waits_pending_until_a_batch_releases_it(self, app, clock):
        wf_id = waveless(app)
        assert app.get_workflow(wf_id).status == "PENDING"
        assert event_types(app, wf_id) == ["Created", "WavelessEnabled"]
        releaser(app, [wf_id], clock).release_once()
        wf = app.get_workflow(wf_id)
        assert wf.status == "EXECUTING" and wf.batch_id is not None
        assert event_types(app, wf_id)[-2:] == ["ReleasedInBatch", "Started"]

    def test_releases_high_then_normal_then_low_first_come_first_served(self, app, clock):
        ids = []
        for priority in ["LOW", "NORMAL", "HIGH", "LOW", "HIGH", "NORMAL"]:
            ids.append(waveless(app, priority, batch_size=6))
            clock.advance(seconds=1)
        plan = releaser(app, ids, clock, adaptive=False).release_once()
        assert released_ids(plan) == [ids[2], ids[4], ids[1], ids[5], ids[0], ids[3]]

    def test_batch_size_limits_each_release_and_records_the_batch(self, app, clock):
        ids = [waveless(app, batch_size=2) for _ in range(5)]
        r = releaser(app, ids, clock, adaptive=False)
        first = r.release_once()
        assert len(first.released) == 2
        batch_id = app.get_workflow(ids[0]).batch_id
        batch = app.repository.get(UUID(batch_id))
        assert batch.members == [str(i) for i in ids[:2]]
        assert app.get_workflow(ids[2]).waiting_reason == "queued: batch full (NORMAL priority)"
        assert len(r.release_once().released) == 2
        assert len(r.release_once().released) == 1

    def test_old_low_priority_work_is_released_before_a_stream_of_high(self, app, clock):
        low = waveless(app, "LOW", batch_size=1)
        clock.advance(seconds=61)
        highs = [waveless(app, "HIGH", batch_size=1) for _ in range(3)]
        plan = releaser(app, [low, *highs], clock, adaptive=False).release_once()
        assert released_ids(plan) == [low]

    def test_least_slack_goes_first_within_a_priority(self, app, clock):
        relaxed = waveless(app, batch_size=1, cut_off=clock.now + timedelta(hours=4))
        urgent = waveless(app, batch_size=1, cut_off=clock.now + timedelta(minutes=10))
        plan = releaser(app, [relaxed, urgent], clock, adaptive=False).release_once()
        assert released_ids(plan) == [urgent]

    def test_a_cut_off_urgency_releases_a_normal_order_near_its_cut_off_before_high(
            self, app, clock):
        def window() -> tuple[UUID, UUID]:
            return (waveless(app, "HIGH", batch_size=1, cut_off=clock.now + timedelta(hours=4)),
                    waveless(app, batch_size=1, cut_off=clock.now + timedelta(minutes=2)))

        far, near = window()
        plan = releaser(app, [far, near], clock, adaptive=False).release_once()
        assert released_ids(plan) == [far]
        far, near = window()
        plan = releaser(app, [far, near], clock, adaptive=False,
                        cutoff_urgency_ms=5 * 60_000).release_once()
        assert released_ids(plan) == [near]
        assert app.get_workflow(far).status == WorkflowStatus.PENDING

    def test_a_workflow_that_cannot_make_its_cut_off_is_flagged_late(self, app, clock):
        blocker = waveless(app, "HIGH", batch_size=1)
        doomed = waveless(app, batch_size=1, cut_off=clock.now + timedelta(milliseconds=100))
        releaser(app, [blocker, doomed], clock, adaptive=False).release_once()
        wf = app.get_workflow(doomed)
        assert wf.late is True and "MarkedLate" in event_types(app, doomed)


class TestLanes:
    """Workflows enabled with different settings are released at their own size and pace."""

    def test_each_setting_gets_batches_of_its_own_size(self, app, clock):
        singles = [waveless(app, batch_size=1) for _ in range(3)]
        triples = [waveless(app, batch_size=3) for _ in range(4)]
        plan = releaser(app, [*singles, *triples], clock, adaptive=False).release_once()
        assert released_ids(plan) == [singles[0], *triples[:3]]
        sizes = sorted((b.batch_size, len(b.members)) for b in recorded_batches(app, released_ids(plan)))
        assert sizes == [(1, 1), (3, 3)]
        assert app.get_workflow(triples[3]).waiting_reason == "queued: batch full (NORMAL priority)"

    def test_a_lane_is_released_again_only_when_its_own_interval_has_passed(self, app, clock):
        fast = [waveless(app, batch_size=1, interval_ms=200) for _ in range(3)]
        slow = [waveless(app, batch_size=1, interval_ms=1000) for _ in range(3)]
        r = releaser(app, [*fast, *slow], clock, adaptive=False)
        assert released_ids(r.release_once(due_only=True)) == [fast[0], slow[0]]
        assert r.interval_ms == 200  # until the fast lane is due again
        clock.advance(milliseconds=200)
        assert released_ids(r.release_once(due_only=True)) == [fast[1]]
        clock.advance(milliseconds=200)
        assert released_ids(r.release_once(due_only=True)) == [fast[2]]
        assert r.interval_ms == 600  # the fast lane is empty: the slow one is next
        clock.advance(milliseconds=600)
        assert released_ids(r.release_once(due_only=True)) == [slow[1]]

    def test_a_lane_held_back_by_a_cap_is_not_starved_by_a_faster_lane(self, app, clock):
        urgent = waveless(app, "HIGH", batch_size=10, interval_ms=60_000)
        clock.advance(seconds=61)  # waited past the ageing limit
        stream = [waveless(app, "LOW", batch_size=10, interval_ms=100) for _ in range(3)]
        in_flight = {"warehouse-service": 1}
        r = releaser(app, [urgent, *stream], clock, adaptive=False, in_flight=in_flight,
                     wip_caps={"warehouse-service": 1})
        assert released_ids(r.release_once(due_only=True)) == []  # both lanes capped
        assert r.interval_ms == 100
        clock.advance(milliseconds=100)
        in_flight["warehouse-service"] = 0  # a slot frees: the aged HIGH work takes it
        assert released_ids(r.release_once(due_only=True)) == [urgent]

    def test_an_idle_loop_wakes_at_the_pace_of_a_lane_it_has_just_served(self, app, clock):
        quick = waveless(app, batch_size=5, interval_ms=100)
        r = releaser(app, [quick], clock)
        assert released_ids(r.release_once(due_only=True)) == [quick]
        assert r.interval_ms == 100  # not the idle 2 s: its next workflow is due soon

    def test_an_interval_below_the_floor_is_rejected_and_changes_nothing(self, app, clock):
        wf_id = app.start_workflow(steps=STEPS, input={"orderId": "x"}).workflow_id
        before = event_types(app, wf_id)
        with pytest.raises(InvalidValue, match="interval_ms"):
            app.enable_waveless(wf_id, interval_ms=10)
        assert event_types(app, wf_id) == before

    def test_lanes_share_the_work_in_progress_caps(self, app, clock):
        first = waveless(app, "HIGH", batch_size=2)
        second = waveless(app, batch_size=5)
        in_flight = {"warehouse-service": 0}
        signals = LoadSignals(pending=lambda: [first, second], in_flight=lambda: in_flight)
        r = Releaser(app, signals, WavelessSettings(adaptive=False,
                                                    wip_caps={"warehouse-service": 1}), clock=clock,
                     timer=lambda: clock.now.timestamp())
        assert released_ids(r.release_once()) == [first]
        assert app.get_workflow(second).waiting_reason == "cap reached: warehouse-service"

    def test_the_settings_default_to_the_configured_ones(self, db):
        settings = Settings.from_env({"WES_WAVELESS_BATCH_SIZE": "4",
                                      "WES_WAVELESS_INTERVAL_MS": "250"})
        container = Container.build(settings, db=db)
        try:
            app = container.workflows
            wf_id = app.start_workflow(steps=STEPS, waveless=True).workflow_id
            assert app.get_workflow(wf_id).waveless == {"batch_size": 4, "interval_ms": 250}
        finally:
            container.close()

    @pytest.mark.parametrize("env", [{"WES_WAVELESS_BATCH_SIZE": "0"},
                                     {"WES_WAVELESS_INTERVAL_MS": "10"}])
    def test_a_default_no_release_could_honour_is_refused_at_start(self, env):
        with pytest.raises(ConfigurationError, match="WES_WAVELESS_BATCH_SIZE must be >= 1"):
            Settings.from_env(env)


def recorded_batches(app: Workflows, ids: list[UUID]) -> list[Any]:
    return [app.repository.get(UUID(b)) for b in {app.get_workflow(i).batch_id for i in ids}]


class TestWorkInProgressCaps:
    def test_a_service_at_its_cap_holds_release_back_until_it_has_room(self, app, clock):
        ids = [waveless(app) for _ in range(3)]
        in_flight = {"warehouse-service": 4}
        signals = LoadSignals(pending=lambda: ids, in_flight=lambda: in_flight)
        r = Releaser(app, signals, WavelessSettings(batch_size=10, adaptive=False,
                                                    wip_caps={"warehouse-service": 5}),
                     clock=clock)
        assert len(r.release_once().released) == 1
        assert app.get_workflow(ids[1]).waiting_reason == "cap reached: warehouse-service"
        in_flight["warehouse-service"] = 5
        assert r.release_once().released == ()
        in_flight["warehouse-service"] = 0
        assert len(r.release_once().released) == 2

    def test_release_pauses_while_the_services_are_overloaded(self, app, clock):
        wf_id = waveless(app)
        signals = LoadSignals(pending=lambda: [wf_id], load=lambda: (96.0, 0.0))
        plan = Releaser(app, signals, WavelessSettings(), clock=clock).release_once()
        assert plan.released == () and plan.paused_reason is not None
        assert app.get_workflow(wf_id).waiting_reason.startswith("release paused")


class TestConcurrentReleasers:
    def test_two_releasers_never_admit_a_workflow_twice(self, app, db):
        ids = [waveless(app) for _ in range(30)]
        signals = LoadSignals(pending=lambda: ids)
        releasers = [Releaser(app, signals, WavelessSettings(batch_size=7, adaptive=False))
                     for _ in range(2)]
        barrier = threading.Barrier(2)

        def run(r: Releaser) -> None:
            barrier.wait()
            for _ in range(8):
                r.release_once()

        threads = [threading.Thread(target=run, args=(r,)) for r in releasers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for wf_id in ids:
            types = event_types(app, wf_id)
            assert types.count("ReleasedInBatch") == 1 and types.count("Started") == 1

    def test_only_one_process_holds_the_release_lock(self, db):
        first = LeaderLock(db.conninfo, "waveless", retry_seconds=0)
        second = LeaderLock(db.conninfo, "waveless", retry_seconds=0)
        assert first.acquire() and first.acquire()
        assert not second.acquire()
        first.release()
        assert second.acquire()
        second.release()

    def test_a_process_without_the_lock_holds_no_connection_and_waits_to_retry(self, db):
        first = LeaderLock(db.conninfo, "waveless-standby")
        second = LeaderLock(db.conninfo, "waveless-standby", retry_seconds=60)
        assert first.acquire()
        assert not second.acquire()
        assert second._conn is None
        first.release()
        assert not second.acquire()  # not before its retry time: no connection attempt
        first.release()


class TestBadInput:
    def test_cut_off_urgency_comes_from_its_setting(self):
        assert Settings.from_env({}).waveless_cutoff_urgency_ms is None
        env = {"WES_WAVELESS_CUTOFF_URGENCY_MS": "300000"}
        assert Settings.from_env(env).waveless_cutoff_urgency_ms == 300_000

    @pytest.mark.parametrize("raw", ["-1", "soon"])
    def test_an_invalid_cut_off_urgency_setting_is_refused(self, raw):
        with pytest.raises(ConfigurationError, match="WES_WAVELESS_CUTOFF_URGENCY_MS"):
            Settings.from_env({"WES_WAVELESS_CUTOFF_URGENCY_MS": raw})

    def test_a_negative_cut_off_urgency_is_rejected(self):
        with pytest.raises(InvalidValue, match="cutoff_urgency_ms"):
            WavelessSettings(cutoff_urgency_ms=-1)

    def test_batch_size_zero_is_rejected(self):
        with pytest.raises(InvalidValue, match="batch_size"):
            WavelessSettings(batch_size=0)

    def test_negative_wip_cap_is_rejected(self):
        with pytest.raises(InvalidValue, match="wip_caps"):
            WavelessSettings(wip_caps={"warehouse-service": -1})

    def test_enabling_waveless_on_a_non_capable_type_changes_nothing(self, app):
        wf_id = app.start_workflow(steps=STEPS, workflow_type="CYCLE_COUNT").workflow_id
        before = event_types(app, wf_id)
        with pytest.raises(Exception, match="waveless-capable"):
            app.enable_waveless(wf_id)
        assert event_types(app, wf_id) == before
