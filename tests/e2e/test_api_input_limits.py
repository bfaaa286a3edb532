"""The API's edges: request size limit, input schemas, unknown services, 405 `Allow`.

Every refused request is checked to have recorded nothing: the event store holds the same
events before and after.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from application.engine.python_handler import PythonHandler
from application.engine.registry import ServiceRegistry
from application.errors import ConfigurationError
from application.settings import ApiConfig, Settings
from application.workflows import Workflows
from bootstrap.container import EngineServices
from cli.background import serve_in_background
from tests.e2e import api_support
from tests.e2e.api_support import TEST_CONFIG, assert_problem, build_app

api = api_support.api
read_models = api_support.read_models

LIMIT = 4096
SEED_INPUTS = [
    {"orderId": "ORD-12345"},
    {"orderId": "ORD-1", "sku": "SKU-12345", "quantity": 1},
    {"orderId": "ORD-1", "items": [{"sku": "SKU-1", "quantity": 2}]},
]


def recorded(app: Workflows) -> int:
    """How many events the store holds."""
    return len(app.recorder.select_notifications(start=1, limit=1_000_000))


@pytest.fixture
def small(app: Workflows, read_models: api_support.QuerySide) -> Iterator[TestClient]:
    """The API with a 4 KiB body limit."""
    config = ApiConfig(**{**TEST_CONFIG.__dict__, "max_body_bytes": LIMIT})
    with TestClient(build_app(app, read_models, config=config, projectors=False)) as client:
        yield client


@pytest.fixture
def checked(app: Workflows, api: TestClient) -> TestClient:
    """The API of an app that knows the simulated services and one Python handler."""
    python = PythonHandler()
    python.register("label-printer", lambda call: {}, operation="print")
    app.use_services(EngineServices(ServiceRegistry.simulated("http://127.0.0.1:9"), python))
    return api


def big_start(size: int) -> bytes:
    return httpx.Request("POST", "/", json={
        "definition": "order-fulfillment", "driven_by": "caller",
        "input": {"orderId": "ORD-1", "note": "x" * size}}).content


class TestBodyLimit:
    def test_a_declared_length_over_the_limit_is_413_and_records_nothing(
            self, small: TestClient, app: Workflows) -> None:
        before = recorded(app)
        response = small.post("/v1/workflows", content=big_start(LIMIT),
                              headers={"content-type": "application/json"})
        body = assert_problem(response, 413, "body-too-large")
        assert body["limit"] == LIMIT and "WES_MAX_BODY_BYTES" in body["detail"]
        assert recorded(app) == before

    def test_a_body_within_the_limit_is_served(self, small: TestClient, app: Workflows) -> None:
        before = recorded(app)
        response = small.post("/v1/workflows", content=big_start(LIMIT // 2),
                              headers={"content-type": "application/json"})
        assert response.status_code == 201, response.text
        assert recorded(app) == before + 2

    def test_a_chunked_body_is_counted_while_it_is_read(
            self, app: Workflows, read_models: api_support.QuerySide) -> None:
        config = ApiConfig(**{**TEST_CONFIG.__dict__, "max_body_bytes": LIMIT})
        server = serve_in_background(build_app(app, read_models, config=config,
                                               projectors=False))
        try:
            payload = big_start(LIMIT * 4)

            def chunks() -> Iterator[bytes]:
                for i in range(0, len(payload), 1000):
                    yield payload[i:i + 1000]

            before = recorded(app)
            with httpx.Client(base_url=server.url, timeout=10) as client:
                response = client.post("/v1/workflows", content=chunks(),
                                       headers={"content-type": "application/json"})
                assert "content-length" not in response.request.headers
                assert_problem(response, 413, "body-too-large")
                assert recorded(app) == before
                # The server still serves afterwards.
                assert client.get("/healthz").status_code == 200
        finally:
            server.stop()

    def test_the_default_limit_is_one_mebibyte(self) -> None:
        assert ApiConfig().max_body_bytes == Settings.from_env({}).api.max_body_bytes == 1 << 20
        assert Settings.from_env({"WES_MAX_BODY_BYTES": "10"}).api.max_body_bytes == 10
        for bad in ("0", "-1", "1MB"):
            with pytest.raises(ConfigurationError, match="WES_MAX_BODY_BYTES"):
                Settings.from_env({"WES_MAX_BODY_BYTES": bad})


class TestInputSchema:
    @pytest.mark.parametrize("given", SEED_INPUTS)
    def test_the_builtin_takes_the_seeds_input(self, api: TestClient, given: dict[str, Any]
                                               ) -> None:
        response = api.post("/v1/workflows", json={"definition": "order-fulfillment",
                                                   "driven_by": "caller", "input": given})
        assert response.status_code == 201, response.text

    @pytest.mark.parametrize(("body", "field"), [
        ({"definition": "order-fulfillment"}, "input.orderId"),
        ({"definition": "order-fulfillment",
          "input": {"orderId": "O", "items": [{"sku": "S", "quantity": 0}]}},
         "input.items[0].quantity"),
        ({"definition": "order-fulfillment", "input": {"orderId": "O", "sku": "S"}},
         "input.quantity"),
    ])
    def test_a_start_that_does_not_fit_is_422_naming_the_field_and_records_nothing(
            self, api: TestClient, app: Workflows, body: dict[str, Any], field: str) -> None:
        before = recorded(app)
        problem = assert_problem(api.post("/v1/workflows", json=body), 422, "validation")
        assert problem["field"] == field
        assert problem["detail"].startswith(field)
        assert recorded(app) == before

    def test_a_registered_schema_is_checked_and_shown(self, api: TestClient,
                                                      app: Workflows) -> None:
        definition = {"name": "labels", "steps": [
            {"step_id": "print", "service": "label-printer", "operation": "print"}],
            "input_schema": {"type": "object", "required": ["copies"],
                             "properties": {"copies": {"type": "integer", "maximum": 5}}}}
        assert api.post("/v1/definitions", json=definition).status_code == 201
        assert api.get("/v1/definitions/labels").json()["input_schema"] == \
            definition["input_schema"]
        before = recorded(app)
        problem = assert_problem(api.post("/v1/workflows", json={
            "definition": "labels", "input": {"copies": 6}}), 422)
        assert problem["field"] == "input.copies"
        assert recorded(app) == before

    def test_a_definition_with_an_invalid_schema_is_refused(self, api: TestClient,
                                                            app: Workflows) -> None:
        before = recorded(app)
        problem = assert_problem(api.post("/v1/definitions", json={
            "name": "bad", "steps": [{"step_id": "a", "service": "s", "operation": "o"}],
            "input_schema": {"type": "object", "properties": {"x": {"pattern": "^a"}}}}), 422)
        assert problem["field"] == "input_schema.properties.x.pattern"
        assert recorded(app) == before


class TestUnknownServices:
    def test_registering_a_definition_naming_one_is_422_and_records_nothing(
            self, checked: TestClient, app: Workflows) -> None:
        before = recorded(app)
        problem = assert_problem(checked.post("/v1/definitions", json={
            "name": "ghost", "steps": [
                {"step_id": "a", "service": "inventory-service", "operation": "reserve"},
                {"step_id": "b", "service": "ghost-service", "operation": "haunt"}]}), 422)
        assert problem["field"] == "steps[1].service"
        assert "ghost-service" in problem["detail"]
        assert recorded(app) == before

    def test_inline_steps_naming_one_are_422_and_record_nothing(
            self, checked: TestClient, app: Workflows) -> None:
        before = recorded(app)
        problem = assert_problem(checked.post("/v1/workflows", json={"steps": [
            {"step_id": "a", "service": "ghost-service", "operation": "haunt"}]}), 422)
        assert problem["field"] == "steps[0].service"
        assert recorded(app) == before

    def test_a_compensation_naming_one_is_refused(self, checked: TestClient) -> None:
        problem = assert_problem(checked.post("/v1/workflows", json={"steps": [
            {"step_id": "a", "service": "label-printer", "operation": "print",
             "compensation": {"operation": "shred"}}]}), 422)
        assert problem["field"] == "steps[0].compensation"

    def test_known_services_and_python_handlers_are_accepted(self, checked: TestClient
                                                             ) -> None:
        response = checked.post("/v1/workflows", json={
            "definition": "order-fulfillment", "input": {"orderId": "ORD-1"}})
        assert response.status_code == 201, response.text
        response = checked.post("/v1/workflows", json={"steps": [
            {"step_id": "a", "service": "label-printer", "operation": "print"}]})
        assert response.status_code == 201, response.text

    def test_caller_driven_workflows_may_name_any_service(self, checked: TestClient) -> None:
        response = checked.post("/v1/workflows", json={"driven_by": "caller", "steps": [
            {"step_id": "a", "service": "ghost-service", "operation": "haunt"}]})
        assert response.status_code == 201, response.text

    def test_a_registered_definition_is_checked_again_at_start(
            self, api: TestClient, app: Workflows) -> None:
        # Registered before the registry knew better (or the registry changed since).
        assert api.post("/v1/definitions", json={"name": "later", "steps": [
            {"step_id": "a", "service": "ghost-service", "operation": "haunt"}]}
        ).status_code == 201
        app.use_services(EngineServices(ServiceRegistry.simulated("http://127.0.0.1:9"),
                                        PythonHandler()))
        before = recorded(app)
        problem = assert_problem(api.post("/v1/workflows", json={"definition": "later"}), 422)
        assert problem["field"] == "steps[0].service"
        assert recorded(app) == before


class TestMethodNotAllowed:
    def test_allow_names_every_method_of_the_path(self, api: TestClient, app: Workflows
                                                  ) -> None:
        before = recorded(app)
        response = api.request("PUT", "/v1/workflows", json={
            "definition": "order-fulfillment", "input": {"orderId": "ORD-1"}})
        assert_problem(response, 405, "method-not-allowed")
        assert recorded(app) == before
        assert sorted(m.strip() for m in response.headers["allow"].split(",")) == \
            ["GET", "POST"]
        response = api.put("/v1/definitions")
        assert sorted(m.strip() for m in response.headers["allow"].split(",")) == \
            ["GET", "POST"]
