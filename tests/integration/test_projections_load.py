"""The load read model: per service and instance, on real PostgreSQL."""

from __future__ import annotations

from uuid import UUID

import pytest

from application.database import Database
from application.workflows import Workflows
from domain.load import LoadMetrics
from domain.step import StepResult
from domain.system_load import RebalancingLog, SystemLoad
from domain.workflow_error import WorkflowError
from projections.load import LoadRow
from tests.support.projection_history import (
    ASSIGN,
    RESERVE,
    Projected,
    live_projection,
    run_step,
    start,
    timeout,
)


def counters(rows: list[LoadRow]) -> dict[tuple[str, str], tuple[int, int, int, int]]:
    return {(r.service, r.instance): (r.in_flight, r.queued, r.completed, r.failed)
            for r in rows}


class TestStepLoad:
    def test_counters_per_service_after_the_mixed_history(self, projected: Projected) -> None:
        # (in flight, queued, completed, failed): the retried workflow has assign in flight,
        # the resumed one waits to assign; the compensated one's pick failed for good.
        assert counters(projected.models.load.list()) == {
            ("inventory-service", "inventory-service"): (0, 0, 5, 1),
            ("robotics-service", "robotics-service"): (1, 1, 2, 0),
            ("warehouse-service", "warehouse-service"): (0, 0, 1, 1),
            ("packing-service", "packing-service"): (0, 0, 1, 0),
        }

    def test_durations_and_error_rate_over_the_window(self, projected: Projected) -> None:
        rows = {r.service: r for r in projected.models.load.list()}
        inventory = rows["inventory-service"]
        # Successful reserves took 10, 50 (after the retry), 10, 10 and 10 ms.
        assert inventory.avg_duration_ms == pytest.approx(18.0)
        assert inventory.p95_duration_ms == pytest.approx(42.0)  # interpolated, as p95 is
        assert inventory.error_rate == pytest.approx(1 / 6)
        assert (rows["robotics-service"].avg_duration_ms, rows["robotics-service"].error_rate) \
            == (20.0, 0.0)
        assert rows["warehouse-service"].error_rate == 0.5
        assert rows["packing-service"].p95_duration_ms == 40.0

    def test_outside_the_window_there_are_no_durations(self, projected: Projected) -> None:
        rows = projected.models.load.list(window_seconds=0.0)
        assert {(r.avg_duration_ms, r.p95_duration_ms, r.error_rate) for r in rows} == {
            (None, None, None)}
        assert counters(rows) == counters(projected.models.load.list())
        assert {r.window_seconds for r in rows} == {0.0}


def instances_history(app: Workflows) -> dict[str, UUID]:
    """Outcomes reported by named instances, metrics, a circuit change, a rebalancing."""
    workflow_id = start(app, "ORD-inst")
    app.start_step(workflow_id, RESERVE)
    wf = app.get_workflow(workflow_id)
    wf.record_step_result(RESERVE, StepResult.success(RESERVE, {"reservationId": "R"}, 25),
                          app.clock(), instance="inventory-2")
    app.save_workflow(wf)
    app.start_step(workflow_id, ASSIGN)
    wf = app.get_workflow(workflow_id)
    wf.handle_step_failure(ASSIGN, timeout(ASSIGN), app.clock(), instance="robotics-1",
                           duration_ms=5000)
    app.save_workflow(wf)
    now = app.clock()
    load = SystemLoad.register("inventory-2", "inventory-service", now)
    load.report(LoadMetrics("inventory-2", "inventory-service", 50.0, 40.0, 3, 100, 25.0,
                            0.1), now)
    load.change_circuit("OPEN", now, failure_rate=0.6)
    rebalancing = RebalancingLog.start(now)
    rebalancing.record("inventory-service", {"inventory-1": 0.75, "inventory-2": 0.25},
                       {"inventory-1": 20.0, "inventory-2": 33.0}, "spread above 30",
                       "operator", now)
    app.save(load, rebalancing)
    run_step(app, start(app, "ORD-other"), RESERVE)
    return {"workflow": workflow_id}


class TestInstances:
    def test_outcomes_metrics_circuit_and_shares_land_on_the_instance(
            self, server: Database) -> None:
        with live_projection(server, instances_history) as done:
            rows = {(r.service, r.instance): r for r in done.models.load.list()}
            assert counters(list(rows.values())) == {
                ("inventory-service", "inventory-service"): (0, 0, 1, 0),
                ("inventory-service", "inventory-1"): (0, 0, 0, 0),
                ("inventory-service", "inventory-2"): (0, 0, 1, 0),
                ("robotics-service", "robotics-service"): (0, 2, 0, 0),
                ("robotics-service", "robotics-1"): (0, 0, 0, 1),
            }
            inventory_2 = rows[("inventory-service", "inventory-2")]
            assert inventory_2.avg_duration_ms == 25.0
            assert inventory_2.load_score == pytest.approx(50 * 0.3 + 40 * 0.3 + 10 * 0.2
                                                           + 0.1 * 100 * 0.2)
            assert inventory_2.metrics is not None
            assert (inventory_2.metrics["queue_depth"], inventory_2.metrics["source"]) == (
                100, "reported")
            assert (inventory_2.circuit_state, inventory_2.target_share) == ("OPEN", 0.25)
            assert inventory_2.rebalanced_at is not None and inventory_2.metrics_at is not None
            assert rows[("inventory-service", "inventory-1")].target_share == 0.75
            assert rows[("robotics-service", "robotics-1")].error_rate == 1.0


