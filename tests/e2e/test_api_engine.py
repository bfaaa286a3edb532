"""The API with an engine worker in the same process: a saga whose compensation fails is
retried over HTTP; a database that is down answers 503, never 500."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.auth import KeyRing
from application.engine.ports import StepCall
from application.engine.python_handler import PythonHandler
from application.errors import DatabaseUnavailable
from application.workflows import Workflows
from bootstrap.container import engine_over
from tests.e2e import api_support
from tests.e2e.api_support import assert_problem, build_app, start_caller_driven

# Fixtures this module uses.
read_models = api_support.read_models
api = api_support.api

INLINE = {
    "type": "PICKING", "name": "pick-and-pack",
    "steps": [
        {"step_id": "pick", "service": "shelf", "operation": "pick",
         "compensation": {"operation": "put-back"}},
        {"step_id": "pack", "service": "bench", "operation": "pack"},
    ],
}


class Shelf:
    """In-process step handlers: packing always fails; putting back fails `failures` times."""

    def __init__(self, failures: int) -> None:
        self.failures = failures

    def register(self, handlers: PythonHandler) -> None:
        handlers.register("shelf", lambda call: {"picked": True}, "pick")
        handlers.register("shelf", self.put_back, "put-back")
        handlers.register("bench", self.pack, "pack")

    def put_back(self, call: StepCall) -> dict[str, Any]:
        if self.failures > 0:
            self.failures -= 1
            raise ValueError("shelf jammed")
        return {"returned": True}

    @staticmethod
    def pack(call: StepCall) -> dict[str, Any]:
        raise ValueError("no box fits")


@pytest.fixture
def engine_api(app: Workflows, read_models: api_support.QuerySide) -> Iterator[TestClient]:
    engine = engine_over(app)
    Shelf(failures=1).register(engine.python)
    worker = engine.worker(concurrency=2, poll_seconds=0.05)
    application = build_app(app, read_models)
    with TestClient(application) as client:
        worker.start()
        try:
            yield client
        finally:
            engine.close()


def wait_for_status(client: TestClient, workflow_id: str, status: str,
                    position: int = 0) -> dict[str, Any]:
    """Polls the progress row (read model) until the workflow reaches `status`."""
    deadline = time.monotonic() + 20
    while True:
        row = client.get(f"/v1/workflows/{workflow_id}", params={"min_position": position})
        if row.status_code == 200 and row.json()["status"] == status:
            return row.json()  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise AssertionError(f"{workflow_id} did not reach {status}: {row.text}")
        time.sleep(0.05)


class TestCompensationRetry:
    def test_a_failed_compensation_is_retried_over_http_until_compensated(
            self, engine_api: TestClient, app: Workflows) -> None:
        started = engine_api.post("/v1/workflows", json=INLINE)
        assert started.status_code == 201, started.text
        wid = started.json()["id"]
        failed = wait_for_status(engine_api, wid, "COMPENSATION_FAILED")
        assert failed["last_error"]["code"] == "COMPENSATION_FAILED"

        retried = engine_api.post(f"/v1/workflows/{wid}/compensation/retry")
        assert retried.status_code == 200
        row = wait_for_status(engine_api, wid, "COMPENSATED", retried.json()["position"])
        assert row["compensation_progress"] == 100.0
        events = [e["event_type"] for e in engine_api.get(f"/v1/workflows/{wid}/history")
                  .json()["items"]]
        assert events.count("CompensationFailed") == 1
        assert events[-3:] == ["StepCompensationStarted", "StepCompensated",
                               "CompensationCompleted"]


class TestWhoDidWhat:
    def test_the_audit_names_the_key_that_started_it_and_the_engine_that_ran_it(
            self, app: Workflows, read_models: api_support.QuerySide) -> None:
        engine = engine_over(app)
        Shelf(failures=0).register(engine.python)
        worker = engine.worker(worker_id="w-audit", concurrency=1, poll_seconds=0.05)
        ring = KeyRing.from_keys(api_support.KEYS.items())
        with TestClient(build_app(app, read_models, keys=ring),
                        headers={"Authorization": "Bearer operator-key"}) as client:
            worker.start()
            try:
                started = client.post("/v1/workflows", json=INLINE)
                assert started.status_code == 201, started.text
                wid = started.json()["id"]
                wait_for_status(client, wid, "COMPENSATED")
            finally:
                engine.close()
            last = app.history(UUID(wid))[-1]
            rows = client.get(f"/v1/workflows/{wid}/audit",
                              params={"min_position": last.position}).json()["items"]
        key = "api-key:" + hashlib.sha256(b"operator-key").hexdigest()[:8]
        assert [(r["event_type"], r["actor"]) for r in rows[:2]] == [
            ("Created", key), ("Started", key)]
        assert {r["actor"] for r in rows[2:]} == {"engine:w-audit"}
        assert [r["event_type"] for r in rows[2:]] == [
            "StepStarted", "StepExecuted", "StepStarted", "StepFailed", "Failed",
            "CompensationStarted", "StepCompensationStarted", "StepCompensated",
            "CompensationCompleted"]


class TestDatabaseDown:
    @pytest.mark.parametrize("error", [
        psycopg.OperationalError("server closed the connection unexpectedly"),
        DatabaseUnavailable("cannot connect"),
    ])
    def test_commands_and_queries_answer_503_with_retry_after(
            self, api: TestClient, app: Workflows, read_models: api_support.QuerySide,
            monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
        wid = start_caller_driven(api)["id"]

        def down(*args: Any, **kwargs: Any) -> Any:
            raise error

        async def down_async(*args: Any, **kwargs: Any) -> Any:
            raise error

        monkeypatch.setattr(app, "get_workflow", down)
        monkeypatch.setattr(read_models.views.progress, "get", down)
        # GET /v1/workflows/{id} reads on the event loop (the app's asyncio connections).
        monkeypatch.setattr(read_models.views.progress, "get_json_many", down_async)
        monkeypatch.setattr(app.recorder, "max_notification_id", down)
        answer = assert_problem(api.post(f"/v1/workflows/{wid}/pause"), 503,
                                "database-unavailable")
        assert "cannot connect" not in answer["detail"]  # no internals leak
        assert api.post(f"/v1/workflows/{wid}/pause").headers["retry-after"] == "2"
        assert_problem(api.get(f"/v1/workflows/{wid}"), 503, "database-unavailable")
        not_ready = api.get("/readyz")
        assert (not_ready.status_code, not_ready.json()["database"]) == (503, "unavailable")
        assert "wes_database_up 0.0" in api.get("/metrics").text
