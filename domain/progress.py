"""A workflow's progress row, as a pure function of the Workflow aggregate.

`ProgressRow` is the one declaration of the progress read model: its fields are the table's
columns (their Python types give the SQL types, see projections/progress.py), the query
DTO, and, those marked `api`, the fields of `GET /v1/workflows/{id}` (with the
description given here). `progress_of` computes every value from the aggregate the
workflow's events produce, so a rule lives in the aggregate and a column in one place:
adding a column is a field here with its value in `progress_of`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.enums import StepStatus, WorkflowStatus
from domain.workflow import Workflow
from domain.workflow_error import WorkflowError

_DONE = (StepStatus.COMPLETED, StepStatus.SKIPPED)
# The statuses in which this run's compensation has started (and its queue is shown).
_COMPENSATION_STARTED = (WorkflowStatus.COMPENSATING, WorkflowStatus.COMPENSATED,
                         WorkflowStatus.COMPENSATION_FAILED)
_FORWARD = (WorkflowStatus.PENDING, WorkflowStatus.EXECUTING, WorkflowStatus.PAUSED)


def column(description: str | None = None, *, api: bool = True, added: bool = False
           ) -> dict[str, Any]:
    """A progress column's metadata. `api`: part of the HTTP representation; `added`: a
    column added after the first release (last in the table, added to an older table that
    lacks it)."""
    return {"description": description, "api": api, "added": added}


# Not frozen: a frozen dataclass's __init__ sets every field through object.__setattr__,
# which made building a row three times slower, and the read models build one per
# workflow per batch. Treat them as values all the same.
@dataclass(slots=True)
class StepProgress:
    """One step of a workflow as the progress row shows it."""

    step_id: str
    name: str
    service: str
    status: str
    attempts: int


@dataclass(slots=True)
class ProgressRow:
    """A workflow's progress (API.md `GET /v1/workflows/{id}`, plus what queries need)."""

    id: UUID = field(metadata=column())
    name: str = field(metadata=column())
    definition: str = field(metadata=column())
    definition_version: int = field(metadata=column())
    type: str = field(metadata=column())
    priority: str = field(metadata=column())
    priority_rank: int = field(metadata=column("1 for HIGH: the order of a priority sort.", api=False))
    status: str = field(metadata=column())
    current_step: str | None = field(metadata=column(
        "The step in flight, else the next to run; null when every step is done or the "
        "workflow is finished (COMPLETED, COMPENSATED, CANCELLED)."))
    steps_done: int = field(metadata=column())
    steps_total: int = field(metadata=column())
    progress_percent: float = field(metadata=column())
    attempts: int = field(metadata=column("Step attempts so far, all steps together."))
    retries: int = field(metadata=column("Step retries so far (attempts after the first)."))
    retry_count: int = field(metadata=column("Times the workflow itself was retried."))
    last_error: Mapping[str, Any] | None = field(metadata=column(
        "The error that explains the present state, null when none does: a step's failure "
        "until that step succeeds, the saga's failure while it is compensated, a "
        "compensation's failure until it succeeds; null once COMPLETED, CANCELLED or retried."))
    last_failure: Mapping[str, Any] | None = field(metadata=column(
        "History: the most recent error ever recorded, whatever happened since (a workflow "
        "that completed after a retry keeps the failure it recovered from here).", added=True))
    compensation_progress: float | None = field(metadata=column())
    correlation_id: str = field(metadata=column())
    triggered_by: str = field(metadata=column())
    driven_by: str = field(metadata=column())
    waiting_reason: str | None = field(metadata=column("Why a PENDING workflow waits, if it does."))
    paused_reason: str | None = field(metadata=column(api=False))
    next_attempt_at: datetime | None = field(metadata=column(api=False))
    batch_id: str | None = field(metadata=column())
    late: bool = field(metadata=column())
    waveless: bool = field(metadata=column())
    steps: tuple[StepProgress, ...] = field(metadata=column())
    executed_steps: tuple[str, ...] = field(metadata=column(api=False))
    compensated_steps: tuple[str, ...] = field(metadata=column(api=False))
    compensation_queue: tuple[str, ...] | None = field(metadata=column(api=False))
    created_at: datetime = field(metadata=column())
    started_at: datetime | None = field(metadata=column())
    updated_at: datetime = field(metadata=column())
    finished_at: datetime | None = field(metadata=column())
    version: int = field(metadata=column("Events of the workflow applied to this row."))
    position: int = field(metadata=column("Global position of the last event applied."))
    saga_error: Mapping[str, Any] | None = field(metadata=column(
        "The error this run of the saga failed with.", api=False, added=True))


PROGRESS_FIELDS = fields(ProgressRow)
# The table's columns: those of the first release in declaration order, then those added
# since in theirs (an upgraded table has them last; a fresh one must agree).
COLUMNS = tuple([f.name for f in PROGRESS_FIELDS if not f.metadata["added"]]
                + [f.name for f in PROGRESS_FIELDS if f.metadata["added"]])
ADDED = tuple(f.name for f in PROGRESS_FIELDS if f.metadata["added"])
API_FIELDS = tuple(f.name for f in PROGRESS_FIELDS if f.metadata["api"])


def progress_of(wf: Workflow, position: int) -> ProgressRow:
    """The progress row of `wf`, whose last event is at global `position`."""
    steps = tuple(StepProgress(s.step_id, s.spec.name or s.step_id, s.spec.service,
                               s.status.value, s.attempts) for s in wf.steps.values())
    total = len(steps)
    done = sum(1 for s in wf.steps.values() if s.status in _DONE)
    started = wf.status in _COMPENSATION_STARTED
    return ProgressRow(
        id=wf.id, name=wf.name, definition=wf.definition_id,
        definition_version=wf.definition_version, type=wf.workflow_type.value,
        priority=wf.priority.value, priority_rank=wf.priority.rank,
        status=wf.status.value, current_step=wf.current_step_id, steps_done=done,
        steps_total=total, progress_percent=done * 100.0 / total if total else 0.0,
        attempts=sum(s.attempts for s in wf.steps.values()),
        retries=sum(s.retries for s in wf.steps.values()), retry_count=wf.retry_count,
        last_error=_error(wf.current_error), last_failure=_error(wf.last_failure),
        compensation_progress=wf.compensation_progress if started else None,
        correlation_id=wf.correlation_id, triggered_by=wf.triggered_by,
        driven_by=wf.driven_by.value, waiting_reason=wf.waiting_reason,
        paused_reason=wf.paused_reason, next_attempt_at=next_attempt_at(wf),
        batch_id=wf.batch_id, late=wf.late, waveless=wf.waveless is not None, steps=steps,
        executed_steps=tuple(wf.executed_steps), compensated_steps=tuple(wf.compensated_steps),
        compensation_queue=tuple(wf.compensation_queue) if started else None,
        created_at=wf.created_at, started_at=wf.started_at, updated_at=wf.modified_on,
        finished_at=wf.finished_at, version=wf.version, position=position,
        saga_error=_error(wf.saga_error),
    )


def next_attempt_at(wf: Workflow) -> datetime | None:
    """When a timer will try a failed call again: a forward step's retry while the saga
    runs, a compensation's retry while it compensates; None otherwise."""
    if wf.status in _FORWARD:
        times = [s.next_attempt_at for s in wf.steps.values()]
    elif wf.status == WorkflowStatus.COMPENSATING:
        times = [s.compensation_next_attempt_at for s in wf.steps.values()]
    else:
        return None
    return next((t for t in times if t is not None), None)


def _error(error: WorkflowError | None) -> dict[str, Any] | None:
    return error.to_dict() if error is not None else None
