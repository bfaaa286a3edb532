"""The engine drives workflows by itself: retries, timeouts, compensation, pause, cancel.

In-process workers on real PostgreSQL with Python step handlers; the same paths with real
worker processes and HTTP services are in tests/e2e.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from application.engine.dispatch import Dispatcher
from application.engine.ports import StepCall
from application.engine.python_handler import PythonHandler
from application.engine.worker import Worker
from application.workflows import Workflows
from tests.support.waiting import event_types, wait_for, wait_for_status

FAST = {"max_retries": 3, "initial_delay_ms": 50, "max_delay_ms": 400, "multiplier": 2.0}


def saga(retry_policy: Any = None, timeout_ms: int = 5000) -> list[dict[str, Any]]:
    """The seed's four steps, each undone by its reverse operation."""
    policy = retry_policy if retry_policy is not None else FAST
    steps = [("reserve-inventory", "inventory-service", "reserve", "release"),
             ("assign-robot", "robotics-service", "assign", "unassign"),
             ("pick-items", "warehouse-service", "pick", "return-to-stock"),
             ("pack-items", "packing-service", "pack", "unpack")]
    return [{"step_id": sid, "service": svc, "operation": op, "retry_policy": policy,
             "timeout_ms": timeout_ms, "input": {"orderId": "${input.orderId}"},
             "compensation": {"operation": undo, "parameters": {"orderId": "${input.orderId}"}}}
            for sid, svc, op, undo in steps]


class Services:
    """In-process stand-ins for the warehouse services, scriptable per operation."""

    def __init__(self) -> None:
        self.calls: list[StepCall] = []
        self.script: dict[str, list[Any]] = {}
        self.lock = threading.Lock()

    def fail_next(self, operation: str, *outcomes: Any) -> None:
        self.script.setdefault(operation, []).extend(outcomes)

    def __call__(self, call: StepCall) -> dict[str, Any]:
        with self.lock:
            self.calls.append(call)
            planned = self.script.get(call.operation)
            outcome = planned.pop(0) if planned else None
        if isinstance(outcome, BaseException):
            raise outcome
        if callable(outcome):
            return outcome(call)
        return {"operation": call.operation, "orderId": call.input.get("orderId")}

    def operations(self) -> list[str]:
        return [("undo:" if c.compensation else "") + c.operation for c in self.calls]


class BusinessRuleViolation(Exception):
    """Not recoverable: classified INTERNAL_ERROR by its kind."""


@pytest.fixture
def services() -> Services:
    return Services()


@pytest.fixture
def worker(app: Workflows, services: Services) -> Iterator[Worker]:
    python = PythonHandler()
    for service in ("inventory-service", "robotics-service", "warehouse-service",
                    "packing-service"):
        python.register(service, services)
    engine = Worker(app, Dispatcher(python), concurrency=2, lease_seconds=1.0,
                    poll_seconds=0.05)
    engine.start()
    yield engine
    engine.stop()


def start(app: Workflows, order: str = "ORD-1", **kwargs: Any):
    steps = kwargs.pop("steps", None) or saga()
    return app.start_workflow(steps=steps, input={"orderId": order}, **kwargs).workflow_id


