"""The one place where errors become HTTP answers: RFC 9457 `application/problem+json`.

Unknown ids -> 404, invalid transitions and conflicts -> 409, invalid input -> 422,
missing or unknown API key -> 401, too small a role -> 403, database down -> 503,
read model not caught up in time -> 504. Anything else is a bug: 500, logged with its
traceback, never echoing internals to the client. (A body over the size limit is answered
413 by `api.limits`, in the same shape, before any route runs.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import eventsourcing.persistence as es
import psycopg
import psycopg_pool
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from application.errors import (
    ApplicationError,
    ConcurrencyConflict,
    DatabaseUnavailable,
    DefinitionNotFound,
    WorkflowNotFound,
)
from domain.definition_catalog import DefinitionVersionExists
from domain.exceptions import (
    InvalidDefinition,
    InvalidStepTransition,
    InvalidTransition,
    InvalidValue,
    StepNotFound,
)
from domain.input_schema import InvalidInput

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:wes:problem:"


class Problem(BaseModel):
    """An RFC 9457 problem: `type` names the kind, `detail` says what happened this time."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"examples": [{
            "type": "urn:wes:problem:invalid-transition",
            "title": "Invalid transition",
            "status": 409,
            "detail": "workflow 0b6c... cannot pause while COMPLETED",
            "instance": "/v1/workflows/0b6c.../pause",
        }]},
    )

    type: str = Field(description="A URI naming the kind of problem (`urn:wes:problem:...`).")
    title: str = Field(description="A short summary of the kind of problem.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong with this request.")
    instance: str | None = Field(None, description="The request path.")


class ApiProblem(Exception):
    """A problem the API itself raises (an unknown read-model row, a wait that timed out)."""

    def __init__(self, status: int, slug: str, title: str, detail: str,
                 headers: Mapping[str, str] | None = None, **extensions: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.headers = dict(headers or {})
        self.extensions = extensions


def not_found(what: str, detail: str) -> ApiProblem:
    return ApiProblem(404, f"{what}-not-found", f"{what.replace('-', ' ').capitalize()} not found",
                      detail)


class WaitTimeout(ApiProblem):
    """`?min_position=` was not reached by the read model within the bounded wait."""

    def __init__(self, position: int, reached: int | None, timeout: float) -> None:
        super().__init__(
            504, "read-model-behind", "Read model behind",
            f"the read model did not reach position {position} within {timeout:g} s "
            f"(it is at {reached if reached is not None else 'nothing yet'}); retry later",
            min_position=position, reached=reached,
        )


class PositionNotWritten(ApiProblem):
    """`?min_position=` beyond the store's latest position: nothing could ever be waited for."""

    def __init__(self, position: int, latest: int) -> None:
        super().__init__(
            422, "position-not-written", "Position not written",
            f"min_position {position} is beyond the event store's latest position {latest}: "
            "pass a position a command answered",
            field="min_position", min_position=position, latest=latest,
        )


class Unauthenticated(ApiProblem):
    def __init__(self, detail: str) -> None:
        super().__init__(401, "unauthenticated", "Unauthenticated", detail,
                         headers={"WWW-Authenticate": 'Bearer realm="wes"'})


class Forbidden(ApiProblem):
    def __init__(self, role: str, needed: str) -> None:
        super().__init__(403, "forbidden", "Forbidden",
                         f"this API key has the role {role!r}; the request needs {needed!r}")


def problem_response(request: Request | None, status: int, slug: str, title: str, detail: str,
                     headers: Mapping[str, str] | None = None, **extensions: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": TYPE_PREFIX + slug, "title": title, "status": status,
                            "detail": detail}
    if request is not None:
        body["instance"] = request.url.path
    body.update({k: v for k, v in extensions.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON,
                        headers=dict(headers or {}))


_Mapper = tuple[int, str, str]

# Exception class -> (status, slug, title); the first match in order wins.
_MAPPING: Sequence[tuple[type[BaseException] | tuple[type[BaseException], ...], _Mapper]] = (
    (WorkflowNotFound, (404, "workflow-not-found", "Workflow not found")),
    (DefinitionNotFound, (404, "definition-not-found", "Definition not found")),
    (StepNotFound, (404, "step-not-found", "Step not found")),
    ((InvalidTransition, InvalidStepTransition), (409, "invalid-transition",
                                                  "Invalid transition")),
    (ConcurrencyConflict, (409, "conflict", "Concurrent modification")),
    (DefinitionVersionExists, (409, "definition-version-exists", "Definition version exists")),
    ((InvalidDefinition, InvalidValue, InvalidInput), (422, "validation", "Invalid request")),
    ((DatabaseUnavailable, psycopg.OperationalError, psycopg.InterfaceError,
      psycopg_pool.PoolTimeout, es.OperationalError, es.InterfaceError,
      es.ConnectionUnavailableError), (503, "database-unavailable", "Database unavailable")),
)


def _extensions(exc: BaseException) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for attr in ("workflow_id", "step_id", "field", "action"):
        value = getattr(exc, attr, None)
        if value is not None:
            fields[attr] = str(value)
    status = getattr(exc, "status", None)
    if isinstance(exc, (InvalidTransition, InvalidStepTransition)) and status is not None:
        fields["current_status"] = str(status)
    return fields


def _domain_handler(status: int, slug: str, title: str) -> Callable[..., Any]:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        if status >= 500:
            log.warning("database unavailable: %s", exc)
            return problem_response(
                request, status, slug, title,
                "the database cannot be reached; retry shortly", headers={"Retry-After": "2"})
        return problem_response(request, status, slug, title, str(exc), **_extensions(exc))

    return handle


async def _application_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, LookupError):
        return problem_response(request, 404, "not-found", "Not found", str(exc),
                                **_extensions(exc))
    return await _unexpected(request, exc)


async def _api_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiProblem)
    return problem_response(request, exc.status, exc.slug, exc.title, exc.detail,
                            headers=exc.headers, **exc.extensions)


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": [str(part) for part in e.get("loc", ())], "msg": str(e.get("msg", "")),
         "type": str(e.get("type", ""))}
        for e in exc.errors()
    ]
    summary = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:5])
    return problem_response(request, 422, "validation", "Invalid request",
                            summary or "the request is invalid", errors=errors)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:  # FastAPI could not parse the body (e.g. nested too deeply)
        return problem_response(request, 422, "validation", "Invalid request",
                                "the request body could not be parsed")
    slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
    title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
    detail = exc.detail if isinstance(exc.detail, str) else title
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette names only the first route that matched the path; a path served by
        # several routes (GET and POST /v1/workflows) allows the methods of them all.
        headers["Allow"] = ", ".join(allowed_methods(request))
    return problem_response(request, exc.status_code, slug, title, detail, headers=headers)


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app serves on this request's path: each method is
    tried against the routes' own matching (included routers match as a whole)."""
    routes = request.app.router.routes
    allowed = []
    for method in _METHODS:
        probe = {**request.scope, "method": method}
        if any(route.matches(probe)[0] == Match.FULL for route in routes):
            allowed.append(method)
    return allowed


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(request, 500, "internal", "Internal error",
                            "an unexpected error occurred; it has been logged")


