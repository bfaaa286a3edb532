"""`/v1/workflows`: progress queries (read model) and lifecycle commands."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Body, Header, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from api.access import Operator, Reader
from api.components import Components, QueryPortsDep, WorkflowsDep, components_of
from api.errors import not_found, responses
from api.freshness import AuditFresh, ProgressFresh
from api.pagination import Cursor, Limit
from api.schemas.audit import AuditRow
from api.schemas.common import CommandAccepted, Name, Page, ShortText
from api.schemas.workflows import (
    CancelIn,
    Progress,
    ReasonIn,
    StartWorkflow,
    WavelessIn,
    WorkflowStarted,
)
from api.timeutil import Time
from application.workflows import Workflows
from domain.enums import WorkflowPriority, WorkflowStatus, WorkflowType

router = APIRouter(prefix="/v1/workflows", tags=["workflows"])

IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$",
    description="The same key always answers with the same workflow (200), never a "
                "second one, even for concurrent requests.")]
# A start records two events: Created, then Started (or WavelessEnabled).
START_EVENT_COUNT = 2


@router.get("", response_model=Page[Progress], responses=responses(403, 504),
            summary="List workflows (progress rows)")
def list_workflows(
    _: Reader, __: ProgressFresh, views: QueryPortsDep,
    status_: Annotated[list[WorkflowStatus] | None, Query(
        alias="status", description="Any of these statuses (repeat the parameter).")] = None,
    priority: Annotated[list[WorkflowPriority] | None, Query()] = None,
    type_: Annotated[list[WorkflowType] | None, Query(alias="type")] = None,
    definition: Annotated[Name | None, Query(description="Definition name.")] = None,
    correlation_id: Annotated[ShortText | None, Query()] = None,
    created_after: Annotated[Time | None, Query(
        description="ISO 8601 time (UTC when it has no zone); inclusive.")] = None,
    created_before: Annotated[Time | None, Query(
        description="ISO 8601 time (UTC when it has no zone); exclusive.")] = None,
    sort: Annotated[Literal["created_at", "updated_at", "priority"], Query()] = "created_at",
    order: Annotated[Literal["asc", "desc"], Query(description="Newest first by default.")
                     ] = "desc",
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[Progress]:
    """Progress rows, filtered and sorted. The order is total (ties broken by id), so paging
    with `cursor` never skips or repeats a row."""
    page = views.progress.list(
        status=[s.value for s in status_] if status_ else None,
        priority=[p.value for p in priority] if priority else None,
        type=[t.value for t in type_] if type_ else None,
        definition=definition, correlation_id=correlation_id,
        created_after=created_after, created_before=created_before,
        sort=sort, descending=order == "desc", limit=limit, cursor=cursor,
    )
    return Page[Progress](items=[Progress.model_validate(r) for r in page.items],
                          next_cursor=page.next_cursor)


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=WorkflowStarted,
    responses={200: {"model": WorkflowStarted,
                     "description": "An earlier request with this Idempotency-Key started it"},
               **responses(403, 404, 409)},
    summary="Start a workflow", response_description="Started",
)
def start_workflow(
    who: Operator, workflows: WorkflowsDep, response: Response,
    body: Annotated[StartWorkflow, Body()],
    idempotency_key: IdempotencyKey = None,
) -> WorkflowStarted:
    """Starts a workflow from a registered definition (or from inline `steps`). Answers 201
    with its id and the position of its start; with an `Idempotency-Key` seen before,
    answers 200 with the workflow that key started (the body is not compared). 409 when
    the workflow cannot be started as asked (e.g. `waveless` for a type that is not
    waveless-capable). 422 naming the field when the input does not fit the definition's
    `input_schema` (`input.items[0].quantity`), or when an engine-driven workflow's step
    names a service the engine cannot call (`steps[0].service`); nothing is recorded."""
    started = workflows.start_workflow(
        definition=body.definition, version=body.version,
        steps=[s.to_domain_dict() for s in body.steps] if body.steps is not None else None,
        workflow_type=body.type.value if body.type else None, name=body.name,
        input=body.input, priority=body.priority.value, correlation_id=body.correlation_id,
        triggered_by=body.triggered_by or who.actor,
        waveless=body.waveless, waveless_batch_size=body.waveless_batch_size,
        waveless_interval_ms=body.waveless_interval_ms,
        driven_by=body.driven_by.value, max_retries=body.max_retries,
        cut_off=body.cut_off, idempotency_key=idempotency_key,
    )
    position = started.position
    if not started.created:
        response.status_code = status.HTTP_200_OK
        position = _start_position(workflows, started.workflow_id)
    response.headers["Location"] = f"/v1/workflows/{started.workflow_id}"
    return WorkflowStarted(id=started.workflow_id, position=position, created=started.created)


def _start_position(workflows: Workflows, workflow_id: UUID) -> int | None:
    positions = workflows.store.audit.positions(workflow_id, list(range(1, START_EVENT_COUNT + 1)))
    return max(positions.values(), default=None)


@router.get("/{workflow_id}", response_model=Progress, responses=responses(403, 404, 504),
            summary="A workflow's progress")
async def get_progress(workflow_id: UUID, _: Reader, __: ProgressFresh,
                       request: Request) -> Response:
    """The workflow's progress row (read model; pass `min_position` to read your writes)."""
    # The hottest query: no worker thread, and the row is validated and encoded once by
    # pydantic-core (FastAPI would dump the model, validate it again, then encode it).
    progress = await _progress(components_of(request), workflow_id)
    if progress is None:
        raise not_found("workflow", f"workflow {workflow_id} not found")
    return Response(progress.model_dump_json(), media_type="application/json")


