"""Dependencies, as `Annotated` aliases: the components, the caller's role, freshness waits.

Every dependency is `async`: none does I/O except a `min_position` wait (which runs in a
worker thread), and a synchronous dependency costs a thread-pool hop per request (measured:
the real `GET /v1/workflows/{id}` spent half its CPU solving four synchronous dependencies).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.encoders import jsonable_encoder
from fastapi.routing import APIRoute, APIRouter
from fastapi.security import APIKeyHeader, HTTPBearer
from starlette.concurrency import run_in_threadpool

from api.auth import KeyRing, Role
from api.errors import ApiProblem, Forbidden, PositionNotWritten, Unauthenticated, WaitTimeout
from api.feed import EventHub, EventReader
from api.ports import AsyncQueries, LoadCommands, ReadModels
from api.schemas.common import INT64
from application.errors import ConfigurationError
from application.settings import DEFAULT_MAX_BODY_BYTES, max_body_bytes
from application.workflows import Workflows


@dataclass(frozen=True)
class ApiConfig:
    """Tunables of the HTTP layer."""

    min_position_timeout: float = 5.0
    ready_max_lag_events: int = 10_000
    ready_max_lag_seconds: float = 60.0
    feed_buffer: int = 10_000
    sse_ping_seconds: float = 15.0
    sse_idle_check_seconds: float = 1.0
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ApiConfig:
        """`WES_MIN_POSITION_TIMEOUT`, `WES_READY_MAX_LAG_EVENTS`, `WES_READY_MAX_LAG_SECONDS`
        `WES_SSE_PING_SECONDS` and `WES_MAX_BODY_BYTES` override the defaults."""
        env = os.environ if environ is None else environ
        defaults = cls()
        try:
            return cls(
                min_position_timeout=float(env.get("WES_MIN_POSITION_TIMEOUT",
                                                   defaults.min_position_timeout)),
                ready_max_lag_events=int(env.get("WES_READY_MAX_LAG_EVENTS",
                                                 defaults.ready_max_lag_events)),
                ready_max_lag_seconds=float(env.get("WES_READY_MAX_LAG_SECONDS",
                                                    defaults.ready_max_lag_seconds)),
                sse_ping_seconds=float(env.get("WES_SSE_PING_SECONDS",
                                               defaults.sse_ping_seconds)),
                max_body_bytes=max_body_bytes(env),
            )
        except ValueError as e:
            raise ConfigurationError(f"invalid API setting: {e}") from None


@dataclass
class Components:
    """What the routes work with; built once per app by `create_app`."""

    workflows: Workflows
    read_models: ReadModels
    keys: KeyRing
    config: ApiConfig
    reader: EventReader
    hub: EventHub
    load: LoadCommands | None = None
    fast: AsyncQueries | None = None
    """The read models' async queries while the app's lifespan runs (`create_app` opens them)."""


def components_of(request: Request) -> Components:
    """The app's components. The dependencies below call it rather than depend on
    `ComponentsDep`: FastAPI solves every node of the dependency tree on every request, a
    cached one too, so each node left out is CPU saved on every request."""
    return request.app.state.components  # type: ignore[no-any-return]


async def components(request: Request) -> Components:
    return components_of(request)


ComponentsDep = Annotated[Components, Depends(components)]


async def _workflows(request: Request) -> Workflows:
    return components_of(request).workflows


async def _read_models(request: Request) -> ReadModels:
    return components_of(request).read_models


def load_commands(c: Components) -> LoadCommands:
    """The process's load balancer; called in the route (after the body is validated)."""
    if c.load is None:
        raise ApiProblem(503, "load-balancer-unavailable", "Load balancer unavailable",
                         "no load balancer runs in this API process (it runs with the "
                         "engine worker: start `wes serve` without --no-worker)")
    return c.load


WorkflowsDep = Annotated[Workflows, Depends(_workflows)]
ReadModelsDep = Annotated[ReadModels, Depends(_read_models)]

# ---------------------------------------------------------------------------- auth

# The two ways to send a key, for the OpenAPI document only (`document_security`): as
# `Security` parameters they would be solved as dependencies on every request, which cost
# GET /v1/workflows/{id} about a fifth of its CPU, although `principal` reads the headers
# itself.
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False,
                        description="An API key from WES_API_KEYS.")
_bearer = HTTPBearer(auto_error=False, description="An API key from WES_API_KEYS, as a "
                                                   "bearer token.")
_SCHEMES = (_api_key, _bearer)


@dataclass(frozen=True)
class Principal:
    """Who is calling: their role, and a name for audit (`actor`)."""

    role: Role
    actor: str


