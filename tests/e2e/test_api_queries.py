"""Queries over the read models: progress, audit, load, projections; health and metrics."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from application.load_balancing import LoadBalancer
from application.settings import ApiConfig
from application.workflows import Workflows
from projections import audit
from tests.e2e import api_support
from tests.e2e.api_support import assert_problem, build_app, start_caller_driven

# Fixtures this module uses.
api = api_support.api
read_models = api_support.read_models
make_client = api_support.make_client


def fresh(position: int, **params: Any) -> dict[str, Any]:
    """Query parameters that read our own writes up to `position`."""
    return {"min_position": position, **params}


def walk(api: TestClient, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a paged list, following `next_cursor`."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = api.get(path, params=query)
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return items


class TestProgress:
    def test_a_started_workflow_is_visible_when_its_position_is_applied(
            self, api: TestClient) -> None:
        started = start_caller_driven(api, priority="HIGH", correlation_id="ord-1",
                                      triggered_by="oms")
        row = api.get(f"/v1/workflows/{started['id']}", params=fresh(started["position"]))
        assert row.status_code == 200, row.text
        body = row.json()
        assert (body["id"], body["status"], body["priority"]) == (
            started["id"], "EXECUTING", "HIGH")
        assert (body["definition"], body["definition_version"], body["type"]) == (
            "order-fulfillment", 2, "ORDER_FULFILLMENT")
        assert (body["steps_done"], body["steps_total"], body["progress_percent"]) == (0, 4, 0)
        assert (body["correlation_id"], body["triggered_by"]) == ("ord-1", "oms")
        assert body["current_step"] == "reserve-inventory"
        assert body["position"] == started["position"]

    def test_progress_follows_the_steps(self, api: TestClient) -> None:
        wid = start_caller_driven(api)["id"]
        api.post(f"/v1/workflows/{wid}/steps/reserve-inventory/start")
        done = api.post(f"/v1/workflows/{wid}/steps/reserve-inventory/result",
                        json={"output": {"reservationId": "R-1"}}).json()
        body = api.get(f"/v1/workflows/{wid}", params=fresh(done["position"])).json()
        assert (body["steps_done"], body["progress_percent"]) == (1, 25.0)
        assert body["current_step"] == "assign-robot"

    def test_an_unknown_workflow_is_404(self, api: TestClient) -> None:
        assert_problem(api.get("/v1/workflows/7d3c8f7e-0000-4000-8000-000000000002"), 404,
                       "workflow-not-found")
        assert_problem(api.get("/v1/workflows/7d3c8f7e-0000-4000-8000-000000000002/audit"),
                       404)

    def test_filters_by_status_priority_type_definition_and_correlation(
            self, api: TestClient) -> None:
        high = start_caller_driven(api, priority="HIGH", correlation_id="c-high")
        low = start_caller_driven(api, priority="LOW", correlation_id="c-low")
        paused = api.post(f"/v1/workflows/{low['id']}/pause").json()
        inline = api.post("/v1/workflows", json={
            "steps": [{"step_id": "pick", "service": "warehouse-service", "operation": "pick"}],
            "type": "PICKING", "driven_by": "caller"}).json()
        wait = max(paused["position"], inline["position"])

        def ids(**params: Any) -> set[str]:
            answer = api.get("/v1/workflows", params=fresh(wait, **params))
            assert answer.status_code == 200, answer.text
            return {r["id"] for r in answer.json()["items"]}

        assert ids() == {high["id"], low["id"], inline["id"]}
        assert ids(status="PAUSED") == {low["id"]}
        assert ids(status=["PAUSED", "EXECUTING"]) == {high["id"], low["id"], inline["id"]}
        assert ids(priority="HIGH") == {high["id"]}
        assert ids(type="PICKING") == {inline["id"]}
        assert ids(definition="order-fulfillment") == {high["id"], low["id"]}
        assert ids(correlation_id="c-low") == {low["id"]}
        assert ids(status="COMPLETED") == set()
        assert ids(created_before="2000-01-01T00:00:00Z") == set()
        later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
        assert ids(created_after=later) == set()

    def test_sorts_and_pages_with_a_stable_order(self, api: TestClient) -> None:
        started = [start_caller_driven(api, priority=p)
                   for p in ("LOW", "HIGH", "NORMAL", "HIGH", "LOW")]
        wait = started[-1]["position"]
        newest_first = walk(api, "/v1/workflows", limit=2, min_position=wait)
        assert [r["id"] for r in newest_first] == [s["id"] for s in reversed(started)]
        oldest_first = walk(api, "/v1/workflows", limit=1, order="asc")
        assert [r["id"] for r in oldest_first] == [s["id"] for s in started]
        by_priority = walk(api, "/v1/workflows", limit=2, sort="priority", order="desc")
        assert [r["priority"] for r in by_priority] == ["HIGH", "HIGH", "NORMAL", "LOW", "LOW"]
        assert len({r["id"] for r in by_priority}) == 5

    def test_pagination_edges(self, api: TestClient) -> None:
        started = start_caller_driven(api)
        one = api.get("/v1/workflows", params=fresh(started["position"], limit=1)).json()
        assert len(one["items"]) == 1 and one["next_cursor"] is None
        most = api.get("/v1/workflows", params={"limit": 500}).json()
        assert len(most["items"]) == 1
        for limit in (0, 501, -1):
            assert_problem(api.get("/v1/workflows", params={"limit": limit}), 422)
        assert_problem(api.get("/v1/workflows", params={"cursor": "not-a-cursor"}), 422,
                       "validation")
        second = start_caller_driven(api)
        cursor = api.get("/v1/workflows", params=fresh(second["position"], limit=1)
                         ).json()["next_cursor"]
        assert cursor is not None
        # A cursor belongs to the query that issued it.
        assert_problem(api.get("/v1/workflows", params={"cursor": cursor,
                                                        "sort": "updated_at"}), 422)
        assert_problem(api.get("/v1/workflows", params={"status": "DONE"}), 422)
        assert_problem(api.get("/v1/workflows", params={"created_after": "soon"}), 422)

    def test_a_time_is_iso_8601_never_a_unix_timestamp(self, api: TestClient) -> None:
        wid = start_caller_driven(api)["id"]
        for number in ("0", "1.5", "1700000000"):
            for path, name in (("/v1/workflows", "created_after"),
                               ("/v1/workflows", "created_before"), ("/v1/audit", "after"),
                               ("/v1/audit", "before"), (f"/v1/workflows/{wid}/state", "at")):
                assert_problem(api.get(path, params={name: number}), 422, "validation")
        assert api.get("/v1/audit", params={"after": "2000-01-01"}).status_code == 200
        assert api.get("/v1/audit", params={"after": "2000-01-01T00:00:00+02:00"}
                       ).status_code == 200

    def test_min_position_waits_then_times_out_with_504(
            self, app: Workflows, read_models: api_support.QuerySide) -> None:
        quick = ApiConfig(min_position_timeout=0.3)
        # No projector runs: the read models never reach the new workflow's position.
        with TestClient(build_app(app, read_models, config=quick, projectors=False)) as client:
            started = start_caller_driven(client)
            body = assert_problem(client.get("/v1/workflows", params=fresh(started["position"])),
                                  504, "read-model-behind")
            assert body["min_position"] == started["position"]
            with read_models.runner():
                # The projector may need longer than the short timeout on a busy machine.
                read_models.views.wait(started["position"], timeout=10)
                assert client.get("/v1/workflows", params=fresh(started["position"])
                                  ).status_code == 200
            assert_problem(client.get("/v1/workflows", params={"min_position": -1}), 422)

    def test_min_position_beyond_the_store_is_422_at_once(
            self, app: Workflows, read_models: api_support.QuerySide) -> None:
        # With nothing projecting and a wait long enough to notice, a position the store
        # has is a 504 after the wait; one it does not have is a 422 without any wait.
        quick = ApiConfig(min_position_timeout=0.3)
        with TestClient(build_app(app, read_models, config=quick, projectors=False)) as client:
            started = start_caller_driven(client)
            wid, latest = started["id"], started["position"]
            routes = ["/v1/workflows", f"/v1/workflows/{wid}", f"/v1/workflows/{wid}/audit",
                      "/v1/audit", "/v1/load", f"/v1/workflows/{wid}/history", "/v1/events",
                      "/v1/definitions"]
            for path in routes:
                for beyond in (latest + 1, 2**63 - 1):
                    body = assert_problem(client.get(path, params=fresh(beyond)), 422,
                                          "position-not-written")
                    assert (body["min_position"], body["latest"]) == (beyond, latest), path
            assert client.get(f"/v1/workflows/{wid}/history", params=fresh(latest)
                              ).status_code == 200
            assert client.get("/v1/events", params=fresh(latest)).status_code == 200


class TestAudit:
    def test_a_workflows_audit_trail_in_order(self, api: TestClient) -> None:
        wid = start_caller_driven(api, correlation_id="ord-audit", triggered_by="oms")["id"]
        api.post(f"/v1/workflows/{wid}/pause", json={"reason": "check"})
        api.post(f"/v1/workflows/{wid}/resume")
        api.post(f"/v1/workflows/{wid}/steps/reserve-inventory/start")
        last = api.post(f"/v1/workflows/{wid}/steps/reserve-inventory/result",
                        json={"output": {"reservationId": "R-9"}}).json()
        rows = walk(api, f"/v1/workflows/{wid}/audit", limit=2,
                    min_position=last["position"])
        assert [r["event_type"] for r in rows] == [
            "Created", "Started", "Paused", "Resumed", "StepStarted", "StepExecuted"]
        assert [r["version"] for r in rows] == [1, 2, 3, 4, 5, 6]
        assert rows[-1]["position"] == last["position"]
        assert {r["correlation_id"] for r in rows} == {"ord-audit"}
        assert rows[-1]["step_id"] == "reserve-inventory"
        assert rows[2]["data"]["reason"] == "check"
        assert {"position", "workflow_id", "version", "event_type", "timestamp", "actor",
                "correlation_id", "step_id", "data"} <= set(rows[0])

    def test_searches_across_workflows(self, api: TestClient) -> None:
        first = start_caller_driven(api, correlation_id="c-1")
        second = start_caller_driven(api, correlation_id="c-2")
        last = api.post(f"/v1/workflows/{second['id']}/cancel").json()
        wait = last["position"]

        def search(**params: Any) -> list[dict[str, Any]]:
            return walk(api, "/v1/audit", min_position=wait, **params)

        assert {r["workflow_id"] for r in search()} == {first["id"], second["id"]}
        assert [r["event_type"] for r in search(correlation_id="c-2")] == [
            "Created", "Started", "Cancelled"]
        assert [r["workflow_id"] for r in search(event_type="Cancelled")] == [second["id"]]
        assert len(search(event_type=["Started", "Cancelled"])) == 3
        assert [r["event_type"] for r in search(workflow_id=first["id"])] == [
            "Created", "Started"]
        newest = search(order="desc", limit=1)
        assert [r["position"] for r in newest] == sorted(
            (r["position"] for r in newest), reverse=True)
        assert search(before="2000-01-01T00:00:00Z") == []
        now = datetime.now(UTC)
        assert len(search(after=(now - timedelta(minutes=5)).isoformat())) == 5
        assert search(after=(now + timedelta(minutes=5)).isoformat()) == []
        assert_problem(api.get("/v1/audit", params={"event_type": "no spaces"}), 422)
        assert_problem(api.get("/v1/audit", params={"workflow_id": "nope"}), 422)


class TestAuditCounts:
    def test_counts_per_type_and_bucket_with_every_bucket_present(
            self, api: TestClient) -> None:
        before_any = datetime.now(UTC)
        ids = [start_caller_driven(api)["id"] for _ in range(3)]
        last = api.post(f"/v1/workflows/{ids[0]}/cancel").json()
        after = (before_any - timedelta(hours=1)).isoformat()
        answer = api.get("/v1/audit/counts", params=fresh(
            last["position"], event_type=["Created", "Workflow.Cancelled", "Failed"],
            after=after, bucket_seconds=600))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["totals"] == {"Created": 3, "Cancelled": 1, "Failed": 0}
        assert body["bucket_seconds"] == 600
        assert datetime.fromisoformat(body["after"]) == datetime.fromisoformat(after)
        assert datetime.fromisoformat(body["before"]) > datetime.fromisoformat(last_time(
            api, last["position"]))
        starts = [datetime.fromisoformat(b["start"]) for b in body["buckets"]]
        # An hour and a bit from an unaligned start, per 10 minutes: 7 or 8 buckets, each
        # on a multiple of 600 s since the epoch, none missing.
        assert len(starts) in (7, 8)
        assert all(s.timestamp() % 600 == 0 for s in starts)
        assert starts == [starts[0] + timedelta(minutes=10 * i) for i in range(len(starts))]
        assert starts[0] <= datetime.fromisoformat(after) < starts[1]
        assert all(set(b["counts"]) == {"Created", "Cancelled", "Failed"}
                   for b in body["buckets"])
        assert {k: sum(b["counts"][k] for b in body["buckets"]) for k in body["totals"]} == \
            body["totals"]
        # The same numbers as the rows themselves.
        rows = walk(api, "/v1/audit", event_type=["Created", "Cancelled"], after=after)
        assert len(rows) == 4

    def test_the_window_is_half_open_and_before_may_be_given(self, api: TestClient) -> None:
        wid = start_caller_driven(api)["id"]
        last = api.post(f"/v1/workflows/{wid}/cancel").json()
        at = last_time(api, last["position"])

        def cancelled(after: str, before: str) -> int:
            body = api.get("/v1/audit/counts", params={
                "event_type": "Cancelled", "after": after, "before": before,
                "bucket_seconds": 1}).json()
            return body["totals"]["Cancelled"]  # type: ignore[no-any-return]

        moment = datetime.fromisoformat(at)
        assert cancelled(at, (moment + timedelta(microseconds=1)).isoformat()) == 1
        assert cancelled((moment - timedelta(seconds=1)).isoformat(), at) == 0

    @pytest.mark.parametrize(("params", "field"), [
        ({"before": "2026-01-01T00:00:00Z"}, "before"),
        ({"before": "2025-12-31T23:59:59Z"}, "before"),
        ({"after": "2025-11-30T23:59:59Z"}, "after"),
        ({"after": "2000-01-01T00:00:00Z", "before": None}, "after"),
        ({"before": "2026-01-02T00:00:01Z", "bucket_seconds": 60}, "bucket_seconds"),
        ({"event_type": "Finished"}, "event_type"),
        ({"event_type": ["Completed", "Workflow.Finished"]}, "event_type"),
    ])
    def test_a_window_the_read_model_does_not_take_is_a_422(
            self, api: TestClient, params: dict[str, Any], field: str) -> None:
        query = {"event_type": "Completed", "after": "2026-01-01T00:00:00Z",
                 "before": "2026-01-02T00:00:00Z", "bucket_seconds": 3600, **params}
        head = api.get("/v1/events").json()["head"]
        body = assert_problem(api.get("/v1/audit/counts", params={
            k: v for k, v in query.items() if v is not None}), 422, "validation")
        assert body["field"] == field, body
        assert api.get("/v1/events").json()["head"] == head

    @pytest.mark.parametrize("params", [
        {"event_type": None}, {"event_type": ""}, {"event_type": "no spaces"},
        {"event_type": [f"T{n}" for n in range(11)]}, {"after": None}, {"after": "0"},
        {"after": "soon"}, {"bucket_seconds": 0}, {"bucket_seconds": 86_401},
        {"bucket_seconds": "1.5"}, {"before": "1700000000"},
    ])
    def test_malformed_parameters_are_a_422(self, api: TestClient,
                                            params: dict[str, Any]) -> None:
        query = {"event_type": "Completed", "after": "2026-01-01T00:00:00Z",
                 "bucket_seconds": 3600, **params}
        assert_problem(api.get("/v1/audit/counts", params={
            k: v for k, v in query.items() if v is not None}), 422, "validation")

    def test_the_ends_of_time_are_answered_not_a_server_error(self, api: TestClient) -> None:
        def counts(after: str, before: str, width: int) -> Any:
            return api.get("/v1/audit/counts", params={
                "event_type": "Completed", "after": after, "before": before,
                "bucket_seconds": width})

        last = counts("9999-12-31T23:59:00Z", "9999-12-31T23:59:59.999999Z", 1)
        assert last.status_code == 200, last.text
        assert len(last.json()["buckets"]) == 60
        # The first 7-second bucket would start before year 1.
        body = assert_problem(counts("0001-01-01T00:00:00Z", "0001-01-01T00:01:00Z", 7), 422)
        assert body["field"] == "after"
        assert counts("0001-01-01T00:00:00Z", "0001-01-01T00:01:00Z", 60).status_code == 200
        assert_problem(counts("0001-01-01T00:00:00+01:00", "0001-01-01T00:01:00Z", 60), 422)

    def test_the_documented_bounds_are_the_read_models(self, api: TestClient) -> None:
        operation = api.get("/openapi.json").json()["paths"]["/v1/audit/counts"]["get"]
        schemas = {p["name"]: p["schema"] for p in operation["parameters"]}
        assert (schemas["event_type"]["minItems"], schemas["event_type"]["maxItems"]) == (
            1, audit.MAX_COUNT_TYPES)
        assert (schemas["bucket_seconds"]["minimum"], schemas["bucket_seconds"]["maximum"]) \
            == (1, audit.MAX_BUCKET_SECONDS)
        assert f"{audit.MAX_COUNT_WINDOW.days} days" in operation["description"]
        assert f"{audit.MAX_BUCKETS:,} buckets" in operation["description"]

    def test_a_reader_may_count(self, make_client: Any) -> None:
        reader = make_client("reader-key")
        answer = reader.get("/v1/audit/counts", params={
            "event_type": "Completed", "after": "2026-01-01T00:00:00Z",
            "before": "2026-01-01T01:00:00Z", "bucket_seconds": 3600})
        assert answer.status_code == 200, answer.text
        assert answer.json()["buckets"] == [
            {"start": "2026-01-01T00:00:00Z", "counts": {"Completed": 0}}]
        assert_problem(make_client().get("/v1/audit/counts", params={
            "event_type": "Completed", "after": "2026-01-01T00:00:00Z"}), 401)


def last_time(api: TestClient, position: int) -> str:
    """The time of the audit row at `position` (as the API writes it)."""
    page = api.get("/v1/audit", params=fresh(position, order="desc", limit=1)).json()
    assert page["items"][0]["position"] == position
    return page["items"][0]["timestamp"]  # type: ignore[no-any-return]


class TestLoadAndProjections:
    def test_load_per_service_counts_steps_in_flight(self, api: TestClient) -> None:
        wid = start_caller_driven(api)["id"]
        started = api.post(f"/v1/workflows/{wid}/steps/reserve-inventory/start").json()
        rows = api.get("/v1/load", params=fresh(started["position"])).json()
        assert rows["next_cursor"] is None
        inventory = [r for r in rows["items"] if r["service"] == "inventory-service"]
        assert inventory and inventory[0]["in_flight"] == 1
        assert_problem(api.get("/v1/load", params={"window_seconds": 0}), 422)

    def test_load_commands_need_a_load_balancer_in_the_process(self, api: TestClient) -> None:
        assert_problem(api.post("/v1/load/rebalance"), 503, "load-balancer-unavailable")
        assert_problem(api.post("/v1/load/metrics", json={
            "instance_id": "inv-01", "service_name": "inventory-service", "cpu_percent": 75,
            "memory_percent": 60, "active_requests": 50, "queue_depth": 100,
            "avg_response_time_ms": 250, "error_rate": 0.05}), 503)
        assert_problem(api.post("/v1/load/metrics", json={"instance_id": "x"}), 422)

    def test_reported_metrics_and_rebalancing_show_in_the_load_rows(
            self, app: Workflows, read_models: api_support.QuerySide) -> None:
        instances = ["http://inv-1/inventory-service", "http://inv-2/inventory-service"]
        balancer = LoadBalancer(app, {"inventory-service": instances})
        metrics = {"instance_id": instances[0], "service_name": "inventory-service",
                   "cpu_percent": 75, "memory_percent": 60, "active_requests": 50,
                   "queue_depth": 100, "avg_response_time_ms": 250, "error_rate": 0.05}
        with TestClient(build_app(app, read_models, load_commands=balancer)) as client:
            reported = client.post("/v1/load/metrics", json=metrics)
            assert reported.status_code == 200, reported.text
            assert (reported.json()["load_score"], reported.json()["health"]) == (
                43.5, "HEALTHY")
            rows = client.get("/v1/load", params=fresh(reported.json()["position"])).json()
            row = next(r for r in rows["items"] if r["instance"] == instances[0])
            assert (row["service"], row["metrics"]["cpu_percent"]) == ("inventory-service", 75)
            assert_problem(client.post("/v1/load/metrics", json={
                **metrics, "instance_id": "http://elsewhere"}), 404)
            assert_problem(client.post("/v1/load/metrics", json={
                **metrics, "error_rate": 1.5}), 422)
            rebalanced = client.post("/v1/load/rebalance").json()
            decision = rebalanced["decisions"][0]
            assert decision["service"] == "inventory-service"
            assert set(decision["target_shares"]) == set(instances)
            assert abs(sum(decision["target_shares"].values()) - 1.0) < 1e-6
            assert rebalanced["position"] == decision["position"]

    def test_projection_status_reports_position_and_lag(self, api: TestClient) -> None:
        started = start_caller_driven(api)
        api.get("/v1/workflows", params=fresh(started["position"]))
        api.get("/v1/audit", params=fresh(started["position"]))
        listed = api.get("/v1/projections").json()
        assert listed["next_cursor"] is None
        statuses = {s["name"]: s for s in listed["items"]}
        assert set(statuses) == {"progress", "load", "audit", "relay"}
        for status in statuses.values():
            assert status["head"] >= started["position"]
            assert status["lag_events"] == status["head"] - status["position"]
        relay = statuses.pop("relay")
        assert (relay["state"], relay["generation"]) == ("stopped", None)  # no relay runs
        for status in statuses.values():
            assert status["state"] in ("running", "standby", "rebuilding")
            assert status["rebuild_needed"] is None  # a fresh store: every row is complete

    def test_rebuilds_a_projection_blue_green(self, api: TestClient) -> None:
        started = start_caller_driven(api)
        api.get("/v1/workflows", params=fresh(started["position"]))

        def progress() -> dict[str, Any]:
            listed = api.get("/v1/projections").json()["items"]
            return next(s for s in listed if s["name"] == "progress")

        before = progress()["generation"]
        answer = api.post("/v1/projections/progress/rebuild")
        assert answer.status_code == 202
        assert answer.json() == {"name": "progress", "state": "rebuilding"}
        deadline = time.monotonic() + 20
        while progress()["generation"] == before or progress()["state"] == "rebuilding":
            assert time.monotonic() < deadline, progress()
            time.sleep(0.05)
        row = api.get(f"/v1/workflows/{started['id']}", params=fresh(started["position"]))
        assert row.status_code == 200
        assert row.json()["id"] == started["id"]
        assert_problem(api.post("/v1/projections/nothing/rebuild"), 404,
                       "projection-not-found")


class TestOperations:
    def test_liveness_and_readiness(self, api: TestClient) -> None:
        assert api.get("/healthz").json() == {"status": "ok"}
        started = start_caller_driven(api)
        api.get("/v1/audit", params=fresh(started["position"]))
        api.get("/v1/load", params=fresh(started["position"]))
        ready = api.get("/readyz", params=fresh(started["position"]))
        assert ready.status_code == 200, ready.text
        assert ready.json()["database"] == "ok"
        assert {p["name"] for p in ready.json()["projections"]} == {"progress", "load", "audit"}

    def test_not_ready_while_projections_lag_too_far(
            self, app: Workflows, read_models: api_support.QuerySide) -> None:
        strict = ApiConfig(ready_max_lag_events=0)
        with TestClient(build_app(app, read_models, config=strict, projectors=False)) as client:
            start_caller_driven(client)
            answer = client.get("/readyz")
        assert answer.status_code == 503
        assert answer.json()["status"] == "not ready"
        assert not all(p["ready"] for p in answer.json()["projections"])

    def test_prometheus_metrics(self, api: TestClient) -> None:
        started = start_caller_driven(api)
        api.get("/v1/workflows", params=fresh(started["position"]))
        text = api.get("/metrics").text
        assert 'wes_http_request_duration_seconds_count{method="POST",route="/v1/workflows",' \
               'status="201"}' in text
        assert f"wes_events_appended_total {float(started['position'])}" in text
        assert 'wes_projection_lag_events{projection="progress"}' in text
        assert "wes_steps_run" in text

    def test_the_openapi_document_is_complete(self, api: TestClient) -> None:
        spec = api.get("/openapi.json").json()
        for path, operations in spec["paths"].items():
            for method, operation in operations.items():
                assert operation.get("summary"), (method, path)
                responses = operation["responses"]
                assert any(code.startswith("2") for code in responses), (method, path)
                if path.startswith("/v1/"):
                    assert {"401", "422", "503"} <= set(responses), (method, path)
                    problem = responses["422"]["content"]["application/problem+json"]
                    assert problem["schema"]["$ref"].endswith("/Problem")
        assert "Problem" in spec["components"]["schemas"]
        assert {"APIKeyHeader", "HTTPBearer"} <= set(spec["components"]["securitySchemes"])
        assert api.get("/docs").status_code == 200
