"""`/v1/audit`: audit rows across workflows (read model)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query

from api.access import Reader
from api.components import QueryPortsDep
from api.errors import responses
from api.freshness import AuditFresh
from api.pagination import Cursor, Limit
from api.schemas.audit import AuditCounts, AuditRow, CountsBucket
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
    types = _short_names(event_type) if event_type else None
    page = views.audit.search(workflow_id=workflow_id, correlation_id=correlation_id,
                              event_type=types, after=after, before=before, limit=limit,
                              cursor=cursor, descending=order == "desc")
    return Page[AuditRow](items=[AuditRow.model_validate(r) for r in page.items],
                          next_cursor=page.next_cursor)


# The read model's bounds (projections.audit: 10 types, 31 days, 1,440 buckets, a day's
# bucket), repeated here only so that the OpenAPI document states them.
_COUNTS_DOC = ("Counts events of the given types per time bucket over the window `after` "
               "<= timestamp < `before` (at most 31 days and 1,440 buckets), from the audit "
               "read model. Buckets are aligned to the Unix epoch, so successive calls agree; "
               "every bucket of the window is answered, zeros included. A window too long, "
               "`before` not after `after`, too many buckets or an unknown event type is a "
               "422.")


@router.get("/counts", response_model=AuditCounts, responses=responses(403, 504),
            summary="Count audit events per type and time bucket", description=_COUNTS_DOC)
def count_audit(
    _: Reader, __: AuditFresh, views: QueryPortsDep,
    event_type: Annotated[list[EventTypeName], Query(
        min_length=1, max_length=10,
        description="Count these event types, e.g. `Completed` (repeat the parameter).")],
    after: Annotated[Time, Query(description="Events at or after this time (UTC when it "
                                             "has no zone).")],
    bucket_seconds: Annotated[int, Query(ge=1, le=86_400, description=(
        "Each bucket's width in seconds."))] = 60,
    before: Annotated[Time | None, Query(description="Events before this time; now when "
                                                     "absent.")] = None,
) -> AuditCounts:
    end = before if before is not None else datetime.now(UTC)
    counts = views.audit.counts(_short_names(event_type), after, end, bucket_seconds)
    return AuditCounts(
        bucket_seconds=bucket_seconds, after=after, before=end,
        buckets=[CountsBucket(start=start, counts=per_type)
                 for start, per_type in counts.buckets()],
        totals=counts.totals())


def _short_names(event_types: list[str]) -> list[str]:
    """`Workflow.Completed` is `Completed`: the audit rows name the event only."""
    return [t.rsplit(".", 1)[-1] for t in event_types]
