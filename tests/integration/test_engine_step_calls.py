"""What the engine hands a step handler, and what it records of the answer: the idempotency
key and attempt of every call, the output size limit, and the engine as the actor.

In-process workers on real PostgreSQL with Python step handlers (remote and local ones);
the key through a lost outcome, with worker processes and HTTP services, is in
tests/e2e/test_engine_processes.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from application.engine.dispatch import Dispatcher
from application.engine.python_handler import PythonHandler
from application.engine.worker import Worker
from application.workflows import Workflows, utc_now
from domain.workflow import Workflow
from tests.integration.test_engine import BusinessRuleViolation, Services, saga
from tests.support.waiting import wait_for_status

SERVICES = ("inventory-service", "robotics-service", "warehouse-service", "packing-service")
LIMIT = 2048

MakeWorker = Callable[..., Worker]


@pytest.fixture
def services() -> Services:
    return Services()


@pytest.fixture
def make_worker(app: Workflows, services: Services) -> Iterator[MakeWorker]:
    """`make_worker(local=False, **options)`: a started worker on the scripted services."""
    started: list[Worker] = []

    def make(local: bool = False, **options: Any) -> Worker:
        python = PythonHandler()
        for service in SERVICES:
            python.register(service, services, local=local)
        options = {"concurrency": 1, "lease_seconds": 1.0, "poll_seconds": 0.05, **options}
        worker = Worker(app, Dispatcher(python), **options)
        worker.start()
        started.append(worker)
        return worker

    yield make
    for worker in started:
        worker.stop()


def start(app: Workflows, order: str = "ORD-1", **kwargs: Any):
    return app.start_workflow(steps=kwargs.pop("steps", None) or saga(),
                              input={"orderId": order}, **kwargs).workflow_id


def calls_of(services: Services, operation: str) -> list[tuple[str, int]]:
    return [(c.idempotency_key, c.attempt) for c in services.calls if c.operation == operation]


class TestIdempotencyKeys:
    @pytest.mark.parametrize("local", [False, True], ids=["remote", "local"])
    def test_every_attempt_of_a_step_carries_the_same_key_and_its_own_attempt(
            self, app, make_worker, services, local):
        services.fail_next("pick", ConnectionError("down"), TimeoutError("slow"))
        make_worker(local=local)
        wf_id = start(app)
        wait_for_status(app, wf_id, "COMPLETED")
        key = f"{wf_id}:pick-items"
        assert calls_of(services, "pick") == [(key, 1), (key, 2), (key, 3)]

    def test_compensations_carry_a_key_of_their_own(self, app, make_worker, services):
        services.fail_next("pick", BusinessRuleViolation("item damaged"))
        services.fail_next("release", ConnectionError("inventory down"))
        make_worker()
        wf_id = start(app)
        wait_for_status(app, wf_id, "COMPENSATED")
        key = f"{wf_id}:reserve-inventory:compensate"
        assert calls_of(services, "release") == [(key, 1), (key, 2)]

    def test_a_workflow_retry_runs_the_failed_steps_under_a_new_run(
            self, app, make_worker, services):
        services.fail_next("pick", BusinessRuleViolation("item damaged"))
        make_worker()
        wf_id = start(app)
        wait_for_status(app, wf_id, "COMPENSATED")
        app.retry(wf_id)
        wait_for_status(app, wf_id, "COMPLETED")
        assert calls_of(services, "pick") == [(f"{wf_id}:pick-items", 1),
                                              (f"{wf_id}:pick-items:1", 1)]
        # The compensated reservation is made again, as a new execution.
        assert calls_of(services, "reserve") == [(f"{wf_id}:reserve-inventory", 1),
                                                 (f"{wf_id}:reserve-inventory:1", 1)]
        assert calls_of(services, "release") == [(f"{wf_id}:reserve-inventory:compensate", 1)]


class TestOutputLimit:
    @pytest.mark.parametrize("local", [False, True], ids=["remote", "local"])
    def test_an_output_over_the_limit_is_a_recorded_failure_not_a_stored_output(
            self, app, make_worker, services, local):
        services.fail_next("pick", lambda call: {"photo": "x" * (LIMIT * 4)})
        make_worker(local=local, max_output_bytes=LIMIT)
        wf_id = start(app)
        wf = wait_for_status(app, wf_id, "COMPENSATED")
        history = app.history(wf_id)
        [failed] = [e for e in history if e.event_type == "StepFailed"]
        error = failed.data["error"]
        assert (error["code"], error["error_type"], error["recoverable"]) == (
            "OUTPUT_TOO_LARGE", "VALIDATION_ERROR", False)
        assert f"{LIMIT} bytes (WES_MAX_OUTPUT_BYTES)" in error["message"]
        assert not [e for e in history if e.event_type == "StepExecuted"
                    and e.data["step_id"] == "pick-items"]
        assert wf.step("pick-items").output is None
        assert calls_of(services, "pick") == [(f"{wf_id}:pick-items", 1)]  # not retried
        assert all(len(str(e.data)) < LIMIT * 2 for e in history)

    def test_a_step_applied_with_an_answer_too_big_is_undone_and_a_retry_calls_afresh(
            self, app, make_worker, services):
        services.fail_next("pick", lambda call: {"photo": "x" * (LIMIT * 4)})
        make_worker(max_output_bytes=LIMIT)
        wf_id = start(app)
        wf = wait_for_status(app, wf_id, "COMPENSATED")
        # The pick happened in the warehouse: it is returned to stock, before the others.
        undone = [c.operation for c in services.calls if c.compensation]
        assert undone == ["return-to-stock", "unassign", "release"]
        assert calls_of(services, "return-to-stock") == [(f"{wf_id}:pick-items:compensate", 1)]
        assert wf.step("pick-items").status.value == "COMPENSATED"
        app.retry(wf_id)
        wait_for_status(app, wf_id, "COMPLETED")
        # Undone, so the retry's pick is a new execution, under the new run's key.
        assert calls_of(services, "pick") == [(f"{wf_id}:pick-items", 1),
                                              (f"{wf_id}:pick-items:1", 1)]

    def test_a_compensation_answered_with_an_output_too_big_counts_as_done(
            self, app, make_worker, services):
        services.fail_next("pick", BusinessRuleViolation("item damaged"))
        services.fail_next("unassign", lambda call: {"log": "x" * (LIMIT * 4)})
        make_worker(max_output_bytes=LIMIT)
        wf_id = start(app)
        wf = wait_for_status(app, wf_id, "COMPENSATED")
        assert calls_of(services, "unassign") == [(f"{wf_id}:assign-robot:compensate", 1)]
        assert "WES_MAX_OUTPUT_BYTES" in \
            wf.step("assign-robot").compensation_output["output_not_recorded"]
        assert all(len(str(e.data)) < LIMIT * 2 for e in app.history(wf_id))

    def test_an_output_at_the_limit_is_stored(self, app, make_worker, services):
        # {"photo": "..."}: 12 bytes of JSON around the text.
        services.fail_next("pick", lambda call: {"photo": "x" * (LIMIT - 12)})
        make_worker(max_output_bytes=LIMIT)
        wf = wait_for_status(app, start(app), "COMPLETED")
        assert len(wf.step("pick-items").output["photo"]) == LIMIT - 12


class TestEngineAsActor:
    def test_the_starter_started_it_and_the_engine_recorded_everything_after(
            self, app, make_worker, services):
        services.fail_next("pick", BusinessRuleViolation("item damaged"))
        worker = make_worker(worker_id="w-actor")
        wf_id = start(app, triggered_by="api-key:0a1b2c3d")
        wait_for_status(app, wf_id, "COMPENSATED")
        actors = [(e.event_type, e.data.get("actor")) for e in app.history(wf_id)]
        assert worker.actor == "engine:w-actor"
        assert actors[:2] == [("Created", None), ("Started", "api-key:0a1b2c3d")]
        assert {actor for _, actor in actors[2:]} == {"engine:w-actor"}
        assert {kind for kind, _ in actors} >= {
            "StepStarted", "StepExecuted", "StepFailed", "Failed", "CompensationStarted",
            "StepCompensationStarted", "StepCompensated", "CompensationCompleted"}

    def test_a_workflow_the_engine_starts_itself_names_the_engine(self, app, make_worker):
        # Created and saved PENDING (not waveless): the engine's START decision starts it.
        wf = Workflow.create(steps=saga(), now=utc_now(), input={"orderId": "ORD-P"})
        app.save_workflow(wf)
        make_worker(worker_id="w-start")
        wait_for_status(app, wf.id, "COMPLETED")
        started = next(e for e in app.history(wf.id) if e.event_type == "Started")
        assert started.data["actor"] == "engine:w-start"

    def test_an_operator_command_keeps_its_own_actor(self, app, make_worker, services):
        services.fail_next("pick", BusinessRuleViolation("item damaged"))
        make_worker(worker_id="w-op")
        wf_id = start(app)
        wait_for_status(app, wf_id, "COMPENSATED")
        app.retry(wf_id, actor="operator:alice")
        wait_for_status(app, wf_id, "COMPLETED")
        history = app.history(wf_id)
        retried = next(e for e in history if e.event_type == "Retried")
        assert retried.data["actor"] == "operator:alice"
        after = history[history.index(retried) + 1:]
        assert {e.data["actor"] for e in after} == {"engine:w-op"}
