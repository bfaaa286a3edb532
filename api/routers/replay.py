"""Audit replay from the event store: a workflow's history, and its state at any point."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query

from api.access import Reader
from api.components import WorkflowsDep
from api.errors import responses
from api.freshness import StoreFresh
from api.pagination import Cursor, Limit, offset_of
from api.schemas.common import INT32, Page
from api.schemas.workflows import HistoryEvent, WorkflowState
from api.timeutil import Time
from domain.workflow import Workflow

router = APIRouter(prefix="/v1/workflows", tags=["replay"])


@router.get("/{workflow_id}/history", response_model=Page[HistoryEvent],
            responses=responses(403, 404), summary="A workflow's event history")
def history(workflow_id: UUID, _: Reader, __: StoreFresh, workflows: WorkflowsDep,
            limit: Limit = 500, cursor: Cursor = None) -> Page[HistoryEvent]:
    """Every event of the workflow in order, with its version, global position and time
    (read from the event store)."""
    start = offset_of(cursor)
    events = workflows.history(workflow_id)
    chunk = events[start:start + limit]
    more = start + limit < len(events)
    return Page[HistoryEvent](items=[HistoryEvent.model_validate(e) for e in chunk],
                              next_cursor=str(start + limit) if more else None)


@router.get("/{workflow_id}/state", response_model=WorkflowState,
            responses=responses(403, 404), summary="A workflow's state as of a point")
def state(
    workflow_id: UUID, _: Reader, __: StoreFresh, workflows: WorkflowsDep,
    version: Annotated[int | None, Query(ge=1, le=INT32,
                                         description="State after this many events.")] = None,
    at: Annotated[Time | None, Query(description="State as of this ISO 8601 time "
                                                 "(UTC when it has no zone).")] = None,
) -> WorkflowState:
    """The workflow folded from its events up to `version` or `at` (default: all of them).
    422 when both are given, when the version is beyond the last event, or when the
    workflow did not exist yet at `at`."""
    wf = workflows.state_at(workflow_id, version=version, at=at)
    return WorkflowState.model_validate(state_of(wf))


def state_of(wf: Workflow) -> dict[str, Any]:
    """The aggregate's state as the API shows it."""
    return {"id": wf.id, "version": wf.version, **wf.snapshot_state(),
            "progress_percent": wf.progress_percentage,
            "compensation_progress": wf.compensation_progress,
            "current_step": wf.current_step_id}
