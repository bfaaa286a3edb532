"""The component bag the routes work with (`Components`, built once per app by
`create_app`), and the dependencies that hand its parts to a route.

Every dependency is `async`: a synchronous one costs a thread-pool hop per request
(measured: the real `GET /v1/workflows/{id}` spent half its CPU solving four synchronous
dependencies).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from api.auth import KeyRing
from api.errors import ApiProblem
from api.feed import EventHub, EventReader
from api.ports import AsyncQueries, LoadCommands, QueryPorts
from application.settings import ApiConfig
from application.whatif.service import WhatIfSettings
from application.workflows import Workflows


@dataclass
class Components:
    """What the routes work with; built once per app by `create_app`."""

    workflows: Workflows
    queries: QueryPorts
    keys: KeyRing
    config: ApiConfig
    whatif: WhatIfSettings
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


async def _queries(request: Request) -> QueryPorts:
    return components_of(request).queries


def load_commands(c: Components) -> LoadCommands:
    """The process's load balancer; called in the route (after the body is validated)."""
    if c.load is None:
        raise ApiProblem(503, "load-balancer-unavailable", "Load balancer unavailable",
                         "no load balancer runs in this API process (it runs with the "
                         "engine worker: start `wes serve` without --no-worker)")
    return c.load


WorkflowsDep = Annotated[Workflows, Depends(_workflows)]
QueryPortsDep = Annotated[QueryPorts, Depends(_queries)]
