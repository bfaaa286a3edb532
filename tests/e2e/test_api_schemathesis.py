"""Property-based tests of the whole API from its OpenAPI document (schemathesis).

Every operation gets schemathesis' coverage cases (each parameter, headers included, at and
beyond its limits: missing, empty, wrong type, too long, non-ASCII) and randomly generated
requests, valid and invalid. Every answer must be no 5xx, have a documented status code and
content type, match its documented schema, and refuse what the schema forbids. The SSE
stream never ends, so it is left out of those and gets its own test of hostile
`Last-Event-ID` values. CI runs a few random examples per operation (well under a minute in
all); for a longer run:

    WES_SCHEMATHESIS_EXAMPLES=200 .venv/bin/pytest tests/e2e/test_api_schemathesis.py
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from schemathesis import checks
from schemathesis.core.failures import FailureGroup
from schemathesis.generation.case import Case
from schemathesis.generation.modes import GenerationMode
from schemathesis.schemas import APIOperation, BaseSchema

from api.auth import KeyRing
from application.load_balancing import LoadBalancer
from application.settings import ApiConfig
from application.workflows import Workflows
from cli.background import BackgroundServer
from tests.e2e import api_support
from tests.e2e.api_support import KEYS, assert_problem, build_app

# Fixtures this module uses.
read_models = api_support.read_models
live_api = api_support.live_api

EXAMPLES = int(os.environ.get("WES_SCHEMATHESIS_EXAMPLES", "6"))
ADMIN = {"Authorization": "Bearer admin-key"}
STREAM = "/v1/events/stream"
FAILURES_SHOWN_PER_OPERATION = 3


@schemathesis.check
def no_server_error(ctx: checks.CheckContext, response: checks.Response, case: Case) -> None:
    """No 5xx, except two documented answers: the 504 of a `min_position` the read model
    has not reached (one beyond the store's head is a 422 at once), and `/readyz`
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
# Random negative generation "breaks" a string query parameter into `false` or `[]`, but on
# the wire that is still the text "false": a valid string the API rightly accepts. So the
# random run leaves out the negative-data check (ST201); the deterministic coverage run,
# whose invalid cases are truly invalid on the wire, keeps it.
RANDOM_CHECKS = [check for check in CHECKS if check is not checks.negative_data_rejection]


@pytest.fixture
def api_schema(app: Workflows, read_models: api_support.QuerySide
               ) -> Iterator[BaseSchema]:
    """The live OpenAPI document of the app (keys required), with the projectors off and a
    short read-your-writes wait, so a `min_position` not yet projected answers 504 quickly."""
    quick = ApiConfig(min_position_timeout=0.05)
    balancer = LoadBalancer(app, {"inventory-service": ["http://127.0.0.1:9/inventory"]})
    application = build_app(app, read_models, keys=KeyRing.from_keys(KEYS.items()),
                            config=quick, projectors=False, load_commands=balancer)
    schema = schemathesis.openapi.from_asgi("/openapi.json", application).exclude(path=STREAM)
    # Every call carries the admin key. Generated key headers would be refused with 401
    # before any parameter is looked at (`ignored_auth` still checks that a request
    # without a key is refused).
    schema.config.generation.update(with_security_parameters=False)
    yield schema


class Exercised:
    """What the generated requests sent and what they got back, and the failures."""

    def __init__(self) -> None:
        self.headers: set[str] = set()
        self.statuses: Counter[int] = Counter()
        self.failures: dict[str, list[str]] = {}

    def call(self, case: Case, contract: list = CHECKS) -> None:  # type: ignore[type-arg]
        """Sends the case with the admin key and checks the answer against the contract."""
        self.headers |= {name.lower() for name in case.headers or {}}
        response = case.call_and_validate(headers=ADMIN, checks=contract)
        self.statuses[response.status_code] += 1

    def fail(self, operation: APIOperation, error: BaseException) -> None:
        self.failures.setdefault(operation.label, []).append(str(error))

    def report(self) -> str:
        return "\n\n".join(f"{label}:\n" + "\n".join(errors[:FAILURES_SHOWN_PER_OPERATION])
                           for label, errors in self.failures.items())


def operations(schema: BaseSchema) -> list[APIOperation]:
    return [result.ok() for result in schema.get_all_operations()]


def declared_headers(schema: BaseSchema) -> set[str]:
    """The header parameters the document declares (outside the stream)."""
    return {parameter["name"].lower()
            for path, item in schema.raw_schema["paths"].items() if path != STREAM
            for operation in item.values() if isinstance(operation, dict)
            for parameter in operation.get("parameters", []) if parameter["in"] == "header"}


def test_every_parameter_at_its_limits_keeps_the_contract(api_schema: BaseSchema) -> None:
    """Schemathesis' coverage phase: deterministic cases for every parameter, valid and
    invalid, headers such as `Idempotency-Key` included."""
    seen = Exercised()
    for operation in operations(api_schema):
        config = api_schema.config.generation_for(operation=operation, phase="coverage")
        for case in api_schema.iter_coverage_cases(operation, generation_modes=list(GenerationMode),
                                                   generation_config=config):
            try:
                seen.call(case)
            except (AssertionError, FailureGroup) as e:
                seen.fail(operation, e)
    assert not seen.failures, seen.report()
    assert "idempotency-key" in declared_headers(api_schema)
    assert declared_headers(api_schema) <= seen.headers
    # Every request reached its handler: none was turned away for want of a key.
    assert 401 not in seen.statuses and sum(
        n for status, n in seen.statuses.items() if status < 300) > 0


def test_generated_requests_keep_the_contract(api_schema: BaseSchema) -> None:
    """Random requests per operation, half valid and half not (any part of a request may
    be broken, headers included)."""
    seen = Exercised()
    for operation in operations(api_schema):
        strategy = st.one_of([operation.as_strategy(generation_mode=mode)
                              for mode in GenerationMode])

        @given(case=strategy)
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def keeps_contract(case: Case) -> None:
            seen.call(case, RANDOM_CHECKS)

        try:
            keeps_contract()
        except (Exception, FailureGroup) as e:  # collect every operation's failures
            seen.fail(operation, e)
    assert not seen.failures, seen.report()
    assert 401 not in seen.statuses


# Header values as bytes on the wire: visible ASCII with spaces and tabs inside, and bytes
# beyond ASCII (obs-text), which reach the app as Latin-1 text: b"\xb2" is "²", a digit
# to `str.isdigit()` but not to `int()`.
_HEADER_BYTES = [0x09, *range(0x20, 0x7F), *range(0x80, 0x100)]
LAST_EVENT_IDS = st.one_of(
    st.from_regex(rb"\A[0-9]{0,22}\Z"),
    st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=4).map(str.encode),
    st.lists(st.sampled_from(_HEADER_BYTES), max_size=24).map(bytes),
).map(lambda raw: raw.strip(b" \t"))


