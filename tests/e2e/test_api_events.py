"""The event feed over HTTP: pages in global order, and the live SSE stream."""

from __future__ import annotations

import httpx
from fastapi.testclient import TestClient

from application.workflows import Workflows
from cli.background import BackgroundServer
from tests.e2e import api_support
from tests.e2e.api_support import (
    NOT_POSITIONS,
    SseEvent,
    assert_problem,
    read_sse,
    start_caller_driven,
)

# Fixtures this module uses.
api = api_support.api
live_api = api_support.live_api
read_models = api_support.read_models


def all_positions(app: Workflows, after: int = 0) -> list[int]:
    return [n.id for n in app.recorder.select_notifications(
        start=after, limit=10_000, inclusive_of_start=False)]


class TestEventPages:
    def test_pages_every_event_in_global_order(self, api: TestClient, app: Workflows) -> None:
        for _ in range(3):
            start_caller_driven(api)
        seen: list[int] = []
        after = 0
        while True:
            page = api.get("/v1/events", params={"after": after, "limit": 2}).json()
            seen += [e["position"] for e in page["items"]]
            after = page["next_after"]
            if page["next_cursor"] is None:
                break
        assert seen == all_positions(app)
        assert page["head"] == seen[-1]

    def test_events_carry_their_workflow_and_type(self, api: TestClient) -> None:
        started = start_caller_driven(api, correlation_id="corr-feed")
        events = api.get("/v1/events", params={"workflow_id": started["id"]}).json()["items"]
        assert [e["event_type"] for e in events] == ["Created", "Started"]
        assert {e["workflow_id"] for e in events} == {started["id"]}
        assert {e["correlation_id"] for e in events} == {"corr-feed"}
        assert events[-1]["position"] == started["position"]

    def test_filters_by_correlation_id_and_event_type(self, api: TestClient) -> None:
        first = start_caller_driven(api, correlation_id="corr-a")
        start_caller_driven(api, correlation_id="corr-b")
        api.post(f"/v1/workflows/{first['id']}/pause")
        by_correlation = api.get("/v1/events", params={"correlation_id": "corr-a"}).json()
        assert [e["event_type"] for e in by_correlation["items"]] == [
            "Created", "Started", "Paused"]
        started = api.get("/v1/events", params=[("event_type", "Started"),
                                                ("event_type", "Workflow.Paused")]).json()
        assert [e["event_type"] for e in started["items"]] == ["Started", "Started", "Paused"]

    def test_after_the_head_is_empty_and_bad_parameters_are_422(self, api: TestClient) -> None:
        start_caller_driven(api)
        head = api.get("/v1/events").json()["head"]
        page = api.get("/v1/events", params={"after": head}).json()
        assert (page["items"], page["next_after"], page["next_cursor"]) == ([], head, None)
        assert_problem(api.get("/v1/events", params={"limit": 0}), 422)
        assert_problem(api.get("/v1/events", params={"limit": 501}), 422)
        assert_problem(api.get("/v1/events", params={"after": -1}), 422)


class TestEventStream:
    def test_streams_live_and_resumes_after_a_reconnect_without_gaps_or_repeats(
            self, live_api: BackgroundServer, app: Workflows) -> None:
        with httpx.Client(base_url=live_api.url, timeout=10) as client:
            head = client.get("/v1/events").json()["head"]
            received: list[SseEvent] = []
            with client.stream("GET", "/v1/events/stream") as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                wid = start_caller_driven(client)["id"]
                client.post(f"/v1/workflows/{wid}/pause")
                received += read_sse(stream, 3)
            # While disconnected, more happens.
            client.post(f"/v1/workflows/{wid}/resume")
            client.post(f"/v1/workflows/{wid}/steps/reserve-inventory/start")
            last_id = received[-1].id
            with client.stream("GET", "/v1/events/stream",
                               headers={"Last-Event-ID": str(last_id)}) as stream:
                client.post(f"/v1/workflows/{wid}/cancel")
                received += read_sse(stream, 3)
        ids = [e.id for e in received]
        assert ids == all_positions(app, after=head)
        assert [e.data["event_type"] for e in received] == [
            "Created", "Started", "Paused", "Resumed", "StepStarted", "Cancelled"]
        assert all(e.data["position"] == e.id for e in received)
        assert {e.data["workflow_id"] for e in received} == {wid}

    def test_streams_from_a_position_and_filters(self, live_api: BackgroundServer) -> None:
        with httpx.Client(base_url=live_api.url, timeout=10) as client:
            mine = start_caller_driven(client, correlation_id="corr-mine")
            start_caller_driven(client, correlation_id="corr-other")
            with client.stream("GET", "/v1/events/stream",
                               params={"after": 0, "workflow_id": mine["id"]}) as stream:
                client.post(f"/v1/workflows/{mine['id']}/pause")
                events = read_sse(stream, 3)
            assert [e.data["event_type"] for e in events] == ["Created", "Started", "Paused"]
            with client.stream("GET", "/v1/events/stream",
                               params=[("after", "0"), ("correlation_id", "corr-other"),
                                       ("event_type", "Started")]) as stream:
                events = read_sse(stream, 1)
            assert events[0].data["correlation_id"] == "corr-other"
            assert events[0].data["event_type"] == "Started"

    def test_a_malformed_last_event_id_is_422(self, live_api: BackgroundServer) -> None:
        # Raw bytes beyond ASCII reach the app as Latin-1 text: b"\xb2" arrives as "²".
        hostile: list[str | bytes] = ["abc", b"\xb2", b"\xa0", b"1\xb9", *NOT_POSITIONS,
                                      "1 2", "0" * 21]
        for value in hostile:
            raw = value if isinstance(value, bytes) else value.encode()
            answer = httpx.get(f"{live_api.url}/v1/events/stream",
                               headers=[(b"Last-Event-ID", raw)], timeout=5)
            assert_problem(answer, 422, "validation")
