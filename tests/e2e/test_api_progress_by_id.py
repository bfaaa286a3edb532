"""`GET /v1/workflows/{id}` on the event loop: its own asyncio connections, one statement.

The answer must be exactly what the read model's row gives (the worker-thread path, which an
app used without its lifespan still takes), survive connections the server dropped, and keep
the route's auth, waits and errors.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any
from uuid import UUID

import httpx
from fastapi.testclient import TestClient
from psycopg import sql

from api.query_side import QuerySide
from api.schemas.workflows import Progress
from application.database import Database
from application.workflows import Workflows
from cli.background import BackgroundServer
from tests.e2e import api_support
from tests.e2e.api_support import assert_problem, build_app, start_caller_driven

# Fixtures this module uses.
api = api_support.api
read_models = api_support.read_models
make_client = api_support.make_client
live_api = api_support.live_api

FAILURE = {"error": {"code": "NO_STOCK", "message": "out of stock",
                     "error_type": "BUSINESS_RULE_VIOLATION", "recoverable": False,
                     "service": "inventory-service", "detail": "SKU-1"}}


def expected(read_models: QuerySide, workflow_id: str) -> dict[str, Any]:
    """The row as the read model's synchronous query gives it, in the response schema."""
    row = read_models.views.progress.get(UUID(workflow_id))
    assert row is not None
    return Progress.model_validate(row).model_dump(mode="json")


def workflows_in_several_states(api: TestClient) -> list[tuple[str, int]]:
    """(id, position) of a fresh workflow, one a step further on, one paused with a
    reason, and one compensating after a failure (last error, compensation progress)."""
    fresh = start_caller_driven(api, priority="HIGH", correlation_id="ord-1")
    stepped = start_caller_driven(api)
    api.post(f"/v1/workflows/{stepped['id']}/steps/reserve-inventory/start")
    done = api.post(f"/v1/workflows/{stepped['id']}/steps/reserve-inventory/result",
                    json={"output": {"reservationId": "R-1"}}).json()
    paused = start_caller_driven(api)
    pause = api.post(f"/v1/workflows/{paused['id']}/pause", json={"reason": "inventory count"})
    failed = start_caller_driven(api)
    wid = failed["id"]
    api.post(f"/v1/workflows/{wid}/steps/reserve-inventory/start")
    api.post(f"/v1/workflows/{wid}/steps/reserve-inventory/result", json={"output": {}})
    api.post(f"/v1/workflows/{wid}/steps/assign-robot/start")
    failure = api.post(f"/v1/workflows/{wid}/steps/assign-robot/failure", json=FAILURE)
    assert failure.status_code == 200, failure.text
    assert failure.json()["status"] == "COMPENSATING"
    return [(fresh["id"], fresh["position"]), (stepped["id"], done["position"]),
            (paused["id"], pause.json()["position"]), (wid, failure.json()["position"])]


class TestTheAnswer:
    def test_is_the_read_model_row_in_every_state(
            self, api: TestClient, read_models: QuerySide) -> None:
        assert api.app.state.components.fast is not None  # the event-loop path serves it
        for wid, position in workflows_in_several_states(api):
            response = api.get(f"/v1/workflows/{wid}", params={"min_position": position})
            assert response.status_code == 200, response.text
            assert response.headers["content-type"] == "application/json"
            assert response.json() == expected(read_models, wid)
        compensating = response.json()
        assert compensating["last_error"]["code"] == "NO_STOCK"
        assert compensating["compensation_progress"] == 0.0
        assert compensating["created_at"].endswith("Z")

    def test_is_the_same_from_an_app_used_without_its_lifespan(
            self, api: TestClient, app: Workflows, read_models: QuerySide) -> None:
        started = start_caller_driven(api)
        live = api.get(f"/v1/workflows/{started['id']}",
                       params={"min_position": started["position"]})
        # Without `with`, the client never runs the lifespan: no async queries are open, and
        # the route falls back to the synchronous query in a worker thread.
        plain = TestClient(build_app(app, read_models, projectors=False))
        assert plain.app.state.components.fast is None
        answer = plain.get(f"/v1/workflows/{started['id']}")
        assert answer.status_code == 200, answer.text
        assert answer.json() == live.json() == expected(read_models, started["id"])
        assert_problem(plain.get("/v1/workflows/7d3c8f7e-0000-4000-8000-000000000002"), 404,
                       "workflow-not-found")

    def test_survives_connections_the_server_dropped(
            self, api: TestClient, db: Database) -> None:
        started = start_caller_driven(api)
        path = f"/v1/workflows/{started['id']}"
        first = api.get(path, params={"min_position": started["position"]})
        assert first.status_code == 200
        with db.connect(autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND query LIKE %s",
                (f'%row_to_json%"{db.schema}"%',)).fetchone()
        assert killed is not None and killed[0] >= 1
        again = api.get(path)
        assert again.status_code == 200, again.text
        assert again.json() == first.json()

    def test_keeps_the_routes_errors_and_roles(
            self, api: TestClient, make_client: Any) -> None:
        started = start_caller_driven(api)
        path = f"/v1/workflows/{started['id']}"
        assert api.get(path, params={"min_position": started["position"]}).status_code == 200
        assert_problem(api.get("/v1/workflows/7d3c8f7e-0000-4000-8000-000000000002"), 404,
                       "workflow-not-found")
        assert_problem(api.get("/v1/workflows/not-a-uuid"), 422, "validation")
        assert_problem(api.get(path, params={"min_position": -1}), 422, "validation")
        assert_problem(api.get(path, params={"min_position": 10**12}), 422,
                       "position-not-written")
        assert_problem(make_client().get(path), 401, "unauthenticated")
        # The key is checked first: an unauthenticated caller learns nothing about the rest.
        assert_problem(make_client().get("/v1/workflows/not-a-uuid",
                                         params={"min_position": -1}), 401)
        assert_problem(make_client("guess").get(path), 401, "unauthenticated")
        assert make_client("reader-key").get(path).status_code == 200
        assert make_client("reader-key", header="x-api-key").get(path).status_code == 200


