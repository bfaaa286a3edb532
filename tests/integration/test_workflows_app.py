"""The Workflows application on real PostgreSQL: persistence, replay, concurrency,
snapshots, definitions, and rejected commands that leave the event store untouched."""

from __future__ import annotations

import itertools
import threading
import uuid
from datetime import timedelta

import pytest

from application.errors import ConcurrencyConflict, DefinitionNotFound, WorkflowNotFound
from application.load_balancing import LoadBalancer, UnknownInstance
from application.workflows import Workflows
from domain.definition_catalog import DefinitionVersionExists
from domain.exceptions import (
    InvalidDefinition,
    InvalidStepTransition,
    InvalidTransition,
    InvalidValue,
    StepNotFound,
)
from domain.input_schema import InvalidInput
from domain.load import LoadMetrics
from domain.step import StepResult
from domain.workflow_error import WorkflowError

ITEMS = [{"sku": "SKU-12345", "quantity": 2}]


def start(app: Workflows, **kwargs) -> uuid.UUID:
    return app.start_workflow(definition="order-fulfillment", driven_by="caller",
                              input={"orderId": "ORD-1", "items": ITEMS}, **kwargs).workflow_id


def drive_mixed_history(app: Workflows, wf_id: uuid.UUID) -> None:
    """Success, a retry, a failure and compensation, through the manual step API."""
    app.start_step(wf_id, "reserve-inventory")
    app.execute_step(wf_id, "reserve-inventory",
                     StepResult.success("reserve-inventory", {"reservationId": "R1"}, 12))
    app.start_step(wf_id, "assign-robot")
    app.handle_step_failure(wf_id, "assign-robot", WorkflowError.create(
        "assign-robot", "robotics-service", "BUSY", "robots busy", "SERVICE_UNAVAILABLE", True))
    app.start_step(wf_id, "assign-robot")
    app.execute_step(wf_id, "assign-robot",
                     StepResult.success("assign-robot", {"robotId": "B7"}, 30))
    app.start_step(wf_id, "pick-items")
    app.handle_step_failure(wf_id, "pick-items", WorkflowError.create(
        "pick-items", "warehouse-service", "DAMAGED", "item damaged",
        "BUSINESS_RULE_VIOLATION", False))
    app.mark_step_compensated(wf_id, "assign-robot", {"unassigned": True})
    app.mark_step_compensated(wf_id, "reserve-inventory", {"released": True})
    app.complete_compensation(wf_id)


