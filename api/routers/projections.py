"""`/v1/projections`: where each read model is, and blue/green rebuilds."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from api.access import Admin, Reader
from api.components import QueryPortsDep, WorkflowsDep
from api.errors import not_found, responses
from api.schemas.common import Page
from api.schemas.projections import ProjectionStatus, RebuildStarted
from application.relay.tracking import relay_status

router = APIRouter(prefix="/v1/projections", tags=["projections"])


@router.get("", response_model=Page[ProjectionStatus], responses=responses(403),
            summary="Projection status")
def list_projections(_: Reader, views: QueryPortsDep,
                     workflows: WorkflowsDep) -> Page[ProjectionStatus]:
    """Per projection: the last position applied, the store's head, the lag in events and
    seconds, and its state; and the event relay (`relay`: the last position the broker
    acknowledged). There are a handful, so the whole list is one page (`next_cursor` is
    always null)."""
    statuses = [*views.projections.statuses(), relay_status(workflows)]
    return Page[ProjectionStatus](
        items=[ProjectionStatus.model_validate(s) for s in statuses], next_cursor=None)


@router.post("/{name}/rebuild", status_code=status.HTTP_202_ACCEPTED,
             response_model=RebuildStarted, responses=responses(403, 404, 409),
             summary="Rebuild a projection (blue/green)")
def rebuild(name: Annotated[str, Path(max_length=100, pattern=r"^[A-Za-z0-9_-]+$")],
            _: Admin, views: QueryPortsDep) -> RebuildStarted:
    """Builds the read model afresh from the whole history beside the live one and swaps
    it in when it has caught up; queries keep being answered meanwhile."""
    if name not in views.projections.names():
        raise not_found("projection", f"no projection named {name!r}; known: "
                                      f"{', '.join(views.projections.names())}")
    views.projections.rebuild(name)
    return RebuildStarted(name=name, state="rebuilding")