def test_the_async_pool_stops_with_the_app(app: Workflows, read_models: QuerySide) -> None:
    built = build_app(app, read_models, projectors=False)
    with TestClient(built) as client:
        fast = built.state.components.fast
        assert fast is not None
        assert client.get("/v1/workflows/7d3c8f7e-0000-4000-8000-000000000002"
                          ).status_code == 404
    assert built.state.components.fast is None
    assert fast.pool.pool.closed  # type: ignore[attr-defined]


def test_what_the_app_starts_with_is_kept_out_of_full_collections_while_it_runs(
        app: Workflows, read_models: QuerySide) -> None:
    gc.unfreeze()
    with TestClient(build_app(app, read_models, projectors=False)):
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0  # collectable again once the app stopped


def test_a_database_error_is_a_problem_not_a_crash(
        app: Workflows, read_models: QuerySide, db: Database) -> None:
    """A read that fails for another reason than a dropped connection is not retried: the
    error handlers answer it (here the read model's table is gone: 500, logged)."""
    with TestClient(build_app(app, read_models, projectors=False),
                    raise_server_exceptions=False) as client, \
            db.connect(autocommit=True) as admin:
        admin.execute(sql.SQL("ALTER VIEW {}.wes_progress RENAME TO wes_progress_gone"
                              ).format(sql.Identifier(db.schema)))
        answer = client.get("/v1/workflows/7d3c8f7e-0000-4000-8000-000000000002")
        assert_problem(answer, 500, "internal")


def test_concurrent_requests_each_get_their_own_row(
        live_api: BackgroundServer, read_models: QuerySide) -> None:
    """Lookups in flight together share one statement; each answer is still its own."""
    with httpx.Client(base_url=live_api.url) as client:
        started = [start_caller_driven(client, correlation_id=f"ord-{i}") for i in range(12)]
        last = max(s["position"] for s in started)
        assert client.get(f"/v1/workflows/{started[0]['id']}",
                          params={"min_position": last}).status_code == 200
    unknown = "7d3c8f7e-0000-4000-8000-000000000002"
    wanted = [s["id"] for s in started] * 3 + [unknown] * 3

    async def fetch_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=live_api.url) as client:
            return list(await asyncio.gather(*(client.get(f"/v1/workflows/{w}")
                                               for w in wanted)))

    for wid, answer in zip(wanted, asyncio.run(fetch_all()), strict=True):
        if wid == unknown:
            assert_problem(answer, 404, "workflow-not-found")
        else:
            assert answer.status_code == 200, answer.text
            assert answer.json() == expected(read_models, wid)


def test_the_openapi_document_shows_the_key_headers_where_a_role_is_checked(
        api: TestClient) -> None:
    spec = api.get("/openapi.json").json()
    keys = [{"APIKeyHeader": []}, {"HTTPBearer": []}]
    assert spec["paths"]["/v1/workflows/{workflow_id}"]["get"]["security"] == keys
    assert spec["paths"]["/v1/workflows"]["post"]["security"] == keys
    assert spec["paths"]["/v1/definitions"]["post"]["security"] == keys
    for path in ("/healthz", "/readyz", "/metrics"):
        assert "security" not in spec["paths"][path]["get"], path
    assert spec["components"]["securitySchemes"] == {
        "APIKeyHeader": {"type": "apiKey", "description": "An API key from WES_API_KEYS.",
                         "in": "header", "name": "X-API-Key"},
        "HTTPBearer": {"type": "http", "description": "An API key from WES_API_KEYS, as a "
                                                     "bearer token.", "scheme": "bearer"}}
