"""`/v1/definitions`: versioned workflow definitions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Response, status

from api.access import Admin, Reader
from api.components import WorkflowsDep
from api.errors import responses
from api.freshness import StoreFresh
from api.pagination import Cursor, Limit, offset_of
from api.schemas.common import Page
from api.schemas.definitions import DefinitionIn, DefinitionOut, DefinitionRegistered
from domain.definition import WorkflowDefinition

router = APIRouter(prefix="/v1/definitions", tags=["definitions"])

DefinitionName = Annotated[str, Path(min_length=1, max_length=100,
                                     pattern=r"^[A-Za-z0-9._-]+$")]


def _out(definition: WorkflowDefinition, versions: list[int]) -> DefinitionOut:
    return DefinitionOut.model_validate({**definition.to_dict(), "versions": versions})


@router.get("", response_model=Page[DefinitionOut], responses=responses(403),
            summary="List definitions")
def list_definitions(_: Reader, __: StoreFresh, workflows: WorkflowsDep, limit: Limit = 50,
                     cursor: Cursor = None) -> Page[DefinitionOut]:
    """Every registered version of every definition, by name then version."""
    start = offset_of(cursor)
    definitions = workflows.list_definitions()
    versions: dict[str, list[int]] = {}
    for d in definitions:
        versions.setdefault(d.name, []).append(d.version)
    chunk = definitions[start:start + limit]
    more = start + limit < len(definitions)
    return Page[DefinitionOut](items=[_out(d, versions[d.name]) for d in chunk],
                               next_cursor=str(start + limit) if more else None)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DefinitionRegistered,
             responses={200: {"model": DefinitionRegistered,
                              "description": "This exact version was already registered"},
                        **responses(403, 409)},
             summary="Register a definition version")
def register_definition(who: Admin, workflows: WorkflowsDep, response: Response,
                        body: Annotated[DefinitionIn, Body()]) -> DefinitionRegistered:
    """Registers a version (201). The same content again answers 200; other content under
    an existing version is refused (409): register a new version instead. Running
    workflows keep the version they started with. 422 naming the field for an
    `input_schema` outside the supported subset or a step naming a service the engine
    cannot call."""
    definition, position = workflows.register_definition(body.to_domain_dict(),
                                                         actor=who.actor)
    created = position is not None
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/v1/definitions/{definition.name}?version=" \
                                   f"{definition.version}"
    return DefinitionRegistered(name=definition.name, version=definition.version,
                                created=created, position=position)


@router.get("/{name}", response_model=DefinitionOut, responses=responses(403, 404),
            summary="A definition")
def get_definition(
    name: DefinitionName, _: Reader, __: StoreFresh, workflows: WorkflowsDep,
    version: Annotated[int | None, Query(ge=1, le=1_000_000,
                                         description="Default: the latest.")] = None,
) -> DefinitionOut:
    """A definition version (the latest unless `version` is given)."""
    definition = workflows.get_definition(name, version)
    versions = sorted(d.version for d in workflows.list_definitions() if d.name == name)
    return _out(definition, versions)