def is_position(raw: bytes) -> bool:
    """What the stream accepts: up to 18 ASCII digits, or nothing (start from `after`)."""
    return raw == b"" or re.fullmatch(rb"[0-9]{1,18}", raw) is not None


@given(raw=LAST_EVENT_IDS)
@example(raw=b"\xb2").via("a Latin-1 superscript two")
@example(raw=b"\xb9\xb3").via("Latin-1 superscripts one and three")
@example(raw="\u0661\u0662".encode()).via("Arabic-Indic digits in UTF-8")
@example(raw=b"9" * 19).via("more digits than any position has")
@example(raw=b"42").via("a position")
@settings(max_examples=max(EXAMPLES * 5, 30), deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_stream_takes_any_last_event_id_without_a_server_error(
        live_api: BackgroundServer, raw: bytes) -> None:
    """A position opens the stream; anything else is a 422 problem, never a 5xx."""
    with httpx.Client(base_url=live_api.url, timeout=5) as client, client.stream(
            "GET", STREAM, headers=[(b"Authorization", b"Bearer admin-key"),
                                    (b"Last-Event-ID", raw)]) as answer:
        if is_position(raw):
            assert answer.status_code == 200, answer.read()
            assert answer.headers["content-type"].startswith("text/event-stream")
        else:
            answer.read()
            assert_problem(answer, 422, "validation")
