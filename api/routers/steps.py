"""The seed's manual step API, for workflows started with `"driven_by": "caller"`."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Body, Path

from api.access import Operator, Reader
from api.components import WorkflowsDep
from api.errors import responses
from api.freshness import StoreFresh
from api.schemas.common import CommandAccepted
from api.schemas.definitions import CompensationOut
from api.schemas.workflows import (
    CompensatedIn,
    CompensationStatus,
    CompensationStep,
    FailureDecisionOut,
    StepFailureIn,
    StepResultIn,
)
from domain.step import StepResult
from domain.workflow_error import WorkflowError

router = APIRouter(prefix="/v1/workflows", tags=["steps"])

StepId = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]
_COMMAND = {"response_model": CommandAccepted, "responses": responses(403, 404, 409)}


@router.post("/{workflow_id}/steps/{step_id}/start", summary="Start a step", **_COMMAND)
def start_step(workflow_id: UUID, step_id: StepId, _: Operator,
               workflows: WorkflowsDep) -> CommandAccepted:
    """Seed startStepExecution: the next step in order begins an attempt (its input is
    resolved against the workflow input and earlier outputs)."""
    return CommandAccepted(position=workflows.start_step(workflow_id, step_id))


@router.post("/{workflow_id}/steps/{step_id}/result", summary="Record a step's result",
             **_COMMAND)
def record_result(workflow_id: UUID, step_id: StepId, _: Operator, workflows: WorkflowsDep,
                  body: Annotated[StepResultIn, Body()]) -> CommandAccepted:
    """Seed executeStep: the executing step completed with `output`."""
    result = StepResult.success(step_id, body.output, body.execution_time_ms)
    return CommandAccepted(position=workflows.execute_step(workflow_id, step_id, result))


@router.post("/{workflow_id}/steps/{step_id}/failure", summary="Record a step's failure",
             response_model=FailureDecisionOut, responses=responses(403, 404, 409))
def record_failure(workflow_id: UUID, step_id: StepId, _: Operator, workflows: WorkflowsDep,
                   body: Annotated[StepFailureIn, Body()]) -> FailureDecisionOut:
    """Seed handleStepFailure: a recoverable error with retries left is retried after a
    backoff delay (`retry`); otherwise the saga fails and compensation starts (`fail`).

    `status` is the workflow's real status after the decision, which extends the
    contract's `COMPENSATING` | `FAILED` for `fail`: a workflow with no completed step to
    undo is `COMPENSATED` at once, and a paused workflow stays `PAUSED` (the saga fails
    when it is resumed). A failure recorded after a cancel answers `recorded` and
    `CANCELLED`."""
    e = body.error
    error = WorkflowError.create(step_id, e.service, e.code, e.message, e.error_type.value,
                                 e.recoverable, detail=e.detail)
    decision, position = workflows.handle_step_failure(workflow_id, step_id, error)
    return FailureDecisionOut(
        decision=decision.decision,  # type: ignore[arg-type]
        delay_ms=decision.delay_ms,
        status=decision.status,
        position=position,
    )


@router.post("/{workflow_id}/steps/{step_id}/compensated", summary="Mark a step compensated",
             **_COMMAND)
def mark_compensated(workflow_id: UUID, step_id: StepId, _: Operator, workflows: WorkflowsDep,
                     body: Annotated[CompensatedIn | None, Body()] = None) -> CommandAccepted:
    """The caller undid a completed step (during COMPENSATING)."""
    output = body.output if body else None
    return CommandAccepted(position=workflows.mark_step_compensated(workflow_id, step_id,
                                                                    output))


@router.get("/{workflow_id}/compensation", response_model=CompensationStatus,
            responses=responses(403, 404), summary="Steps still to compensate")
def compensation_status(workflow_id: UUID, _: Reader, __: StoreFresh,
                        workflows: WorkflowsDep) -> CompensationStatus:
    """The steps still requiring compensation, in the order to undo them, each with its
    compensation action; read from the event store, so always current."""
    wf = workflows.get_workflow(workflow_id)
    if wf.compensation_queue:
        pending_ids = wf.pending_compensation()
    else:
        pending_ids = [s.step_id for s in wf.steps_requiring_compensation()]
    pending = []
    for step_id in pending_ids:
        step = wf.step(step_id)
        if step.spec.compensation is not None:
            pending.append(CompensationStep(
                step_id=step_id, status=step.status,
                action=CompensationOut.model_validate(step.spec.compensation.to_dict())))
    return CompensationStatus(workflow_id=wf.id, status=wf.status,
                              progress_percent=wf.compensation_progress, pending=pending,
                              compensated=list(wf.compensated_steps))


@router.post("/{workflow_id}/compensation/complete", summary="Complete the compensation",
             **_COMMAND)
def complete_compensation(workflow_id: UUID, _: Operator,
                          workflows: WorkflowsDep) -> CommandAccepted:
    """COMPENSATING -> COMPENSATED once every step to undo is compensated."""
    return CommandAccepted(position=workflows.complete_compensation(workflow_id))