class TestPersistence:
    def test_events_are_stored_and_folded_back_into_equal_state(self, app, db):
        wf_id = start(app)
        drive_mixed_history(app, wf_id)
        live = app.get_workflow(wf_id)
        fresh = Workflows(env=db.env())
        try:
            reloaded = fresh.get_workflow(wf_id)
        finally:
            fresh.close()
        assert reloaded.snapshot_state() == live.snapshot_state()
        assert reloaded.status == "COMPENSATED"
        assert reloaded.compensated_steps == ["assign-robot", "reserve-inventory"]

    def test_state_at_each_version_equals_folding_that_many_events(self, app):
        wf_id = start(app)
        drive_mixed_history(app, wf_id)
        events = list(app.events.get(wf_id))
        for n in range(1, len(events) + 1):
            folded = None
            for event in events[:n]:
                folded = event.mutate(folded)
            assert app.state_at(wf_id, version=n).snapshot_state() == folded.snapshot_state()

    def test_state_at_a_time_is_the_state_after_the_last_event_before_it(self, app):
        wf_id = start(app)
        drive_mixed_history(app, wf_id)
        history = app.history(wf_id)
        for moment in [e.timestamp for e in history] + [history[-1].timestamp + timedelta(days=1)]:
            state = app.state_at(wf_id, at=moment)
            assert state.version == sum(1 for e in history if e.timestamp <= moment)
        with pytest.raises(InvalidValue, match="did not exist yet"):
            app.state_at(wf_id, at=history[0].timestamp - timedelta(seconds=1))

    @pytest.mark.parametrize("events_per_save", [1, 5])
    def test_a_snapshot_is_taken_every_50_versions_and_equals_the_fold(self, app, events_per_save):
        wf_id = start(app)
        while (wf := app.get_workflow(wf_id)).version < 53:
            for _ in range(events_per_save):  # five: one save steps over version 50
                if wf.status == "PAUSED":
                    wf.resume(app.clock())
                else:
                    wf.pause(app.clock(), "toggle", "operator")
            app.save_workflow(wf)
        snapshots = list(app.snapshots.get(wf_id))
        assert [s.originator_version for s in snapshots] == [50]
        folded = None
        for event in list(app.events.get(wf_id))[:50]:
            folded = event.mutate(folded)
        assert snapshots[0].mutate(None).snapshot_state() == folded.snapshot_state()

    def test_saves_past_version_50_work_with_snapshotting_switched_off(self, db):
        app = Workflows(env={**db.env(), "IS_SNAPSHOTTING_ENABLED": "n"})
        try:
            app.ensure_builtin_definitions()
            wf_id = start(app)
            for _ in range(26):
                app.pause(wf_id, "toggle")
                app.resume(wf_id)
            assert app.snapshots is None and app.get_workflow(wf_id).version == 54
        finally:
            app.close()

    def test_state_at_a_time_follows_the_stream_when_a_clock_lags(self, app):
        wf_id = start(app)
        real = app.clock
        app.pause(wf_id, "first")
        app.clock = lambda: real() - timedelta(minutes=5)  # another process, behind
        app.resume(wf_id)
        app.clock = real
        history = app.history(wf_id)
        times = [e.timestamp for e in history]
        assert times == sorted(times)
        # The resume was decided five minutes "earlier": it is stamped with the pause's time.
        assert history[-1].timestamp == history[-2].timestamp
        state = app.state_at(wf_id, at=history[-2].timestamp)
        assert (state.version, state.status) == (len(history), "EXECUTING")

    def test_history_carries_positions_in_global_order(self, app):
        wf_id = start(app)
        drive_mixed_history(app, wf_id)
        positions = [e.position for e in app.history(wf_id)]
        assert positions == sorted(positions) and len(set(positions)) == len(positions)

    def test_a_snapshot_plus_later_events_equals_a_full_replay(self, app, db):
        wf_id = start(app)
        drive_mixed_history(app, wf_id)
        app.take_snapshot(wf_id, version=8)
        snapshots = list(app.snapshots.get(wf_id))
        assert [s.originator_version for s in snapshots] == [8]
        from_snapshot = app.repository.get(wf_id)
        full = None
        for event in app.events.get(wf_id):
            full = event.mutate(full)
        assert from_snapshot.snapshot_state() == full.snapshot_state()
        # The engine's load (snapshot and later events in one statement) agrees.
        assert app.get_workflow(wf_id).snapshot_state() == full.snapshot_state()
        assert app.state_at(wf_id, version=10).snapshot_state() == app.repository.get(
            wf_id, version=10).snapshot_state()

    def test_long_histories_are_snapshotted_automatically(self, app):
        wf_id = start(app)
        for i in range(30):
            app.pause(wf_id, reason=f"check {i}")
            app.resume(wf_id)
        assert [s.originator_version for s in app.snapshots.get(wf_id)] == [50]
        assert app.get_workflow(wf_id).version == 62


class TestAggregateCache:
    def test_a_change_saved_by_another_process_is_seen_by_the_next_load(self, app, db):
        wf_id = start(app)
        assert app.get_workflow(wf_id).status == "EXECUTING"  # now in this process's cache
        other = Workflows(env=db.env())
        try:
            other.pause(wf_id, reason="elsewhere")
        finally:
            other.close()
        assert app.get_workflow(wf_id).status == "PAUSED"
        assert app.repository.cache is not None

    def test_changing_a_loaded_workflow_without_saving_it_leaves_the_next_load_clean(self, app):
        wf_id = start(app)
        loaded = app.get_workflow(wf_id)
        loaded.pause(app.clock(), reason="never saved")
        fresh = app.get_workflow(wf_id)
        assert fresh.status == "EXECUTING" and not fresh.collect_events()
        assert fresh is not loaded

    def test_a_rejected_command_leaves_the_cached_state_as_it_was(self, app):
        wf_id = start(app)
        app.cancel(wf_id, reason="done with it")
        head = app.recorder.max_notification_id()
        with pytest.raises(InvalidTransition):
            app.resume(wf_id)
        assert app.get_workflow(wf_id).status == "CANCELLED"
        assert app.recorder.max_notification_id() == head