def routed_history(app: Workflows) -> dict[str, UUID]:
    """One step in flight on a named instance, another started there and answered."""
    answered = start(app, "ORD-answered")
    wf = app.get_workflow(answered)
    wf.start_step(RESERVE, app.clock(), instance="inventory-2")
    app.save_workflow(wf)
    wf.record_step_result(RESERVE, StepResult.success(RESERVE, {"reservationId": "R"}, 5),
                          app.clock(), instance="inventory-2")
    app.save_workflow(wf)
    in_flight = start(app, "ORD-in-flight")
    wf = app.get_workflow(in_flight)
    wf.start_step(RESERVE, app.clock(), instance="inventory-2")
    app.save_workflow(wf)
    return {"answered": answered, "in_flight": in_flight}


class TestRouting:
    def test_a_step_in_flight_counts_on_the_instance_its_start_names(
            self, server: Database) -> None:
        with live_projection(server, routed_history) as done:
            rows = counters(done.models.load.list())
            assert rows[("inventory-service", "inventory-2")] == (1, 0, 1, 0)
            # The answered workflow's next step waits, not yet bound to an instance.
            assert rows[("robotics-service", "robotics-service")] == (0, 1, 0, 0)
            assert rows.get(("inventory-service", "inventory-service"), (0, 0, 0, 0))[0] == 0


def unresolvable_history(app: Workflows) -> dict[str, UUID]:
    """A step whose input cannot resolve fails before any call, as the engine records it;
    another workflow's step fails at a named instance."""
    never_called = start(app, "ORD-unresolvable")
    wf = app.get_workflow(never_called)
    error = WorkflowError.create(RESERVE, "inventory-service", "INPUT_MAPPING_FAILED",
                                 "${input.noSuchField}: no 'noSuchField'", "VALIDATION_ERROR",
                                 False)
    wf.handle_step_failure(RESERVE, error, app.clock())
    app.save_workflow(wf)
    called = start(app, "ORD-called")
    app.start_step(called, RESERVE)
    wf = app.get_workflow(called)
    wf.handle_step_failure(RESERVE, timeout(RESERVE), app.clock(), instance="inventory-1",
                           duration_ms=5000)
    app.save_workflow(wf)
    return {"never_called": never_called, "called": called}


class TestOnlyRealInstances:
    def test_a_failure_that_reached_no_instance_counts_nowhere(self, server: Database) -> None:
        with live_projection(server, unresolvable_history) as done:
            rows = {(r.service, r.instance): r for r in done.models.load.list()}
            assert done.app.get_workflow(
                done.ids["never_called"]).step(RESERVE).last_error.code == "INPUT_MAPPING_FAILED"
            failing = {key: (r.failed, r.error_rate) for key, r in rows.items() if r.failed}
            assert failing == {("inventory-service", "inventory-1"): (1, 1.0)}
            service_row = rows.get(("inventory-service", "inventory-service"))
            assert service_row is None or service_row.error_rate is None


def deadline_history(app: Workflows) -> dict[str, UUID]:
    """A step started on a named instance fails at the engine's deadline (no instance named
    by the failure), and another one is failed by an operator while running."""
    timed_out = start(app, "ORD-deadline")
    wf = app.get_workflow(timed_out)
    wf.start_step(RESERVE, app.clock(), instance="inventory-2")
    app.save_workflow(wf)
    wf.handle_step_failure(RESERVE, timeout(RESERVE), app.clock())
    app.save_workflow(wf)
    failed = start(app, "ORD-failed-running")
    wf = app.get_workflow(failed)
    wf.start_step(RESERVE, app.clock(), instance="inventory-2")
    app.save_workflow(wf)
    wf.fail(WorkflowError.create(RESERVE, "inventory-service", "OPERATOR_FAILED", "stop",
                                 "VALIDATION_ERROR", False), app.clock(), "operator")
    app.save_workflow(wf)
    return {"timed_out": timed_out, "failed": failed}


class TestFailuresOfAStartedStep:
    def test_count_on_the_instance_the_step_started_on(self, server: Database) -> None:
        with live_projection(server, deadline_history) as done:
            rows = {(r.service, r.instance): r for r in done.models.load.list()}
            failing = {key: r.failed for key, r in rows.items() if r.failed}
            assert failing == {("inventory-service", "inventory-2"): 2}
            assert rows[("inventory-service", "inventory-2")].error_rate == 1.0