class TestHappyPath:
    def test_runs_every_step_in_order_and_completes(self, app, worker, services):
        wf_id = start(app)
        wf = wait_for_status(app, wf_id, "COMPLETED")
        assert services.operations() == ["reserve", "assign", "pick", "pack"]
        assert wf.progress_percentage == 100.0
        assert event_types(app, wf_id) == [
            "Created", "Started",
            "StepStarted", "StepExecuted", "StepStarted", "StepExecuted",
            "StepStarted", "StepExecuted", "StepStarted", "StepExecuted", "Completed"]

    def test_passes_idempotency_key_and_correlation_id_to_every_call(self, app, worker,
                                                                     services):
        wf_id = start(app, correlation_id="corr-001")
        wait_for_status(app, wf_id, "COMPLETED")
        assert {c.correlation_id for c in services.calls} == {"corr-001"}
        assert next(c.idempotency_key for c in services.calls) == f"{wf_id}:reserve-inventory"

    def test_counts_every_step_call_in_the_prometheus_metrics(self, app, worker):
        labels = {"service": "inventory-service", "operation": "reserve", "outcome": "ok"}
        before = REGISTRY.get_sample_value("wes_steps_run_total", labels) or 0.0
        wait_for_status(app, start(app), "COMPLETED")
        assert REGISTRY.get_sample_value("wes_steps_run_total", labels) == before + 1

    def test_workflow_is_removed_from_the_work_queue_when_done(self, app, worker):
        wf_id = start(app)
        wait_for_status(app, wf_id, "COMPLETED")
        wait_for(lambda: app.store.work_queue.size() == 0, 5, message="empty work queue")


    def test_a_saga_finished_in_one_claim_needs_no_release_after_its_last_save(
            self, app, services, monkeypatch):
        released: list[Any] = []
        release = app.store.work_queue.release
        monkeypatch.setattr(app.store.work_queue, "release",
                            lambda *a, **k: released.append(a) or release(*a, **k))
        python = PythonHandler()
        for service in ("inventory-service", "robotics-service", "warehouse-service",
                        "packing-service"):
            python.register(service, services, local=True)
        engine = Worker(app, Dispatcher(python), concurrency=1, poll_seconds=0.05)
        wf_id = start(app)
        assert engine.run_once() == 1
        assert app.get_workflow(wf_id).status.value == "COMPLETED"
        assert app.store.work_queue.size() == 0  # the last save deleted the item
        assert released == []

    def test_a_remote_saga_loads_its_workflow_once_per_claim(self, app, services,
                                                             monkeypatch):
        # Each outcome is saved on the workflow in hand (as saved with the attempt's start)
        # and the next decision is taken on it: no reload after the engine's own saves.
        loads: list[Any] = []
        get = app.get_workflow
        monkeypatch.setattr(app, "get_workflow", lambda *a, **k: loads.append(a) or get(*a, **k))
        python = PythonHandler()
        for service in ("inventory-service", "robotics-service", "warehouse-service",
                        "packing-service"):
            python.register(service, services)
        engine = Worker(app, Dispatcher(python), concurrency=1, poll_seconds=0.05)
        wf_id = start(app)
        assert engine.run_once() == 1
        assert len(loads) == 1
        assert app.get_workflow(wf_id).status.value == "COMPLETED"
        assert services.operations() == ["reserve", "assign", "pick", "pack"]


class TestRetries:
    def test_retries_a_recoverable_failure_and_then_completes(self, app, worker, services):
        services.fail_next("pick", ConnectionError("robot network down"))
        wf_id = start(app)
        wf = wait_for_status(app, wf_id, "COMPLETED")
        assert services.operations().count("pick") == 2
        assert wf.step("pick-items").attempts == 2
        history = app.history(wf_id)
        scheduled = next(e for e in history if e.event_type == "StepRetryScheduled")
        assert scheduled.data["delay_ms"] == 50
        failed_at = next(e for e in history if e.event_type == "StepFailed").timestamp
        restarted = [e for e in history if e.event_type == "StepStarted"
                     and e.data["step_id"] == "pick-items"][1].timestamp
        assert (restarted - failed_at).total_seconds() >= 0.05

    def test_backs_off_exponentially_with_the_default_policy(self, app, worker, services):
        services.fail_next("reserve", TimeoutError("slow"), TimeoutError("slow"))
        wf_id = start(app, steps=saga(retry_policy="default"))
        wait_for_status(app, wf_id, "COMPLETED", timeout=15)
        history = app.history(wf_id)
        delays = [e.data["delay_ms"] for e in history if e.event_type == "StepRetryScheduled"]
        assert delays == [1000, 2000]
        starts = [e.timestamp for e in history if e.event_type == "StepStarted"
                  and e.data["step_id"] == "reserve-inventory"]
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
        assert gaps[0] >= 1.0 and gaps[1] >= 2.0

    def test_exhausted_retries_fail_the_saga_and_compensate(self, app, worker, services):
        services.fail_next("assign", *[ConnectionError("down")] * 4)
        wf_id = start(app)
        wf = wait_for_status(app, wf_id, "COMPENSATED")
        assert wf.step("assign-robot").attempts == 4
        assert services.operations() == ["reserve", "assign", "assign", "assign", "assign",
                                         "undo:release"]


class TestCompensation:
    def test_unrecoverable_failure_compensates_in_reverse_order(self, app, worker, services):
        services.fail_next("pick", BusinessRuleViolation("item damaged"))
        wf_id = start(app)
        wf = wait_for_status(app, wf_id, "COMPENSATED")
        assert services.operations() == ["reserve", "assign", "pick",
                                         "undo:unassign", "undo:release"]
        assert wf.compensated_steps == ["assign-robot", "reserve-inventory"]
        types = event_types(app, wf_id)
        assert types.count("Failed") == 1
        assert types[-1] == "CompensationCompleted"

    def test_failing_compensation_ends_in_compensation_failed_and_can_be_retried(
            self, app, worker, services):
        services.fail_next("pick", BusinessRuleViolation("item damaged"))
        services.fail_next("release", *[ConnectionError("inventory down")] * 4)
        wf_id = start(app)
        wf = wait_for_status(app, wf_id, "COMPENSATION_FAILED")
        assert wf.step("reserve-inventory").compensation_attempts == 4
        app.retry_compensation(wf_id)
        wf = wait_for_status(app, wf_id, "COMPENSATED")
        assert wf.compensated_steps == ["assign-robot", "reserve-inventory"]