def principal(request: Request) -> Principal:
    """The caller, from `Authorization: Bearer <key>` or `X-API-Key: <key>`. Every key
    header sent must hold a valid key (an empty or malformed one is refused too); with
    both, the lesser role applies."""
    c = components_of(request)
    if not c.keys.enabled:
        return Principal(Role.ADMIN, "api")
    presented: list[str] = []
    if "x-api-key" in request.headers:
        presented.append(request.headers["x-api-key"].strip())
    if "authorization" in request.headers:
        scheme, _, credentials = request.headers["authorization"].partition(" ")
        presented.append(credentials.strip() if scheme.lower() == "bearer" else "")
    if not presented:
        raise Unauthenticated("send an API key as 'Authorization: Bearer <key>' or "
                              "'X-API-Key: <key>'")
    roles = [c.keys.role_of(key) if key else None for key in presented]
    if None in roles:
        raise Unauthenticated("the API key is not valid")
    role = min(r for r in roles if r is not None)
    # A short fingerprint names the key in audit records without revealing it.
    fingerprint = hashlib.sha256(presented[0].encode()).hexdigest()[:8]
    return Principal(role, f"api-key:{fingerprint}")


_ROLE_CHECKS: set[Callable[..., Any]] = set()


def _require(needed: Role) -> Callable[[Request], Coroutine[None, None, Principal]]:
    async def check(request: Request) -> Principal:
        """The caller, if their role suffices."""
        who = principal(request)
        if who.role < needed:
            raise Forbidden(who.role.label, needed.label)
        return who

    _ROLE_CHECKS.add(check)
    return check


def _needs_key(dependant: Dependant) -> bool:
    return any(d.call in _ROLE_CHECKS or _needs_key(d) for d in dependant.dependencies)


def document_security(app: FastAPI, routers: Iterable[APIRouter]) -> None:
    """Documents the key headers on every operation that checks a role, as FastAPI does for
    `Security` dependencies: the same `security` in each such operation, and the same
    `securitySchemes`."""
    security = [{scheme.scheme_name: []} for scheme in _SCHEMES]
    for router in routers:
        for route in router.routes:
            if isinstance(route, APIRoute) and _needs_key(route.dependant):
                route.openapi_extra = {**(route.openapi_extra or {}), "security": security}
    build = app.openapi

    def openapi() -> dict[str, Any]:
        spec = build()
        spec.setdefault("components", {})["securitySchemes"] = {
            scheme.scheme_name: jsonable_encoder(scheme.model, by_alias=True, exclude_none=True)
            for scheme in _SCHEMES}
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


Reader = Annotated[Principal, Depends(_require(Role.READER))]
Operator = Annotated[Principal, Depends(_require(Role.OPERATOR))]
Admin = Annotated[Principal, Depends(_require(Role.ADMIN))]

# ---------------------------------------------------------------------------- freshness

MIN_POSITION = Query(
    ge=0, le=INT64,
    description="Wait (bounded) until the read model has applied this global position, "
                "e.g. the `position` a command answered; 504 if it does not in time, 422 at "
                "once if the event store has no such position yet.",
)


def _written(c: Components, position: int) -> None:
    """A position above the latest committed one is a 422 at once: a command answers only
    after its events committed, so such a position was never handed out."""
    latest = c.reader.latest()
    if position > latest:
        raise PositionNotWritten(position, latest)


def _fresh(*names: str) -> Callable[..., Coroutine[None, None, None]]:
    def wait_for(c: Components, position: int) -> tuple[int | None, Any]:
        _written(c, position)
        timeout = c.config.min_position_timeout
        routing = c.read_models.routing
        if routing is not None:
            # The queries must go where the position was seen applied (a replica's own).
            return routing.wait(names, position, timeout)  # type: ignore[no-any-return]
        return c.read_models.projections.wait(names, position, timeout), None

    async def wait(request: Request,
                   min_position: Annotated[int | None, MIN_POSITION] = None) -> None:
        c = components_of(request)
        routing = c.read_models.routing
        if min_position is None:
            if routing is not None:
                routing.pin(None)
            return
        # The wait polls the database and sleeps: a worker thread, not the event loop.
        reached, target = await run_in_threadpool(wait_for, c, min_position)
        if routing is not None:
            routing.pin(target)
        if reached is None or reached < min_position:
            raise WaitTimeout(min_position, reached, c.config.min_position_timeout)

    return wait


async def _current(request: Request,
                   min_position: Annotated[int | None, MIN_POSITION] = None) -> None:
    """Reads from the event store are always current: nothing to wait for, but a position
    the store does not have is refused as everywhere."""
    if min_position is not None:
        await run_in_threadpool(_written, components_of(request), min_position)


ProgressFresh = Annotated[None, Depends(_fresh("progress"))]
AuditFresh = Annotated[None, Depends(_fresh("audit"))]
LoadFresh = Annotated[None, Depends(_fresh("load"))]
StoreFresh = Annotated[None, Depends(_current)]
