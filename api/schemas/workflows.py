"""Workflows: start and control commands, the manual step API, progress rows, replay."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated, Any, Literal, get_type_hints
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from api.schemas.common import INT32, Identifier, JsonObject, Name, ShortText, Text
from api.schemas.definitions import CompensationOut, StepIn, StepOut
from api.timeutil import Time
from domain import progress
from domain.enums import (
    DrivenBy,
    ErrorType,
    StepStatus,
    WorkflowPriority,
    WorkflowStatus,
    WorkflowType,
)
from domain.waveless import MIN_INTERVAL_MS

# ---------------------------------------------------------------------------- commands

# A waveless lane's settings (README "Waveless processing"), as start and enable take them.
LaneBatchSize = Annotated[int, Field(ge=1, le=10_000)]
LaneInterval = Annotated[int, Field(ge=MIN_INTERVAL_MS, le=86_400_000)]


class StartWorkflow(BaseModel):
    """Start a workflow from a registered definition, or from inline steps."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "definition": "order-fulfillment", "version": None,
        "input": {"orderId": "ORD-12345", "items": [{"sku": "SKU-1", "quantity": 2}]},
        "priority": "HIGH", "correlation_id": "ord-ORD-12345", "triggered_by": "oms",
        "waveless": False, "driven_by": "engine",
    }]})

    definition: Name | None = Field(None, description="A registered definition's name.")
    version: int | None = Field(None, ge=1, le=1_000_000,
                                description="The definition version; null for the latest.")
    steps: list[StepIn] | None = Field(
        None, min_length=1, max_length=200,
        description="Inline steps instead of a definition (then `type` and `name` apply).")
    type: WorkflowType | None = Field(None, description="Type of an inline workflow.")
    name: Text | None = Field(None, description="Name of an inline workflow.")
    input: JsonObject = Field(default_factory=dict, description="The workflow's input.")
    priority: WorkflowPriority = WorkflowPriority.NORMAL
    correlation_id: ShortText | None = Field(
        None, description="Follows the order through every system; generated when absent.")
    triggered_by: ShortText | None = Field(
        None, description="Who started it; defaults to the API key's name.")
    waveless: bool = Field(False, description="Wait PENDING for a waveless batch to release "
                                              "it instead of starting now.")
    waveless_batch_size: LaneBatchSize | None = Field(
        None, description="With `waveless`: its lane's batch size; default "
                          "WES_WAVELESS_BATCH_SIZE (10).")
    waveless_interval_ms: LaneInterval | None = Field(
        None, description="With `waveless`: its lane's interval; default "
                          "WES_WAVELESS_INTERVAL_MS (1000).")
    driven_by: DrivenBy = Field(DrivenBy.ENGINE, description="`caller`: no worker touches it; "
                                                             "drive it with the step API.")
    max_retries: int = Field(3, ge=0, le=100, description="How often `retry` may be used.")
    cut_off: Time | None = Field(None, description="When it must be finished.")

    @model_validator(mode="after")
    def _definition_or_steps(self) -> StartWorkflow:
        if (self.definition is None) == (self.steps is None):
            raise ValueError("give either `definition` or `steps`, not both and not neither")
        if not self.waveless and (self.waveless_batch_size is not None
                                  or self.waveless_interval_ms is not None):
            raise ValueError("`waveless_batch_size` and `waveless_interval_ms` need `waveless`: true")
        return self


class WorkflowStarted(BaseModel):
    """The started workflow's id and the position of its start."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"id": "2b1f6c1e-8f1a-4c55-9a51-7b0c3e1f9a10", "position": 57, "created": True}]})

    id: UUID
    position: int | None
    created: bool = Field(description="False when an earlier request with the same "
                                      "Idempotency-Key created it (answered with 200).")


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Text | None = None


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Text | None = None
    compensate: bool = Field(False, description="Undo the completed steps afterwards.")


class WavelessIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_size: LaneBatchSize | None = Field(
        None, description="Most workflows of this setting released per batch; default "
                          "WES_WAVELESS_BATCH_SIZE (10)")
    interval_ms: LaneInterval | None = Field(
        None, description="Time between its batches; default WES_WAVELESS_INTERVAL_MS (1000)")


class StepResultIn(BaseModel):
    """A step's successful outcome (seed executeStep)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"output": {"inventoryReserved": True, "quantity": 10}, "execution_time_ms": 1500}]})

    output: JsonObject = Field(default_factory=dict)
    execution_time_ms: int = Field(0, ge=0, le=INT32)