class TestTimeouts:
    def test_a_step_that_overruns_its_timeout_fails_with_timeout_and_is_retried(
            self, app, worker, services):
        services.fail_next("reserve", lambda call: time.sleep(0.6) or {"late": True})
        wf_id = start(app, steps=saga(timeout_ms=300))
        wf = wait_for_status(app, wf_id, "COMPLETED")
        errors = [e.data["error"] for e in app.history(wf_id) if e.event_type == "StepFailed"]
        assert [e["error_type"] for e in errors] == ["TIMEOUT"]
        assert wf.step("reserve-inventory").attempts == 2


class TestOperatorControl:
    def test_pause_takes_effect_before_the_next_step_and_resume_continues(
            self, app, worker, services):
        gate = threading.Event()
        services.fail_next("assign", lambda call: gate.wait(5) and {"robotId": "R2"})
        wf_id = start(app)
        wait_for(lambda: services.operations()[-1:] == ["assign"], message="assign running")
        app.pause(wf_id, reason="aisle blocked")
        gate.set()
        wf = wait_for(lambda: (w := app.get_workflow(wf_id)).step("assign-robot").status
                      == "COMPLETED" and w, message="assign recorded")
        time.sleep(0.3)
        wf = app.get_workflow(wf_id)
        assert wf.status == "PAUSED"
        assert services.operations() == ["reserve", "assign"]
        app.resume(wf_id)
        wait_for_status(app, wf_id, "COMPLETED")
        assert services.operations() == ["reserve", "assign", "pick", "pack"]

    def test_cancel_stops_further_steps_without_compensation(self, app, worker, services):
        gate = threading.Event()
        services.fail_next("assign", lambda call: gate.wait(5) and {"robotId": "R2"})
        wf_id = start(app)
        wait_for(lambda: "assign" in services.operations(), message="assign running")
        app.cancel(wf_id, reason="customer cancelled")
        gate.set()
        wait_for(lambda: app.get_workflow(wf_id).step("assign-robot").status == "COMPLETED",
                 message="assign recorded")
        time.sleep(0.3)
        assert app.get_workflow(wf_id).status == "CANCELLED"
        assert services.operations() == ["reserve", "assign"]

    def test_cancel_with_compensation_undoes_completed_steps(self, app, worker, services):
        gate = threading.Event()
        services.fail_next("pick", lambda call: gate.wait(5) and {"picked": True})
        wf_id = start(app)
        wait_for(lambda: "pick" in services.operations(), message="pick running")
        app.cancel(wf_id, reason="customer cancelled", compensate=True)
        gate.set()
        wf = wait_for_status(app, wf_id, "COMPENSATED")
        assert wf.compensated_steps == ["pick-items", "assign-robot", "reserve-inventory"]
        assert services.operations()[-3:] == ["undo:return-to-stock", "undo:unassign",
                                              "undo:release"]


class TestFaultyHandlers:
    def test_a_handler_that_raises_is_recorded_and_the_worker_keeps_running(
            self, app, worker, services):
        services.fail_next("reserve", RuntimeError("bug in handler"))
        first = start(app, "ORD-A")
        wait_for_status(app, first, "COMPENSATED")
        second = start(app, "ORD-B")
        wait_for_status(app, second, "COMPLETED")
        error = next(e.data["error"] for e in app.history(first) if e.event_type == "StepFailed")
        assert error["error_type"] == "INTERNAL_ERROR" and "bug in handler" in error["message"]

    def test_a_handler_returning_a_non_object_is_a_recoverable_failure(
            self, app, worker, services):
        services.fail_next("pack", lambda call: ["not", "an", "object"])
        wf_id = start(app)
        wait_for_status(app, wf_id, "COMPLETED")
        error = next(e.data["error"] for e in app.history(wf_id) if e.event_type == "StepFailed")
        assert error["code"] == "BAD_OUTPUT" and error["recoverable"] is True


class TestCallerDrivenWorkflows:
    def test_the_engine_never_touches_a_caller_driven_workflow(self, app, worker, services):
        wf_id = start(app, driven_by="caller")
        time.sleep(0.5)
        assert event_types(app, wf_id) == ["Created", "Started"]
        assert services.calls == []


