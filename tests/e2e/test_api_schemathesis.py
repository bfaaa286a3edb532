"""Property-based tests of the whole API from its OpenAPI document (schemathesis).

Every operation gets generated requests, valid and invalid; every answer must be no 5xx,
have a documented status code and content type, and match its documented schema. CI runs
a few examples per operation; for a longer run:

    WES_SCHEMATHESIS_EXAMPLES=200 .venv/bin/pytest tests/e2e/test_api_schemathesis.py
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks
from schemathesis.generation.case import Case
from schemathesis.schemas import BaseSchema

from api.auth import KeyRing
from api.dependencies import ApiConfig
from application.load_balancing import LoadBalancer
from application.workflows import Workflows
from tests.e2e import api_support
from tests.e2e.api_support import KEYS, build_app

# Fixtures this module uses.
read_models = api_support.read_models

EXAMPLES = int(os.environ.get("WES_SCHEMATHESIS_EXAMPLES", "6"))
ADMIN = {"Authorization": "Bearer admin-key"}


@schemathesis.check
def no_server_error(ctx: checks.CheckContext, response: checks.Response, case: Case) -> None:
    """No 5xx, except two documented answers: the 504 of a `min_position` the read model
    has not reached (generated positions are mostly far beyond the head), and `/readyz`
    saying "not ready" (the projectors do not run here, so their lag only grows)."""
    if response.status_code == 504 and response.json().get("type") == \
            "urn:wes:problem:read-model-behind":
        return
    if response.status_code == 503 and case.operation.path == "/readyz" and \
            response.json().get("status") == "not ready":
        return
    if response.status_code >= 500:
        raise AssertionError(f"{response.status_code}: {response.text[:1000]}")


CHECKS = [no_server_error, checks.status_code_conformance,
          checks.content_type_conformance, checks.response_headers_conformance,
          checks.response_schema_conformance, checks.negative_data_rejection,
          checks.ignored_auth]


@pytest.fixture
def api_schema(app: Workflows, read_models: api_support.ReadModelSet
               ) -> Iterator[BaseSchema]:
    """The live OpenAPI document of the app (keys required), with the projectors off and a
    short read-your-writes wait, so an unreachable `min_position` answers 504 quickly."""
    quick = ApiConfig(min_position_timeout=0.05)
    balancer = LoadBalancer(app, {"inventory-service": ["http://127.0.0.1:9/inventory"]})
    application = build_app(app, read_models, keys=KeyRing.from_keys(KEYS.items()),
                            config=quick, projectors=False, load_commands=balancer)
    # The stream never ends, so it is tested in test_api_events instead.
    yield schemathesis.openapi.from_asgi("/openapi.json", application).exclude(
        path="/v1/events/stream")


def test_the_api_keeps_its_contract(api_schema: BaseSchema) -> None:
    failures: list[str] = []
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def keeps_contract(case: Case) -> None:
            case.call_and_validate(headers=ADMIN, checks=CHECKS)

        try:
            keeps_contract()
        except Exception as e:  # collect every operation's failure, then report them all
            failures.append(f"{operation.label}:\n{e}")
    assert not failures, "\n\n".join(failures)
