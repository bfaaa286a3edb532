"""Fixtures and helpers for the HTTP API tests: the real app on the test's own schema.

Import the fixtures into a test module (`from tests.e2e.api_support import api, ...`).
`api` is a TestClient on the app with the projectors running in-process and no API keys;
`live_api` is the same app served by uvicorn on a free port (for SSE and concurrency);
`make_client` builds clients on apps with keys.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import KeyRing, Role
from api.ports import LoadCommands
from api.query_side import QuerySide
from application.database import Database
from application.settings import ApiConfig
from application.workflows import Workflows
from bootstrap.container import query_side
from cli.background import BackgroundServer, serve_in_background

TEST_CONFIG = ApiConfig(min_position_timeout=3.0, sse_ping_seconds=1.0,
                        sse_idle_check_seconds=0.2)
KEYS = {"reader-key": Role.READER, "operator-key": Role.OPERATOR, "admin-key": Role.ADMIN}


@pytest.fixture
def read_models(db: Database, app: Workflows) -> Iterator[QuerySide]:
    """The read models on the test's schema."""
    models = query_side(app, db)
    yield models
    models.close()


def build_app(app: Workflows, read_models: QuerySide, *, keys: KeyRing | None = None,
              config: ApiConfig = TEST_CONFIG, projectors: bool = True,
              load_commands: LoadCommands | None = None) -> FastAPI:
    return create_app(workflows=app, queries=read_models.ports, keys=keys, config=config,
                      background=[read_models.runner()] if projectors else [],
                      load_commands=load_commands)


@pytest.fixture
def api(app: Workflows, read_models: QuerySide) -> Iterator[TestClient]:
    """The API with the projectors running and no keys (everything allowed)."""
    with TestClient(build_app(app, read_models)) as client:
        yield client


@pytest.fixture
def make_client(app: Workflows, read_models: QuerySide
                ) -> Iterator[Callable[..., TestClient]]:
    """`make_client(key=None, keys=KEYS)`: a client on an app that requires keys."""
    opened: list[TestClient] = []

    def make(key: str | None = None, keys: dict[str, Role] | None = None,
             header: str = "bearer") -> TestClient:
        ring = KeyRing.from_keys((keys or KEYS).items())
        client = TestClient(build_app(app, read_models, keys=ring, projectors=False))
        if key is not None:
            client.headers.update({"Authorization": f"Bearer {key}"} if header == "bearer"
                                  else {"X-API-Key": key})
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def live_api(app: Workflows, read_models: QuerySide) -> Iterator[BackgroundServer]:
    """The API served by uvicorn on a free loopback port."""
    running = serve_in_background(build_app(app, read_models))
    yield running
    running.stop()


def start_caller_driven(client: TestClient | httpx.Client, **extra: Any) -> dict[str, Any]:
    """Starts an order-fulfillment workflow that no worker touches (the caller drives it)."""
    body = {"definition": "order-fulfillment", "driven_by": "caller",
            "input": {"orderId": "ORD-1", "items": [{"sku": "SKU-1", "quantity": 1}]}, **extra}
    response = client.post("/v1/workflows", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def assert_problem(response: httpx.Response, status: int, slug: str | None = None) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status (and type)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert {"type", "title", "status", "detail"} <= set(body)
    if slug is not None:
        assert body["type"] == f"urn:wes:problem:{slug}"
    return body


# Numbers a client might send where the API expects a count or a position: digits that are
# not ASCII (`str.isdigit()` accepts them, `int()` does not), signs, separators, too many.
NOT_POSITIONS = ["\u00b2", "\u0661\u0662", "\U0001d7d9", "-1", "+1", "1_0", "1.0", "0x1",
                 "9" * 19]


@dataclass
class SseEvent:
    id: int
    data: dict[str, Any]


def read_sse(response: httpx.Response, count: int) -> list[SseEvent]:
    """The next `count` events of an open SSE response (comments and pings skipped)."""
    events: list[SseEvent] = []
    event_id: int | None = None
    data: list[str] = []
    for line in response.iter_lines():
        if line.startswith("id:"):
            event_id = int(line[3:].strip())
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and event_id is not None:
            events.append(SseEvent(event_id, json.loads("\n".join(data))))
            event_id, data = None, []
            if len(events) == count:
                break
    return events
