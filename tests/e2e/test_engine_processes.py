"""The engine end to end: real `wes worker` processes, real HTTP services, real PostgreSQL.

Workers are separate processes; the simulated warehouse services run over HTTP; tests
kill workers with SIGKILL and check, from the event streams and the services' call logs,
that every step outcome was recorded exactly once.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from uuid import UUID

import pytest

from application.workflows import Workflows
from simulator.client import SimulatorClient
from tests.support.processes import kill9, output, spawn_worker, stop
from tests.support.waiting import event_types, wait_for, wait_for_status

ITEMS = [{"sku": "SKU-12345", "quantity": 2}]
TERMINAL = ("COMPLETED", "COMPENSATED", "CANCELLED", "COMPENSATION_FAILED")


def start(app: Workflows, order: str, **kwargs) -> UUID:
    return app.start_workflow(definition="order-fulfillment",
                              input={"orderId": order, "items": ITEMS},
                              correlation_id=f"ord-{order}", **kwargs).workflow_id


def step_running(app: Workflows, workflow_id: UUID, step_id: str) -> bool:
    """The engine records StepStarted before it calls the service."""
    return app.get_workflow(workflow_id).step(step_id).status == "EXECUTING"


def outcomes(app: Workflows, workflow_id: UUID) -> Counter[tuple[str, str, int]]:
    """(event type, step, attempt) of every recorded step outcome."""
    return Counter((e.event_type, e.data["step_id"], e.data["attempt"])
                   for e in app.history(workflow_id)
                   if e.event_type in ("StepExecuted", "StepFailed"))


@pytest.fixture
def workers(app: Workflows, db, simulator: SimulatorClient) -> Iterator[list]:
    processes = [spawn_worker(db, simulator.base_url) for _ in range(2)]
    yield processes
    for process in processes:
        stop(process)


class TestSagaThroughWorkerProcesses:
    def test_completes_the_order_fulfillment_saga(self, app, workers, simulator):
        wf_id = start(app, "ORD-OK")
        wf = wait_for_status(app, wf_id, "COMPLETED", timeout=30)
        calls = simulator.calls(order_id="ORD-OK")
        assert [(c["service"], c["operation"]) for c in calls] == [
            ("inventory-service", "reserve"), ("robotics-service", "assign"),
            ("warehouse-service", "pick"), ("packing-service", "pack")]
        assert calls[0]["idempotency_key"] == f"{wf_id}:reserve-inventory"
        assert calls[0]["attempt"] == 1
        assert wf.step("assign-robot").output["robotId"]

    def test_retries_a_failing_call_after_the_backoff_and_completes(self, app, workers,
                                                                    simulator):
        simulator.add_fault("warehouse-service", "recoverable", "pick", count=1,
                            match={"orderId": "ORD-RETRY"})
        wf_id = start(app, "ORD-RETRY")
        wait_for_status(app, wf_id, "COMPLETED", timeout=30)
        history = app.history(wf_id)
        scheduled = next(e for e in history if e.event_type == "StepRetryScheduled")
        assert scheduled.data["delay_ms"] == 1000
        failed = next(e for e in history if e.event_type == "StepFailed")
        second = [e for e in history if e.event_type == "StepStarted"
                  and e.data["step_id"] == "pick-items"][1]
        assert second.timestamp - failed.timestamp >= timedelta(milliseconds=1000)
        assert failed.data["error"]["error_type"] == "SERVICE_UNAVAILABLE"

    def test_an_unrecoverable_failure_compensates_in_reverse_order(self, app, workers,
                                                                  simulator):
        simulator.add_fault("warehouse-service", "unrecoverable", "pick",
                            match={"orderId": "ORD-BAD"})
        wf_id = start(app, "ORD-BAD")
        wf = wait_for_status(app, wf_id, "COMPENSATED", timeout=30)
        calls = [(c["service"], c["operation"]) for c in simulator.calls(order_id="ORD-BAD")]
        assert calls == [("inventory-service", "reserve"), ("robotics-service", "assign"),
                         ("warehouse-service", "pick"), ("robotics-service", "unassign"),
                         ("inventory-service", "release")]
        assert wf.compensated_steps == ["assign-robot", "reserve-inventory"]
        failed = next(e for e in app.history(wf_id) if e.event_type == "StepFailed")
        assert failed.data["error"]["recoverable"] is False

    def test_pause_holds_the_next_step_and_resume_finishes(self, app, workers, simulator):
        simulator.add_fault("robotics-service", "latency", "assign", latency_ms=800,
                            match={"orderId": "ORD-PAUSE"})
        wf_id = start(app, "ORD-PAUSE")
        wait_for(lambda: step_running(app, wf_id, "assign-robot"), message="assign in flight")
        app.pause(wf_id, reason="aisle blocked")
        wait_for(lambda: app.get_workflow(wf_id).step("assign-robot").status == "COMPLETED",
                 timeout=10, message="assign recorded")
        time.sleep(1.0)
        assert app.get_workflow(wf_id).status == "PAUSED"
        assert not simulator.calls(order_id="ORD-PAUSE", operation="pick")
        app.resume(wf_id)
        wait_for_status(app, wf_id, "COMPLETED", timeout=30)

    def test_cancel_stops_further_steps(self, app, workers, simulator):
        simulator.add_fault("robotics-service", "latency", "assign", latency_ms=800,
                            match={"orderId": "ORD-CANCEL"})
        wf_id = start(app, "ORD-CANCEL")
        wait_for(lambda: step_running(app, wf_id, "assign-robot"), message="assign in flight")
        app.cancel(wf_id, reason="customer cancelled", compensate=True)
        wf = wait_for_status(app, wf_id, "COMPENSATED", timeout=30)
        assert not simulator.calls(order_id="ORD-CANCEL", operation="pick")
        assert wf.compensated_steps == ["assign-robot", "reserve-inventory"]


class TestCompetingWorkers:
    def test_many_workflows_on_three_workers_record_each_outcome_exactly_once(
            self, app, db, simulator):
        simulator.add_fault("inventory-service", "recoverable", "reserve", rate=0.2)
        processes = [spawn_worker(db, simulator.base_url, concurrency=4) for _ in range(3)]
        try:
            ids = [start(app, f"ORD-MANY-{i}") for i in range(60)]
            for wf_id in ids:
                wait_for_status(app, wf_id, *TERMINAL, timeout=90)
        finally:
            for process in processes:
                stop(process)
        statuses = Counter()
        for wf_id in ids:
            counted = outcomes(app, wf_id)
            assert all(n == 1 for n in counted.values()), counted
            per_attempt = Counter((step, attempt) for _, step, attempt in counted.elements())
            assert all(n == 1 for n in per_attempt.values()), counted  # one outcome each
            statuses[str(app.get_workflow(wf_id).status)] += 1
        # A 20 % failure rate can, rarely, exhaust all 3 retries of one workflow: then it
        # is compensated, which is also a correct, terminal outcome.
        assert set(statuses) <= {"COMPLETED", "COMPENSATED"}, statuses
        assert statuses["COMPLETED"] >= 55, statuses


class TestCrashes:
    def test_a_killed_worker_mid_step_is_taken_over_and_the_outcome_recorded_once(
            self, app, db, simulator):
        # The first pick call takes 3 s: long enough to kill its worker in the middle.
        simulator.add_fault("warehouse-service", "latency", "pick", latency_ms=3000, count=1,
                            match={"orderId": "ORD-CRASH"})
        victim = spawn_worker(db, simulator.base_url)
        wf_id = start(app, "ORD-CRASH")
        wait_for(lambda: step_running(app, wf_id, "pick-items"), timeout=20,
                 message="pick in flight")
        time.sleep(0.5)
        kill9(victim)
        survivor = spawn_worker(db, simulator.base_url)
        try:
            wait_for_status(app, wf_id, "COMPLETED", timeout=30)
        finally:
            stop(survivor)
        # The killed worker's call is still sleeping in the service: it is logged when it
        # finishes, after the survivor's repeat of the same attempt.
        picks = wait_for(lambda: (p := simulator.calls(order_id="ORD-CRASH", operation="pick"))
                         and len(p) == 2 and p, timeout=10, message="both pick calls logged")
        assert {(p["idempotency_key"], p["attempt"]) for p in picks} == {(f"{wf_id}:pick-items", 1)}
        assert sorted(p["repeated"] for p in picks) == [False, True]
        assert outcomes(app, wf_id)[("StepExecuted", "pick-items", 1)] == 1
        assert event_types(app, wf_id).count("StepStarted") == 4

    def test_a_call_applied_whose_outcome_was_lost_is_applied_once_through_a_retry(
            self, app, db, simulator):
        """The chaos-run case: the service applied attempt 1, its worker died before
        recording it, the re-invocation of attempt 1 met a 503, attempt 2 called again.
        Every call carries the same key, so the service answers attempt 2 with what it
        stored for attempt 1 and packs the order once."""
        order = "ORD-LOST"
        # The first pack call is held 2 s before it is applied: its worker dies meanwhile.
        simulator.add_fault("packing-service", "latency", "pack", latency_ms=2000, count=1,
                            match={"orderId": order})
        victim = spawn_worker(db, simulator.base_url)
        wf_id = app.start_workflow(steps=[{
            "step_id": "pack-items", "service": "packing-service", "operation": "pack",
            "input": {"orderId": "${input.orderId}"}, "timeout_ms": 30_000,
            "retry_policy": "default"}], input={"orderId": order}).workflow_id
        wait_for(lambda: simulator.in_flight() == 1, timeout=20, message="pack in flight")
        kill9(victim)
        # The service finishes the call its caller no longer waits for: applied, answer lost.
        [applied] = wait_for(lambda: simulator.calls(order_id=order), timeout=10,
                             message="the first pack applied")
        assert (applied["status"], applied["repeated"]) == (200, False)
        assert app.get_workflow(wf_id).step("pack-items").status == "EXECUTING"
        simulator.add_fault("packing-service", "recoverable", "pack", count=1,
                            match={"orderId": order})
        survivor = spawn_worker(db, simulator.base_url)
        try:
            wf = wait_for_status(app, wf_id, "COMPLETED", timeout=30)
        except AssertionError:
            raise AssertionError(output(survivor)) from None
        finally:
            stop(survivor)
        packs = simulator.calls(order_id=order)
        assert [(c["idempotency_key"], c["attempt"], c["status"], c["repeated"])
                for c in packs] == [
            (f"{wf_id}:pack-items", 1, 200, False),  # applied; the outcome was lost
            (f"{wf_id}:pack-items", 1, 503, False),  # the re-invocation of attempt 1
            (f"{wf_id}:pack-items", 2, 200, True),   # attempt 2: the stored answer
        ]
        assert sum(c["status"] == 200 and not c["repeated"] for c in packs) == 1
        history = app.history(wf_id)
        assert [(e.event_type, e.data["attempt"]) for e in history
                if e.event_type in ("StepStarted", "StepFailed", "StepExecuted")] == [
            ("StepStarted", 1), ("StepFailed", 1), ("StepStarted", 2), ("StepExecuted", 2)]
        assert wf.step("pack-items").output["packageId"]

    def test_a_retry_timer_survives_every_worker_stopping(self, app, db, simulator):
        simulator.add_fault("inventory-service", "recoverable", "reserve", count=2,
                            match={"orderId": "ORD-TIMER"})
        worker = spawn_worker(db, simulator.base_url)
        wf_id = start(app, "ORD-TIMER")
        # After the second failure a retry is due in 2 s (default policy: 1 s, 2 s, 4 s).
        wait_for(lambda: event_types(app, wf_id).count("StepRetryScheduled") == 2, timeout=20,
                 message="second retry scheduled")
        stop(worker)
        scheduled = [e for e in app.history(wf_id) if e.event_type == "StepRetryScheduled"][-1]
        due = scheduled.timestamp + timedelta(milliseconds=scheduled.data["delay_ms"])
        assert scheduled.data["delay_ms"] == 2000
        time.sleep(0.2)
        restarted = spawn_worker(db, simulator.base_url)
        try:
            wait_for_status(app, wf_id, "COMPLETED", timeout=30)
        except AssertionError:
            raise AssertionError(output(restarted)) from None
        finally:
            stop(restarted)
        third = [e for e in app.history(wf_id) if e.event_type == "StepStarted"
                 and e.data["step_id"] == "reserve-inventory"][2]
        assert third.timestamp >= due


class TestGracefulShutdown:
    def test_sigterm_finishes_the_step_in_flight_records_it_and_stops_claiming(
            self, app, db, simulator):
        simulator.add_fault("warehouse-service", "latency", "pick", latency_ms=1500,
                            match={"orderId": "ORD-TERM"})
        worker = spawn_worker(db, simulator.base_url)
        wf_id = start(app, "ORD-TERM")
        wait_for(lambda: step_running(app, wf_id, "pick-items"), timeout=20,
                 message="pick in flight")
        code = stop(worker, timeout=15)
        assert code == 0, output(worker)
        wf = app.get_workflow(wf_id)
        assert wf.step("pick-items").status == "COMPLETED"
        assert wf.step("pack-items").status == "PENDING"
        assert outcomes(app, wf_id)[("StepExecuted", "pick-items", 1)] == 1
        assert len(simulator.calls(order_id="ORD-TERM", operation="pick")) == 1
        # Whoever comes next finishes the workflow.
        successor = spawn_worker(db, simulator.base_url)
        try:
            wait_for_status(app, wf_id, "COMPLETED", timeout=30)
        finally:
            stop(successor)