class TestConcurrency:
    def test_two_connections_deciding_on_the_same_version_cannot_both_win(self, app, db):
        wf_id = start(app)
        other = Workflows(env=db.env())
        try:
            mine, theirs = app.get_workflow(wf_id), other.get_workflow(wf_id)
            now = app.clock()
            mine.pause(now, reason="mine")
            theirs.cancel(now, reason="theirs")
            app.save_workflow(mine)
            with pytest.raises(ConcurrencyConflict, match=str(wf_id)):
                other.save_workflow(theirs)
        finally:
            other.close()
        assert [e.event_type for e in app.history(wf_id)][-1] == "Paused"

    def test_concurrent_commands_are_retried_on_fresh_state_and_none_is_lost(self, app, db):
        wf_id = start(app)
        apps = [Workflows(env=db.env()) for _ in range(4)]
        barrier = threading.Barrier(4)
        errors: list[Exception] = []

        def flip(workflows: Workflows) -> None:
            barrier.wait()
            for _ in range(5):
                try:
                    wf = workflows.get_workflow(wf_id)
                    if wf.status == "PAUSED":
                        workflows.resume(wf_id)
                    else:
                        workflows.pause(wf_id)
                except (InvalidTransition, ConcurrencyConflict):
                    continue  # the fresh state forbade it, or others kept winning
                except Exception as e:  # pragma: no cover - reported below
                    errors.append(e)

        threads = [threading.Thread(target=flip, args=(w,)) for w in apps]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for w in apps:
            w.close()
        assert errors == []
        types = [e.event_type for e in app.history(wf_id)][2:]
        # Strictly alternating: no pause was recorded twice, none overwrote another.
        assert all(a != b for a, b in itertools.pairwise(types))
        assert [e.version for e in app.history(wf_id)] == list(range(1, len(types) + 3))


class TestRejectedCommandsChangeNothing:
    @pytest.mark.parametrize("command", [
        lambda app, wf: app.resume(wf),
        lambda app, wf: app.complete_saga(wf),
        lambda app, wf: app.start_step(wf, "pick-items"),
        lambda app, wf: app.start_step(wf, "no-such-step"),
        lambda app, wf: app.execute_step(wf, "reserve-inventory",
                                         StepResult.success("reserve-inventory", {}, 1)),
        lambda app, wf: app.complete_compensation(wf),
        lambda app, wf: app.retry_compensation(wf),
        lambda app, wf: app.enable_waveless(wf, batch_size=0),
    ])
    def test_an_invalid_command_raises_and_records_nothing(self, app, command):
        wf_id = start(app)
        head = app.recorder.max_notification_id()
        with pytest.raises((InvalidTransition, InvalidStepTransition, StepNotFound,
                            InvalidValue)):
            command(app, wf_id)
        assert app.recorder.max_notification_id() == head

    def test_an_unknown_workflow_is_not_found(self, app):
        missing = uuid.uuid4()
        head = app.recorder.max_notification_id()
        for command in (app.pause, app.resume, app.retry, app.get_workflow, app.history):
            with pytest.raises(WorkflowNotFound, match=str(missing)):
                command(missing)
        assert app.recorder.max_notification_id() == head

    @pytest.mark.parametrize("kwargs", [
        {"priority": "URGENT"}, {"max_retries": -1}, {"definition": "no-such"},
        {"definition": "order-fulfillment", "version": 99},
        {"steps": [{"step_id": "a", "service": "s", "operation": "o",
                    "retry_policy": {"multiplier": 0.5}}]},
        {"steps": [{"step_id": "a", "service": "s", "operation": "o",
                    "retry_policy": {"initial_delay_ms": 5000, "max_delay_ms": 10}}]},
        {"input": {}}, {"input": {"orderId": "O", "items": [{"sku": "S", "quantity": 0}]}},
    ])
    def test_invalid_starts_are_rejected_and_record_nothing(self, app, kwargs):
        head = app.recorder.max_notification_id()
        kwargs.setdefault("definition", None if "steps" in kwargs else "order-fulfillment")
        kwargs.setdefault("input", {"orderId": "ORD-1"})
        with pytest.raises((InvalidValue, InvalidDefinition, DefinitionNotFound, InvalidInput)):
            app.start_workflow(**kwargs)
        assert app.recorder.max_notification_id() == head

    def test_metrics_for_an_unknown_instance_are_rejected_and_record_nothing(self, app):
        balancer = LoadBalancer(app, {"inventory-service": ["http://inv-01"]})
        head = app.recorder.max_notification_id()
        with pytest.raises(UnknownInstance, match="http://inv-02"):
            balancer.report_metrics(LoadMetrics.snapshot(
                "http://inv-02", "inventory-service", 10, 10, 1, 1, 10, 0))
        assert app.recorder.max_notification_id() == head