async def _progress(c: Components, workflow_id: UUID) -> Progress | None:
    """On the event loop, from the row as JSON, while the app's async queries are open;
    else (an app used without its lifespan) the synchronous query in a worker thread."""
    if c.fast is not None:
        found = await c.fast.progress_json(workflow_id)
        return Progress.model_validate_json(found) if found is not None else None
    row = await run_in_threadpool(c.queries.progress.get, workflow_id)
    return Progress.model_validate(row) if row is not None else None


@router.get("/{workflow_id}/audit", response_model=Page[AuditRow],
            responses=responses(403, 404, 504), tags=["audit"],
            summary="A workflow's audit trail")
def workflow_audit(workflow_id: UUID, _: Reader, __: AuditFresh, views: QueryPortsDep,
                   limit: Limit = 50, cursor: Cursor = None) -> Page[AuditRow]:
    """The workflow's audit rows, oldest first."""
    page = views.audit.for_workflow(workflow_id, limit=limit, cursor=cursor)
    if not page.items and cursor is None and views.progress.get(workflow_id) is None:
        raise not_found("workflow", f"workflow {workflow_id} not found")
    return Page[AuditRow](items=[AuditRow.model_validate(r) for r in page.items],
                          next_cursor=page.next_cursor)


_COMMAND = {"response_model": CommandAccepted, "responses": responses(403, 404, 409)}


@router.post("/{workflow_id}/pause", summary="Pause", **_COMMAND)
def pause(workflow_id: UUID, who: Operator, workflows: WorkflowsDep,
          body: Annotated[ReasonIn | None, Body()] = None) -> CommandAccepted:
    """EXECUTING -> PAUSED: no new step starts until it is resumed."""
    reason = body.reason if body else None
    return CommandAccepted(position=workflows.pause(workflow_id, reason, actor=who.actor))


@router.post("/{workflow_id}/resume", summary="Resume", **_COMMAND)
def resume(workflow_id: UUID, who: Operator, workflows: WorkflowsDep,
           body: Annotated[ReasonIn | None, Body()] = None) -> CommandAccepted:
    """PAUSED -> EXECUTING."""
    return CommandAccepted(position=workflows.resume(workflow_id, actor=who.actor))


@router.post("/{workflow_id}/cancel", summary="Cancel", **_COMMAND)
def cancel(workflow_id: UUID, who: Operator, workflows: WorkflowsDep,
           body: Annotated[CancelIn | None, Body()] = None) -> CommandAccepted:
    """Stops the workflow; with `compensate`, its completed steps are undone afterwards."""
    body = body or CancelIn()
    return CommandAccepted(position=workflows.cancel(
        workflow_id, body.reason, actor=who.actor, compensate=body.compensate))


@router.post("/{workflow_id}/retry", summary="Retry", **_COMMAND)
def retry(workflow_id: UUID, who: Operator, workflows: WorkflowsDep,
          body: Annotated[ReasonIn | None, Body()] = None) -> CommandAccepted:
    """Runs a FAILED, COMPENSATED or CANCELLED workflow again from its unfinished steps
    (at most `max_retries` times)."""
    return CommandAccepted(position=workflows.retry(workflow_id, actor=who.actor))


@router.post("/{workflow_id}/compensation/retry", summary="Retry a failed compensation",
             **_COMMAND)
def retry_compensation(workflow_id: UUID, who: Operator, workflows: WorkflowsDep,
                       body: Annotated[ReasonIn | None, Body()] = None) -> CommandAccepted:
    """COMPENSATION_FAILED -> COMPENSATING, with fresh compensation retries."""
    return CommandAccepted(position=workflows.retry_compensation(workflow_id, actor=who.actor))


@router.post("/{workflow_id}/waveless", summary="Enable waveless processing", **_COMMAND)
def enable_waveless(workflow_id: UUID, _: Operator, workflows: WorkflowsDep,
                    body: Annotated[WavelessIn | None, Body()] = None) -> CommandAccepted:
    """Waveless-capable types (ORDER_FULFILLMENT, PICKING, PACKING) that are PENDING or
    EXECUTING; batch size 10 and interval 1000 ms unless given."""
    body = body or WavelessIn()
    return CommandAccepted(position=workflows.enable_waveless(
        workflow_id, batch_size=body.batch_size, interval_ms=body.interval_ms))
