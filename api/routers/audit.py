"""`/v1/audit`: audit rows across workflows (read model)."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query

from api.access import Reader
from api.components import QueryPortsDep
from api.errors import responses
from api.freshness import AuditFresh
from api.pagination import Cursor, Limit
from api.schemas.audit import AuditRow
from api.schemas.common import EventTypeName, Page, ShortText
from api.timeutil import Time

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("", response_model=Page[AuditRow], responses=responses(403, 504),
            summary="Search the audit trail")
def search_audit(
    _: Reader, __: AuditFresh, views: QueryPortsDep,
    workflow_id: Annotated[UUID | None, Query()] = None,
    correlation_id: Annotated[ShortText | None, Query()] = None,
    event_type: Annotated[list[EventTypeName] | None, Query(
        description="Any of these event types, e.g. `StepFailed` (repeat the parameter).",
        )] = None,
    after: Annotated[Time | None, Query(description="Events at or after this time (UTC "
                                                    "when it has no zone).")] = None,
    before: Annotated[Time | None, Query(description="Events before this time.")] = None,
    order: Annotated[Literal["asc", "desc"], Query(description="By global position.")
                     ] = "asc",
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[AuditRow]:
    """Audit rows across workflows in global order (`after` <= timestamp < `before`)."""
    types = [t.rsplit(".", 1)[-1] for t in event_type] if event_type else None
    page = views.audit.search(workflow_id=workflow_id, correlation_id=correlation_id,
                              event_type=types, after=after, before=before, limit=limit,
                              cursor=cursor, descending=order == "desc")
    return Page[AuditRow](items=[AuditRow.model_validate(r) for r in page.items],
                          next_cursor=page.next_cursor)