class TestDefinitions:
    def test_versions_are_kept_and_a_running_workflow_keeps_its_version(self, app):
        latest = app.get_definition("order-fulfillment")
        data = latest.to_dict() | {"version": 3}
        data["steps"] = data["steps"][:2]
        app.register_definition(data)
        assert app.get_definition("order-fulfillment").version == 3
        assert [d.version for d in app.list_definitions()
                if d.name == "order-fulfillment"] == [1, 2, 3]
        old = start(app, version=1)
        assert len(app.get_workflow(old).steps) == 4
        assert app.get_workflow(old).definition_version == 1

    def test_a_changed_definition_needs_a_new_version(self, app):
        data = app.get_definition("order-fulfillment").to_dict()
        data["steps"] = data["steps"][:1]
        head = app.recorder.max_notification_id()
        with pytest.raises(DefinitionVersionExists):
            app.register_definition(data)
        assert app.recorder.max_notification_id() == head

    def test_a_definition_another_process_registers_is_seen_at_once(self, app, db):
        app.get_definition("order-fulfillment")  # this process has read the catalog
        other = Workflows(env=db.env())
        try:
            data = other.get_definition("order-fulfillment").to_dict() | {"version": 3}
            data["steps"] = data["steps"][:1]
            other.register_definition(data)
            other.register_definition(data | {"name": "single-pick", "version": 1})
        finally:
            other.close()
        assert app.get_definition("order-fulfillment").version == 3
        assert app.get_definition("order-fulfillment", 1).version == 1
        assert len(app.get_definition("single-pick").steps) == 1
        wf_id = app.start_workflow(definition="single-pick", input={"orderId": "o-1"}).workflow_id
        assert app.get_workflow(wf_id).definition_id == "single-pick"

    def test_registering_the_same_version_again_is_idempotent(self, app):
        head = app.recorder.max_notification_id()
        _definition, position = app.register_definition(
            app.get_definition("order-fulfillment").to_dict())
        assert position is None and app.recorder.max_notification_id() == head


class TestIdempotentStart:
    def test_the_same_key_returns_the_same_workflow(self, app):
        first = app.start_workflow(definition="order-fulfillment", idempotency_key="k-1",
                                   input={"orderId": "A", "items": ITEMS})
        second = app.start_workflow(definition="order-fulfillment", idempotency_key="k-1",
                                    input={"orderId": "A", "items": ITEMS})
        assert first.created and not second.created
        assert first.workflow_id == second.workflow_id
        assert len(app.workflow_ids()) == 1


class TestWorkQueue:
    def test_the_work_queue_is_rebuilt_exactly_from_the_events(self, app):
        running = app.start_workflow(definition="order-fulfillment",
                                     input={"orderId": "Q1", "items": ITEMS}).workflow_id
        paused = app.start_workflow(definition="order-fulfillment",
                                    input={"orderId": "Q2", "items": ITEMS}).workflow_id
        app.pause(paused)
        start(app)  # caller-driven: never queued
        assert app.store.work_queue.size() == 1
        app.store.work_queue.replace([])
        assert app.store.work_queue.size() == 0
        assert app.rebuild_work_queue() == 1
        claims = app.store.work_queue.claim("test", app.clock(), 10, 1.0)
        assert [c.workflow_id for c in claims] == [running]


class TestBuiltinDefinitionsAtBoot:
    def test_a_sites_own_version_is_kept_and_boot_goes_on_idempotently(self, db, caplog):
        from application.builtin_definitions import ORDER_FULFILLMENT_V1
        from application.settings import Settings
        from bootstrap.container import Container

        site = Workflows(env=db.env())
        try:  # an older release shipped only version 1; the site added its own version 2
            site.register_definition(ORDER_FULFILLMENT_V1, check=False)
            own = dict(ORDER_FULFILLMENT_V1, version=2, steps=ORDER_FULFILLMENT_V1["steps"][:1])
            site.register_definition(own, check=False)
        finally:
            site.close()
        heads = []
        for _boot in range(2):
            caplog.clear()
            with caplog.at_level("WARNING", logger="application.workflows"):
                container = Container.build(Settings(), db=db)
            try:
                head = container.workflows.recorder.max_notification_id()
                kept = container.workflows.get_definition("order-fulfillment", 2)
                assert [s.step_id for s in kept.steps] == ["reserve-inventory"]
                assert container.workflows.get_definition("order-fulfillment").version == 2
                skipped = [r for r in caplog.records if "skipped" in r.getMessage()]
                assert [(r.definition, r.version) for r in skipped] == [("order-fulfillment", 2)]
                heads.append(head)
            finally:
                container.close()
        assert heads[0] == heads[1]  # the second boot recorded nothing
