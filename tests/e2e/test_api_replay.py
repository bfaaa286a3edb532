"""Audit replay over HTTP: history with positions, state as of a version or a time."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi.testclient import TestClient

from api.routers.replay import state_of
from application.workflows import Workflows
from domain.workflow import Workflow
from tests.e2e import api_support
from tests.e2e.api_support import NOT_POSITIONS, assert_problem, start_caller_driven

# Fixtures this module uses.
api = api_support.api
read_models = api_support.read_models


def drive_some_steps(api: TestClient) -> str:
    wid: str = start_caller_driven(api)["id"]
    steps = f"/v1/workflows/{wid}/steps"
    api.post(f"{steps}/reserve-inventory/start")
    api.post(f"{steps}/reserve-inventory/result", json={"output": {"reservationId": "R-1"}})
    api.post(f"/v1/workflows/{wid}/pause", json={"reason": "check"})
    api.post(f"/v1/workflows/{wid}/resume")
    api.post(f"{steps}/assign-robot/start")
    api.post(f"{steps}/assign-robot/failure", json={"error": {
        "code": "NO_ROBOT", "error_type": "TIMEOUT"}})
    return wid


def fold(app: Workflows, workflow_id: UUID, count: int) -> Workflow:
    """The aggregate folded by hand from its first `count` stored events."""
    wf: Any = None
    for event in list(app.events.get(workflow_id))[:count]:
        wf = event.mutate(wf)
    assert isinstance(wf, Workflow)
    return wf


def normalised(value: Any) -> Any:
    """JSON with every ISO time parsed, so equal instants compare equal."""
    if isinstance(value, dict):
        return {k: normalised(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalised(v) for v in value]
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and "T" in value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    return value


class TestHistory:
    def test_lists_every_event_with_version_position_and_time(
            self, api: TestClient, app: Workflows) -> None:
        wid = drive_some_steps(api)
        body = api.get(f"/v1/workflows/{wid}/history").json()
        expected = app.history(UUID(wid))
        assert [e["version"] for e in body["items"]] == list(range(1, len(expected) + 1))
        assert [e["position"] for e in body["items"]] == [e.position for e in expected]
        assert [e["event_type"] for e in body["items"]][:4] == [
            "Created", "Started", "StepStarted", "StepExecuted"]
        assert body["items"][4]["data"]["reason"] == "check"
        assert body["next_cursor"] is None

    def test_pages_the_history(self, api: TestClient) -> None:
        wid = drive_some_steps(api)
        first = api.get(f"/v1/workflows/{wid}/history", params={"limit": 3}).json()
        rest = api.get(f"/v1/workflows/{wid}/history",
                       params={"limit": 500, "cursor": first["next_cursor"]}).json()
        versions = [e["version"] for e in first["items"] + rest["items"]]
        assert versions == list(range(1, len(versions) + 1))

    def test_a_cursor_that_is_not_an_ascii_offset_is_422(self, api: TestClient) -> None:
        wid = start_caller_driven(api)["id"]
        for cursor in ["bogus", *NOT_POSITIONS]:
            body = assert_problem(api.get(f"/v1/workflows/{wid}/history",
                                          params={"cursor": cursor}), 422, "validation")
            assert body["field"] == "cursor", cursor

    def test_an_unknown_workflow_is_404(self, api: TestClient) -> None:
        unknown = "7d3c8f7e-0000-4000-8000-000000000001"
        assert_problem(api.get(f"/v1/workflows/{unknown}/history"), 404, "workflow-not-found")
        assert_problem(api.get(f"/v1/workflows/{unknown}/state"), 404)


class TestStateAt:
    def test_state_at_each_version_equals_the_first_n_events_folded(
            self, api: TestClient, app: Workflows) -> None:
        wid = drive_some_steps(api)
        count = len(app.history(UUID(wid)))
        for version in range(1, count + 1):
            answer = api.get(f"/v1/workflows/{wid}/state", params={"version": version})
            assert answer.status_code == 200, answer.text
            folded = fold(app, UUID(wid), version)
            assert answer.json()["version"] == version
            assert normalised(answer.json()) == normalised(_json(state_of(folded)))

    def test_state_at_a_time_is_the_state_after_the_last_event_by_then(
            self, api: TestClient, app: Workflows) -> None:
        wid = drive_some_steps(api)
        history = app.history(UUID(wid))
        paused_at = next(e for e in history if e.event_type == "Paused").timestamp
        state = api.get(f"/v1/workflows/{wid}/state", params={"at": paused_at.isoformat()})
        assert state.json()["status"] == "PAUSED"
        latest = api.get(f"/v1/workflows/{wid}/state").json()
        assert latest["version"] == len(history)
        assert latest["status"] == "EXECUTING"

    def test_impossible_points_are_422(self, api: TestClient, app: Workflows) -> None:
        wid = drive_some_steps(api)
        count = len(app.history(UUID(wid)))
        assert_problem(api.get(f"/v1/workflows/{wid}/state", params={"version": count + 1}),
                       422, "validation")
        assert_problem(api.get(f"/v1/workflows/{wid}/state", params={"version": 0}), 422)
        assert_problem(api.get(f"/v1/workflows/{wid}/state",
                               params={"version": 1, "at": "2030-01-01T00:00:00Z"}), 422)
        assert_problem(api.get(f"/v1/workflows/{wid}/state",
                               params={"at": "2000-01-01T00:00:00Z"}), 422)
        assert_problem(api.get(f"/v1/workflows/{wid}/state", params={"at": "yesterday"}), 422)


def _json(value: Any) -> Any:
    """Plain JSON types, as the HTTP answer carries them."""
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return value
