"""What one workflow adds to the load read model, as a pure function of the aggregate.

A step in flight counts for the instance its start named (the engine routes the call
before recording the start), else on its service's own row (instance = service name), as
does a compensation in flight (the undo may go to another service, whose instance would
not belong on this service's rows). Work queued is not bound to an instance yet, so the
next step waiting to run (or the next one to undo) counts on its service's own row.
"""

from __future__ import annotations

from domain.enums import StepStatus, WorkflowStatus
from domain.step import StepExecution
from domain.workflow import Workflow

Contribution = dict[tuple[str, str, str], int]  # (service, instance, counter) -> count
_NOT_WAITING = (StepStatus.COMPLETED, StepStatus.SKIPPED, StepStatus.COMPENSATED)
_RUNNABLE = (WorkflowStatus.PENDING, WorkflowStatus.EXECUTING)


def load_contribution(wf: Workflow) -> Contribution:
    """(service, instance, counter) -> count: the steps in flight, else the one queued."""
    counts: Contribution = {}
    for step in wf.steps.values():
        if step.status is StepStatus.EXECUTING:
            service = step.spec.service
            key = (service, step.instance or service, "in_flight")
            counts[key] = counts.get(key, 0) + 1
        elif step.status is StepStatus.COMPENSATING:
            key = (step.spec.service, step.spec.service, "in_flight")
            counts[key] = counts.get(key, 0) + 1
    if counts:
        return counts
    queued = _queued(wf)
    if queued is not None:
        counts[(queued.spec.service, queued.spec.service, "queued")] = 1
    return counts


def _queued(wf: Workflow) -> StepExecution | None:
    if wf.status in _RUNNABLE:
        waiting = next((s for s in wf.steps.values() if s.status not in _NOT_WAITING), None)
        return waiting if waiting is not None and waiting.status is StepStatus.PENDING \
            else None
    if wf.status is WorkflowStatus.COMPENSATING:
        return next((wf.steps[s] for s in wf.compensation_queue
                     if wf.steps[s].status is StepStatus.COMPLETED), None)
    return None


def instance_in_flight(step: StepExecution) -> str | None:
    """The instance the step's call in flight went to, when its start named one."""
    return step.instance if step.status is StepStatus.EXECUTING else None


def in_flight(step: StepExecution) -> bool:
    return step.status in (StepStatus.EXECUTING, StepStatus.COMPENSATING)