class StepErrorIn(BaseModel):
    """What went wrong in a step (seed WorkflowError.create)."""

    model_config = ConfigDict(extra="forbid")

    code: Identifier
    message: Text = ""
    error_type: ErrorType = ErrorType.INTERNAL_ERROR
    recoverable: bool | None = Field(
        None, description="Defaults by error type: TIMEOUT, SERVICE_UNAVAILABLE and "
                          "NETWORK_ERROR are recoverable.")
    service: ShortText | None = None
    detail: Text | None = None


class StepFailureIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"error": {
        "code": "INVENTORY_UNAVAILABLE", "message": "Insufficient inventory for SKU-12345",
        "error_type": "BUSINESS_RULE_VIOLATION", "recoverable": True,
        "service": "inventory-service"}}]})

    error: StepErrorIn


class FailureDecisionOut(BaseModel):
    """What handling the failure decided."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"decision": "retry", "delay_ms": 1000, "status": "EXECUTING", "position": 61},
        {"decision": "fail", "delay_ms": None, "status": "COMPENSATING", "position": 64},
        {"decision": "fail", "delay_ms": None, "status": "COMPENSATED", "position": 12},
        {"decision": "fail", "delay_ms": None, "status": "PAUSED", "position": 30},
        {"decision": "recorded", "delay_ms": None, "status": "CANCELLED", "position": 41}]})

    decision: Literal["retry", "fail", "recorded"] = Field(
        description="`retry` after `delay_ms`; `fail`: the saga failed (compensation "
                    "starts); `recorded`: the workflow was cancelled meanwhile.")
    delay_ms: int | None = Field(None, description="With `retry`: the backoff before the "
                                                   "next attempt may start.")
    status: WorkflowStatus | None = Field(None, description=(
        "The workflow's status right after the decision; it may be any workflow status. "
        "Beyond the contract's `COMPENSATING` | `FAILED` for `fail`: `COMPENSATED` when no "
        "completed step needs undoing (compensation completes at once), `PAUSED` when the "
        "workflow is paused (the saga fails when it is resumed); `CANCELLED` with "
        "`recorded`; `EXECUTING` or `PAUSED` with `retry`."))
    position: int | None


class CompensatedIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    output: JsonObject = Field(default_factory=dict)


class CompensationStep(BaseModel):
    step_id: str
    status: StepStatus
    action: CompensationOut


class CompensationStatus(BaseModel):
    """Steps still to undo (in order, each with its action) and progress."""

    workflow_id: UUID
    status: WorkflowStatus
    progress_percent: float = Field(description="compensated / executed x 100.")
    pending: list[CompensationStep]
    compensated: list[str]


# ---------------------------------------------------------------------------- read model


class StepProgress(BaseModel):
    """One step as the progress row shows it."""

    model_config = ConfigDict(from_attributes=True)

    step_id: str
    name: str
    service: str
    status: str
    attempts: int


_PROGRESS_EXAMPLE = {
    "id": "2b1f6c1e-8f1a-4c55-9a51-7b0c3e1f9a10", "name": "order-fulfillment",
    "definition": "order-fulfillment", "definition_version": 1,
    "type": "ORDER_FULFILLMENT", "priority": "HIGH", "status": "EXECUTING",
    "current_step": "pick-items", "steps_done": 2, "steps_total": 4,
    "progress_percent": 50.0, "attempts": 3, "retries": 0, "retry_count": 0,
    "last_error": None, "last_failure": None, "compensation_progress": None,
    "correlation_id": "ord-ORD-12345",
    "triggered_by": "oms", "driven_by": "engine", "waiting_reason": None,
    "batch_id": None, "late": False, "waveless": False,
    "steps": [{"step_id": "reserve-inventory", "name": "Reserve Inventory",
               "service": "inventory-service", "status": "COMPLETED", "attempts": 1}],
    "created_at": "2026-11-25T20:40:00Z", "started_at": "2026-11-25T20:40:00Z",
    "updated_at": "2026-11-25T20:40:01Z", "finished_at": None, "version": 7,
    "position": 63}
# The HTTP types of the progress row's Python types (the rest are the same).
_PROGRESS_TYPES: dict[str, Any] = {
    "Mapping[str, Any] | None": dict[str, Any] | None,
    "tuple[StepProgress, ...]": list[StepProgress],
}


def _progress_model() -> type[BaseModel]:
    """`Progress`: the fields of domain.progress.ProgressRow marked for the API, in their
    order, with their descriptions; a column added after the first release is optional."""
    hints = get_type_hints(progress.ProgressRow)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(progress.ProgressRow):
        if not f.metadata["api"]:
            continue
        kind = _PROGRESS_TYPES.get(str(f.type), hints[f.name])
        default = None if f.metadata["added"] else ...
        fields[f.name] = (kind, Field(default, description=f.metadata["description"]))
    return create_model(  # type: ignore[call-overload, no-any-return]
        "Progress", __doc__="A workflow's progress row (read model).",
        __config__=ConfigDict(from_attributes=True,
                              json_schema_extra={"examples": [_PROGRESS_EXAMPLE]}),
        **fields)


Progress = _progress_model()


# ---------------------------------------------------------------------------- replay


class HistoryEvent(BaseModel):
    """One event of a workflow's history."""

    model_config = ConfigDict(from_attributes=True)

    version: int
    position: int
    event_type: str
    timestamp: datetime
    data: dict[str, Any]


