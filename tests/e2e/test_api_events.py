"""The event feed over HTTP: pages in global order, and the live SSE stream."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from uuid import UUID

import httpx
import psycopg
from fastapi.testclient import TestClient

from application.workflows import Workflows
from cli.background import BackgroundServer, serve_in_background
from tests.e2e import api_support
from tests.e2e.api_support import (
    NOT_POSITIONS,
    SseEvent,
    assert_problem,
    build_app,
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


@contextlib.contextmanager
def append_held_open(app: Workflows, workflow_id: str, pairs: int = 2) -> Iterator[list[int]]:
    """Real events of one workflow (pause/resume pairs) appended in a transaction that
    stays open for the block: an append in flight, as a slow writer leaves it."""
    wf = app.get_workflow(UUID(workflow_id))
    for _ in range(pairs):
        wf.pause(app.clock())
        wf.resume(app.clock())
    stored = [app.mapper.to_stored_event(e) for e in wf.collect_events()]
    # A connection of its own, as another process's would be: the app's pool is small (the
    # connection budget) and its requests must not wait for the one this holds.
    pool = app.store.datastore.pool
    with psycopg.connect(pool.conninfo, **pool.kwargs) as conn, conn.transaction():
        positions = app.store.append(conn, stored)
        assert positions is not None and len(positions) == 2 * pairs
        yield positions
    app.store.announce()


def stream_ids_until(response: httpx.Response, last: int) -> list[int]:
    """Ids of the events an open SSE response sends, up to and including position `last`."""
    ids: list[int] = []
    for line in response.iter_lines():
        if line.startswith("id:"):
            ids.append(int(line[3:]))
            if ids[-1] >= last:
                break
    return ids


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


class TestFeedAroundAnAppendInFlight:
    """An append still in flight below a committed one: no read passes over it, from any
    start position, and no head handed out lies above it."""

    def test_a_page_from_inside_the_append_stops_before_it(
            self, api: TestClient, app: Workflows) -> None:
        held_for, other = start_caller_driven(api), start_caller_driven(api)
        with append_held_open(app, held_for["id"]) as held:
            later = api.post(f"/v1/workflows/{other['id']}/pause").json()["position"]
            assert later == held[-1] + 1
            for after in held[:-1]:
                page = api.get("/v1/events", params={"after": after}).json()
                assert (page["items"], page["next_after"]) == ([], after), after
            assert api.get("/v1/events", params={"after": held[-1]}).json()["items"][0][
                "position"] == later  # above the append nothing is held back
            # The head handed out is where "from now" starts: below the append.
            assert api.get("/v1/events", params={"after": later}).json()["head"] == held[0] - 1
        page = api.get("/v1/events", params={"after": held[1]}).json()
        assert [e["position"] for e in page["items"]] == [*held[2:], later]
        assert [e["event_type"] for e in page["items"]] == ["Paused", "Resumed", "Paused"]
        assert page["head"] == later

    def test_streams_from_now_and_from_inside_the_append_miss_nothing(
            self, api: TestClient, app: Workflows,
            read_models: api_support.QuerySide) -> None:
        held_for, other = start_caller_driven(api), start_caller_driven(api)
        with contextlib.ExitStack() as stack:
            client = stack.enter_context(httpx.Client(timeout=10))
            with append_held_open(app, held_for["id"]) as held:
                later = api.post(f"/v1/workflows/{other['id']}/pause").json()["position"]
                # A server starting now: where its hub starts following is a head too.
                server = serve_in_background(build_app(app, read_models, projectors=False))
                stack.callback(server.stop)
                from_now = stack.enter_context(
                    client.stream("GET", f"{server.url}/v1/events/stream"))
                resumed = stack.enter_context(client.stream(
                    "GET", f"{server.url}/v1/events/stream",
                    headers={"Last-Event-ID": str(held[1])}))
            # The append commits only now, after both streams have started.
            sentinel = api.post(f"/v1/workflows/{other['id']}/resume").json()["position"]
            assert stream_ids_until(from_now, sentinel) == [*held, later, sentinel]
            assert stream_ids_until(resumed, sentinel) == [*held[2:], later, sentinel]


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