def install(app: FastAPI) -> None:
    """Registers every handler on the app."""
    for exc_types, (status, slug, title) in _MAPPING:
        for exc_type in exc_types if isinstance(exc_types, tuple) else (exc_types,):
            app.add_exception_handler(exc_type, _domain_handler(status, slug, title))
    app.add_exception_handler(ApplicationError, _application_error)
    app.add_exception_handler(ApiProblem, _api_problem)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)


def _problem_content(status: int, title: str, slug: str, detail: str) -> dict[str, Any]:
    return {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"},
                           "example": {"type": TYPE_PREFIX + slug, "title": title,
                                       "status": status, "detail": detail}}}


_DOC: Mapping[int, tuple[str, str, str]] = {
    401: ("Unauthenticated", "unauthenticated", "no API key was given, or it is unknown"),
    403: ("Forbidden", "forbidden", "this API key has the role 'reader'; the request needs "
                                    "'operator'"),
    404: ("Not found", "workflow-not-found", "workflow 3f2a... not found"),
    409: ("Invalid transition", "invalid-transition",
          "workflow 3f2a... cannot pause while COMPLETED"),
    413: ("Request body too large", "body-too-large",
          "the request body has 2097152 bytes; the limit is 1048576 bytes (WES_MAX_BODY_BYTES)"),
    422: ("Invalid request", "validation", "body.priority: Input should be 'HIGH', 'NORMAL' "
                                           "or 'LOW'"),
    503: ("Database unavailable", "database-unavailable",
          "the database cannot be reached; retry shortly"),
    504: ("Read model behind", "read-model-behind",
          "the read model did not reach position 42 within 5 s"),
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the given problem statuses (plus 401, 413, 422, 503 always)."""
    wanted = sorted({401, 413, 422, 503, *statuses})
    out: dict[int | str, dict[str, Any]] = {}
    for status in wanted:
        title, slug, detail = _DOC[status]
        out[status] = {"description": title,
                       "content": _problem_content(status, title, slug, detail)}
    return out


def document(app: FastAPI) -> None:
    """Adds the `Problem` schema that every error response refers to to the OpenAPI."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = build()
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            schemas["Problem"] = Problem.model_json_schema(
                ref_template="#/components/schemas/{model}")
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