class ErrorOut(BaseModel):
    step_id: str | None
    service: str | None
    code: str
    message: str
    error_type: ErrorType
    recoverable: bool
    occurred_at: datetime | None
    detail: str | None


class StepState(BaseModel):
    spec: StepOut
    status: StepStatus
    attempts: int
    input_data: dict[str, Any] | None
    output: dict[str, Any] | None
    duration_ms: int | None
    started_at: datetime | None
    deadline: datetime | None
    completed_at: datetime | None
    next_attempt_at: datetime | None
    last_error: ErrorOut | None
    compensation_attempts: int
    compensation_deadline: datetime | None
    compensation_next_attempt_at: datetime | None
    compensation_output: dict[str, Any] | None
    applied_in_run: int | None = Field(
        None, description="Set while the step's service applied a call whose answer could not "
                          "be recorded (OUTPUT_TOO_LARGE): the run whose key it was applied "
                          "under. Such a step is undone like a completed one.")
    instance: str | None = Field(
        None, description="The service instance the step's last attempt was routed to, "
                          "when its start named one.")


class WorkflowState(BaseModel):
    """The workflow aggregate as of a version: every field it folds from its events."""

    # Fields the aggregate gains later are passed through as they are.
    model_config = ConfigDict(extra="allow")

    id: UUID
    version: int = Field(description="Events applied.")
    definition_id: str
    definition_version: int
    name: str
    workflow_type: WorkflowType
    priority: WorkflowPriority
    status: WorkflowStatus
    steps: list[StepState]
    input: dict[str, Any]
    triggered_by: str
    correlation_id: str
    max_retries: int
    retry_count: int
    driven_by: DrivenBy
    timeout_ms: int
    cut_off: datetime | None
    executed_steps: list[str]
    compensated_steps: list[str]
    compensation_queue: list[str]
    errors: list[ErrorOut]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    modified_on: datetime
    paused_reason: str | None
    cancel_reason: str | None
    cancel_compensate: bool
    waveless: dict[str, int] | None
    batch_id: str | None
    late: bool
    waiting_reason: str | None = Field(None, description="Why a PENDING workflow waits.")
    current_error: ErrorOut | None = Field(None, description=(
        "The error that explains the present state (the progress row's last_error)."))
    saga_error: ErrorOut | None = Field(None, description="The error this run failed with.")
    last_failure: ErrorOut | None = Field(None, description="The latest error ever recorded.")
    progress_percent: float
    compensation_progress: float
    current_step: str | None
