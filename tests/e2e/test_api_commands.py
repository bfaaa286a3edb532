"""Commands over HTTP: start (idempotent), lifecycle, the manual step API, definitions."""

from __future__ import annotations

import threading
from uuid import UUID

import httpx
from fastapi.testclient import TestClient

from application.workflows import Workflows
from cli.background import BackgroundServer
from tests.e2e import api_support
from tests.e2e.api_support import NOT_POSITIONS, assert_problem, start_caller_driven

# Fixtures this module uses.
api = api_support.api
live_api = api_support.live_api
read_models = api_support.read_models


def history_length(app: Workflows, workflow_id: str) -> int:
    return len(app.history(UUID(workflow_id)))


class TestStart:
    def test_starts_a_workflow_from_a_definition_and_answers_its_position(
            self, api: TestClient, app: Workflows) -> None:
        response = api.post("/v1/workflows", json={
            "definition": "order-fulfillment", "input": {"orderId": "ORD-7"},
            "priority": "HIGH", "correlation_id": "ord-ORD-7", "triggered_by": "oms",
            "driven_by": "caller"})
        assert response.status_code == 201
        body = response.json()
        assert response.headers["location"] == f"/v1/workflows/{body['id']}"
        assert body["created"] is True
        history = app.history(UUID(body["id"]))
        assert [e.event_type for e in history] == ["Created", "Started"]
        assert body["position"] == history[-1].position
        wf = app.get_workflow(UUID(body["id"]))
        assert (wf.priority, wf.correlation_id, wf.triggered_by) == ("HIGH", "ord-ORD-7", "oms")

    def test_starts_a_workflow_from_inline_steps(self, api: TestClient, app: Workflows) -> None:
        response = api.post("/v1/workflows", json={
            "steps": [{"step_id": "pick", "service": "warehouse-service", "operation": "pick",
                       "input": {"orderId": "${input.orderId}"}, "retry_policy": "aggressive"},
                      {"step_id": "pack", "service": "packing-service", "operation": "pack",
                       "retry_policy": {"max_retries": 1, "initial_delay_ms": 10,
                                        "max_delay_ms": 10, "multiplier": 1}}],
            "type": "PICKING", "name": "pick-and-pack", "input": {"orderId": "O-2"},
            "driven_by": "caller"})
        assert response.status_code == 201, response.text
        wf = app.get_workflow(UUID(response.json()["id"]))
        assert list(wf.steps) == ["pick", "pack"]
        assert (wf.workflow_type, wf.name) == ("PICKING", "pick-and-pack")

    def test_a_waveless_start_waits_pending(self, api: TestClient, app: Workflows) -> None:
        started = start_caller_driven(api, waveless=True)
        assert app.get_workflow(UUID(started["id"])).status == "PENDING"

    def test_a_waveless_start_records_the_lane_it_asks_for(self, api: TestClient,
                                                           app: Workflows) -> None:
        started = start_caller_driven(api, waveless=True, waveless_batch_size=3,
                                      waveless_interval_ms=250)
        assert app.get_workflow(UUID(started["id"])).waveless == {"batch_size": 3,
                                                                  "interval_ms": 250}

    def test_lane_settings_without_waveless_are_422_and_start_nothing(
            self, api: TestClient, app: Workflows) -> None:
        head = app.recorder.max_notification_id()
        for extra in ({"waveless_batch_size": 3}, {"waveless": True, "waveless_interval_ms": 10}):
            body = {"definition": "order-fulfillment", "input": {"orderId": "O"}, **extra}
            assert_problem(api.post("/v1/workflows", json=body), 422, "validation")
        assert app.recorder.max_notification_id() == head

    def test_an_unknown_definition_is_404(self, api: TestClient) -> None:
        assert_problem(api.post("/v1/workflows", json={"definition": "no-such-thing"}), 404,
                       "definition-not-found")

    def test_definition_and_steps_together_are_422(self, api: TestClient) -> None:
        body = assert_problem(api.post("/v1/workflows", json={
            "definition": "order-fulfillment",
            "steps": [{"step_id": "a", "service": "s", "operation": "o"}]}), 422, "validation")
        assert body["errors"]

    def test_invalid_fields_are_422_and_name_the_field(self, api: TestClient) -> None:
        body = assert_problem(api.post("/v1/workflows", json={
            "definition": "order-fulfillment", "priority": "URGENT"}), 422, "validation")
        assert ["body", "priority"] in [e["loc"] for e in body["errors"]]
        assert_problem(api.post("/v1/workflows", content=b"{not json",
                                headers={"content-type": "application/json"}), 422)
        assert_problem(api.post("/v1/workflows", json=[1, 2]), 422)

    def test_input_that_storage_cannot_hold_is_422(self, api: TestClient,
                                                   app: Workflows) -> None:
        for raw in ('{"definition": "order-fulfillment", "input": {"a": "\\ud800"}}',
                    '{"definition": "order-fulfillment", "input": {"a": "x\\u0000"}}',
                    '{"definition": "order-fulfillment", "correlation_id": "x\\u0000"}',
                    '{"definition": "order-fulfillment", "input": {"n": 1e400}}',
                    '{"definition": "order-fulfillment", "input": '
                    + "[" * 5000 + "]" * 5000 + "}"):
            assert_problem(api.post("/v1/workflows", content=raw.encode(),
                                    headers={"content-type": "application/json"}), 422)
        assert app.workflow_ids() == []

    def test_steps_that_break_a_rule_are_422(self, api: TestClient) -> None:
        body = assert_problem(api.post("/v1/workflows", json={"steps": [
            {"step_id": "a", "service": "s", "operation": "o",
             "input": {"x": "${steps.b.y}"}}]}), 422, "validation")
        assert "b" in body["detail"]

    def test_the_same_idempotency_key_answers_the_same_workflow(
            self, api: TestClient, app: Workflows) -> None:
        body = {"definition": "order-fulfillment", "input": {"orderId": "ORD-9"},
                "driven_by": "caller"}
        first = api.post("/v1/workflows", json=body, headers={"Idempotency-Key": "order-9"})
        again = api.post("/v1/workflows", json=body, headers={"Idempotency-Key": "order-9"})
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json()["id"] == first.json()["id"]
        assert again.json()["position"] == first.json()["position"]
        assert again.json()["created"] is False
        assert history_length(app, first.json()["id"]) == 2

    def test_concurrent_starts_with_one_key_create_one_workflow(
            self, live_api: BackgroundServer, app: Workflows) -> None:
        body = {"definition": "order-fulfillment", "input": {"orderId": "ORD-C"},
                "driven_by": "caller"}
        answers: list[httpx.Response] = []
        barrier = threading.Barrier(8)

        def start() -> None:
            with httpx.Client(base_url=live_api.url, timeout=20) as client:
                barrier.wait()
                answers.append(client.post("/v1/workflows", json=body,
                                           headers={"Idempotency-Key": "same-key"}))

        threads = [threading.Thread(target=start) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(r.status_code for r in answers) == [200] * 7 + [201]
        assert len({r.json()["id"] for r in answers}) == 1
        workflow_id = answers[0].json()["id"]
        assert [e.event_type for e in app.history(UUID(workflow_id))] == ["Created", "Started"]
        assert sum(1 for i in app.workflow_ids() if str(i) == workflow_id) == 1


class TestLifecycle:
    def test_pause_resume_cancel_answer_positions(self, api: TestClient, app: Workflows) -> None:
        wid = start_caller_driven(api)["id"]
        paused = api.post(f"/v1/workflows/{wid}/pause", json={"reason": "inspection"})
        assert paused.status_code == 200
        assert app.get_workflow(UUID(wid)).status == "PAUSED"
        assert paused.json()["position"] == app.history(UUID(wid))[-1].position
        assert api.post(f"/v1/workflows/{wid}/resume").status_code == 200
        cancelled = api.post(f"/v1/workflows/{wid}/cancel", json={"reason": "customer",
                                                                  "compensate": False})
        assert cancelled.status_code == 200
        wf = app.get_workflow(UUID(wid))
        assert (wf.status, wf.cancel_reason) == ("CANCELLED", "customer")

    def test_retry_restarts_a_cancelled_workflow(self, api: TestClient, app: Workflows) -> None:
        wid = start_caller_driven(api)["id"]
        api.post(f"/v1/workflows/{wid}/cancel")
        assert api.post(f"/v1/workflows/{wid}/retry").status_code == 200
        wf = app.get_workflow(UUID(wid))
        assert (wf.status, wf.retry_count) == ("EXECUTING", 1)

    def test_an_invalid_transition_is_409_and_changes_nothing(
            self, api: TestClient, app: Workflows) -> None:
        wid = start_caller_driven(api)["id"]
        before = history_length(app, wid)
        body = assert_problem(api.post(f"/v1/workflows/{wid}/resume"), 409,
                              "invalid-transition")
        assert body["current_status"] == "EXECUTING"
        assert_problem(api.post(f"/v1/workflows/{wid}/compensation/retry"), 409)
        assert history_length(app, wid) == before

    def test_commands_on_an_unknown_workflow_are_404(self, api: TestClient) -> None:
        unknown = "7d3c8f7e-0000-4000-8000-000000000000"
        for action in ("pause", "resume", "cancel", "retry", "compensation/retry", "waveless",
                       "compensation/complete", "steps/reserve-inventory/start"):
            assert_problem(api.post(f"/v1/workflows/{unknown}/{action}"), 404,
                           "workflow-not-found")

    def test_a_malformed_id_is_422(self, api: TestClient) -> None:
        assert_problem(api.post("/v1/workflows/not-a-uuid/pause"), 422, "validation")

    def test_waveless_can_be_enabled_once(self, api: TestClient, app: Workflows) -> None:
        wid = start_caller_driven(api)["id"]
        enabled = api.post(f"/v1/workflows/{wid}/waveless",
                           json={"batch_size": 5, "interval_ms": 500})
        assert enabled.status_code == 200
        assert app.get_workflow(UUID(wid)).waveless == {"batch_size": 5, "interval_ms": 500}
        assert_problem(api.post(f"/v1/workflows/{wid}/waveless"), 409)
        assert_problem(api.post(f"/v1/workflows/{wid}/waveless", json={"batch_size": 0}), 422)


class TestManualStepApi:
    """Seed sections 2-4 over HTTP, for a caller-driven workflow."""

    def test_a_caller_drives_steps_and_compensates_after_an_unrecoverable_failure(
            self, api: TestClient, app: Workflows) -> None:
        wid = start_caller_driven(api)["id"]
        steps = f"/v1/workflows/{wid}/steps"
        assert api.post(f"{steps}/reserve-inventory/start").status_code == 200
        done = api.post(f"{steps}/reserve-inventory/result",
                        json={"output": {"reservationId": "R-1"}, "execution_time_ms": 1500})
        assert done.status_code == 200
        assert api.post(f"{steps}/assign-robot/start").status_code == 200

        retry = api.post(f"{steps}/assign-robot/failure", json={"error": {
            "code": "INVENTORY_UNAVAILABLE", "message": "Insufficient inventory",
            "error_type": "BUSINESS_RULE_VIOLATION", "recoverable": True,
            "service": "robotics-service"}})
        assert retry.status_code == 200
        assert retry.json()["decision"] == "retry"
        assert retry.json()["delay_ms"] == 1000

        assert api.post(f"{steps}/assign-robot/start").status_code == 200
        fail = api.post(f"{steps}/assign-robot/failure", json={"error": {
            "code": "ROBOT_UNAVAILABLE", "message": "All robots are offline",
            "error_type": "SERVICE_UNAVAILABLE", "recoverable": False}})
        assert fail.json()["decision"] == "fail"
        assert fail.json()["status"] == "COMPENSATING"
        assert fail.json()["position"] == app.history(UUID(wid))[-1].position

        todo = api.get(f"/v1/workflows/{wid}/compensation").json()
        assert [s["step_id"] for s in todo["pending"]] == ["reserve-inventory"]
        assert todo["pending"][0]["action"]["operation"] == "release"
        assert todo["progress_percent"] == 0.0

        assert_problem(api.post(f"/v1/workflows/{wid}/compensation/complete"), 409)
        assert api.post(f"{steps}/reserve-inventory/compensated",
                        json={"output": {"released": True}}).status_code == 200
        assert api.get(f"/v1/workflows/{wid}/compensation").json()["progress_percent"] == 100
        assert api.post(f"/v1/workflows/{wid}/compensation/complete").status_code == 200
        assert app.get_workflow(UUID(wid)).status == "COMPENSATED"

    UNRECOVERABLE = {"error": {"code": "ROBOT_UNAVAILABLE", "message": "All robots are offline",
                               "error_type": "SERVICE_UNAVAILABLE", "recoverable": False}}

    def test_a_failure_answers_the_workflows_real_status(
            self, api: TestClient, app: Workflows) -> None:
        # Nothing completed, so nothing to undo: compensation is complete at once.
        wid = start_caller_driven(api)["id"]
        steps = f"/v1/workflows/{wid}/steps"
        api.post(f"{steps}/reserve-inventory/start")
        fail = api.post(f"{steps}/reserve-inventory/failure", json=self.UNRECOVERABLE)
        assert fail.status_code == 200, fail.text
        assert (fail.json()["decision"], fail.json()["status"]) == ("fail", "COMPENSATED")
        assert app.get_workflow(UUID(wid)).status == "COMPENSATED"

    def test_a_paused_workflow_stays_paused_until_resumed(
            self, api: TestClient, app: Workflows) -> None:
        wid = start_caller_driven(api)["id"]
        steps = f"/v1/workflows/{wid}/steps"
        api.post(f"{steps}/reserve-inventory/start")
        assert api.post(f"/v1/workflows/{wid}/pause").status_code == 200
        fail = api.post(f"{steps}/reserve-inventory/failure", json=self.UNRECOVERABLE)
        assert fail.status_code == 200, fail.text
        assert (fail.json()["decision"], fail.json()["status"]) == ("fail", "PAUSED")
        assert app.get_workflow(UUID(wid)).status == "PAUSED"
        assert api.post(f"/v1/workflows/{wid}/resume").status_code == 200
        assert app.get_workflow(UUID(wid)).status == "COMPENSATED"

    def test_a_failure_after_a_cancel_is_recorded(self, api: TestClient, app: Workflows) -> None:
        wid = start_caller_driven(api)["id"]
        steps = f"/v1/workflows/{wid}/steps"
        api.post(f"{steps}/reserve-inventory/start")
        assert api.post(f"/v1/workflows/{wid}/cancel").status_code == 200
        fail = api.post(f"{steps}/reserve-inventory/failure", json=self.UNRECOVERABLE)
        assert fail.status_code == 200, fail.text
        assert (fail.json()["decision"], fail.json()["status"]) == ("recorded", "CANCELLED")

    def test_step_rules_are_enforced(self, api: TestClient, app: Workflows) -> None:
        wid = start_caller_driven(api)["id"]
        steps = f"/v1/workflows/{wid}/steps"
        before = history_length(app, wid)
        assert_problem(api.post(f"{steps}/pick-items/start"), 409, "invalid-transition")
        assert_problem(api.post(f"{steps}/no-such-step/start"), 404, "step-not-found")
        assert_problem(api.post(f"{steps}/reserve-inventory/result", json={}), 409)
        assert history_length(app, wid) == before
        assert_problem(api.post(f"{steps}/reserve-inventory/result",
                                json={"execution_time_ms": -1}), 422)
        assert_problem(api.post(f"{steps}/reserve-inventory/failure",
                                json={"error": {"code": "X", "error_type": "NOPE"}}), 422)


class TestDefinitions:
    DEFINITION = {
        "name": "pick-and-pack", "version": 1, "type": "PICKING",
        "steps": [{"step_id": "pick", "service": "warehouse-service", "operation": "pick",
                   "compensation": {"operation": "return-to-stock"}},
                  {"step_id": "pack", "service": "packing-service", "operation": "pack"}],
    }

    def test_registers_lists_and_gets_versions(self, api: TestClient) -> None:
        created = api.post("/v1/definitions", json=self.DEFINITION)
        assert created.status_code == 201
        assert created.json()["created"] is True
        assert created.json()["position"] > 0
        again = api.post("/v1/definitions", json=self.DEFINITION)
        assert (again.status_code, again.json()["created"]) == (200, False)
        v2 = {**self.DEFINITION, "version": 2, "steps": self.DEFINITION["steps"][:1]}
        assert api.post("/v1/definitions", json=v2).status_code == 201

        listed = api.get("/v1/definitions").json()
        names = [(d["name"], d["version"]) for d in listed["items"]]
        assert ("order-fulfillment", 1) in names
        assert ("pick-and-pack", 1) in names and ("pick-and-pack", 2) in names
        latest = api.get("/v1/definitions/pick-and-pack").json()
        assert (latest["version"], latest["versions"]) == (2, [1, 2])
        first = api.get("/v1/definitions/pick-and-pack", params={"version": 1}).json()
        assert [s["step_id"] for s in first["steps"]] == ["pick", "pack"]
        assert first["steps"][0]["retry_policy"]["max_retries"] == 3

    def test_pages_through_definitions(self, api: TestClient) -> None:
        for version in (1, 2, 3):
            api.post("/v1/definitions", json={**self.DEFINITION, "version": version})
        seen: list[tuple[str, int]] = []
        cursor = None
        while True:
            page = api.get("/v1/definitions", params={"limit": 1, **(
                {"cursor": cursor} if cursor else {})}).json()
            seen += [(d["name"], d["version"]) for d in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == 5  # order-fulfillment 1 and 2, and these
        assert_problem(api.get("/v1/definitions", params={"cursor": "bogus"}), 422)

    def test_a_cursor_that_is_not_an_ascii_offset_is_422(self, api: TestClient) -> None:
        for cursor in ["bogus", *NOT_POSITIONS]:
            body = assert_problem(api.get("/v1/definitions", params={"cursor": cursor}), 422,
                                  "validation")
            assert body["field"] == "cursor", cursor

    def test_other_content_under_a_registered_version_is_409(self, api: TestClient) -> None:
        api.post("/v1/definitions", json=self.DEFINITION)
        changed = {**self.DEFINITION, "type": "PACKING"}
        assert_problem(api.post("/v1/definitions", json=changed), 409,
                       "definition-version-exists")
        assert api.get("/v1/definitions/pick-and-pack").json()["type"] == "PICKING"

    def test_unknown_and_invalid_definitions(self, api: TestClient) -> None:
        assert_problem(api.get("/v1/definitions/nothing-here"), 404, "definition-not-found")
        assert_problem(api.get("/v1/definitions/order-fulfillment", params={"version": 9}),
                       404)
        assert_problem(api.post("/v1/definitions", json={**self.DEFINITION, "steps": []}), 422)
        duplicate = {**self.DEFINITION, "steps": [self.DEFINITION["steps"][0]] * 2}
        assert_problem(api.post("/v1/definitions", json=duplicate), 422, "validation")

    def test_a_workflow_starts_from_a_registered_version(
            self, api: TestClient, app: Workflows) -> None:
        api.post("/v1/definitions", json=self.DEFINITION)
        started = api.post("/v1/workflows", json={"definition": "pick-and-pack",
                                                  "version": 1, "driven_by": "caller"})
        wf = app.get_workflow(UUID(started.json()["id"]))
        assert (wf.definition_id, wf.definition_version) == ("pick-and-pack", 1)