class TestLocalActivities:
    @pytest.fixture
    def local_worker(self, app: Workflows, services: Services) -> Iterator[Worker]:
        python = PythonHandler()
        for service in ("inventory-service", "robotics-service", "warehouse-service",
                        "packing-service"):
            python.register(service, services, local=True)
        engine = Worker(app, Dispatcher(python), concurrency=1, lease_seconds=1.0,
                        poll_seconds=0.05)
        yield engine
        engine.stop()

    def test_a_saga_of_local_steps_is_saved_in_one_transaction_with_the_same_events(
            self, app, local_worker, services, monkeypatch):
        saves = []
        original = app.save_workflow
        monkeypatch.setattr(app, "save_workflow",
                            lambda wf, now=None: saves.append(wf.version) or original(wf, now))
        wf_id = start(app)
        saves.clear()
        local_worker.start()
        wait_for_status(app, wf_id, "COMPLETED")
        assert len(saves) == 1
        assert event_types(app, wf_id) == [
            "Created", "Started",
            "StepStarted", "StepExecuted", "StepStarted", "StepExecuted",
            "StepStarted", "StepExecuted", "StepStarted", "StepExecuted", "Completed"]

    def test_local_steps_retry_and_compensate_like_remote_ones(self, app, local_worker,
                                                               services):
        services.fail_next("reserve", ConnectionError("blip"))
        services.fail_next("pick", BusinessRuleViolation("item damaged"))
        local_worker.start()
        wf_id = start(app)
        wf = wait_for_status(app, wf_id, "COMPENSATED")
        assert services.operations() == ["reserve", "reserve", "assign", "pick",
                                         "undo:unassign", "undo:release"]
        assert wf.step("reserve-inventory").attempts == 2
        assert event_types(app, wf_id).count("StepRetryScheduled") == 1


class RoutingServices(Services):
    """A remote handler that routes ahead (as the HTTP handler does) and counts it."""

    def __init__(self) -> None:
        super().__init__()
        self.reserved: list[str] = []
        self.released: list[str] = []

    def reserve(self, service: str) -> str:
        self.reserved.append(service)
        return f"{service}-1"

    def release(self, instance: str, service: str) -> None:
        self.released.append(instance)

    def __call__(self, call: StepCall) -> Any:
        from application.engine.ports import StepOutcome
        return StepOutcome.success(super().__call__(call), 1, instance=call.instance)


class TestRoutingAhead:
    @pytest.fixture
    def routing(self, app: Workflows) -> Iterator[RoutingServices]:
        remote = RoutingServices()
        engine = Worker(app, Dispatcher(PythonHandler(), remote), concurrency=1,
                        lease_seconds=1.0, poll_seconds=0.05)
        engine.start()
        yield remote
        engine.stop()

    def test_each_start_names_the_reserved_instance_the_call_then_goes_to(self, app, routing):
        wf_id = wait_for_status(app, start(app), "COMPLETED").id
        started = [e.data["instance"] for e in app.history(wf_id) if e.event_type == "StepStarted"]
        assert started == [f"{s}-1" for s in ("inventory-service", "robotics-service",
                                              "warehouse-service", "packing-service")]
        assert [c.instance for c in routing.calls] == started and routing.released == []

    def test_an_input_that_cannot_resolve_gives_its_reservation_back(self, app, routing):
        steps = saga()
        steps[0]["input"] = {"orderId": "${input.noSuchField}"}
        wf_id = start(app, steps=steps)
        wf = wait_for(lambda: (w := app.get_workflow(wf_id)).status in ("FAILED", "COMPENSATED")
                      and w, message="failed for good")
        assert wf.step("reserve-inventory").last_error.code == "INPUT_MAPPING_FAILED"
        assert routing.calls == []
        assert routing.released == ["inventory-service-1"] == [f"{s}-1" for s in routing.reserved]


class TestWorkQueueHandOver:
    def test_a_drive_that_leaves_work_for_later_hands_the_item_back_at_once(
            self, app: Workflows, services: Services) -> None:
        python = PythonHandler()
        python.register("inventory-service", services)
        engine = Worker(app, Dispatcher(python), lease_seconds=30.0)  # threads not started
        services.fail_next("reserve", TimeoutError("slow"))  # recoverable: retried in 50 ms
        wf_id = start(app)
        assert engine.run_once() == 1
        assert app.get_workflow(wf_id).step("reserve-inventory").status == "PENDING"
        time.sleep(0.1)
        # Released, not left to its 30 s lease: another worker can take it as soon as due.
        claims = app.store.work_queue.claim("another-worker", app.clock(), 10, 30.0)
        assert [c.workflow_id for c in claims] == [wf_id]
