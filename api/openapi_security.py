"""The key headers in the OpenAPI document, on every operation that checks a role."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.encoders import jsonable_encoder
from fastapi.routing import APIRoute, APIRouter
from fastapi.security import APIKeyHeader, HTTPBearer

from api.access import RoleCheck

# The two ways to send a key, for the OpenAPI document only (`document_security`): as
# `Security` parameters they would be solved as dependencies on every request, which cost
# GET /v1/workflows/{id} about a fifth of its CPU, although `principal` reads the headers
# itself.
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False,
                        description="An API key from WES_API_KEYS.")
_bearer = HTTPBearer(auto_error=False, description="An API key from WES_API_KEYS, as a "
                                                   "bearer token.")
_SCHEMES = (_api_key, _bearer)


def _needs_key(dependant: Dependant) -> bool:
    return any(isinstance(d.call, RoleCheck) or _needs_key(d) for d in dependant.dependencies)


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
