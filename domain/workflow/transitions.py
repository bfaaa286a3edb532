"""The workflow's lifecycle rules that need no aggregate: which transitions each command may
take, and which step is current. The aggregate checks its commands against them; read
models and the console ask them too, so the rules live here once."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from domain.enums import StepStatus, WorkflowStatus

S = WorkflowStatus

# The lifecycle of seed section 10, with our additions (COMPENSATION_FAILED, retry, and
# cancelling a workflow that is waiting or paused). Anything not listed is refused.
ALLOWED_TRANSITIONS: Mapping[str, Mapping[WorkflowStatus, frozenset[WorkflowStatus]]] = {
    "start": {S.EXECUTING: frozenset({S.PENDING})},
    "complete": {S.COMPLETED: frozenset({S.EXECUTING})},
    "pause": {S.PAUSED: frozenset({S.EXECUTING})},
    "resume": {S.EXECUTING: frozenset({S.PAUSED})},
    "fail": {S.FAILED: frozenset({S.EXECUTING})},
    "compensate": {S.COMPENSATING: frozenset({S.FAILED, S.CANCELLED})},
    "complete_compensation": {S.COMPENSATED: frozenset({S.COMPENSATING})},
    "fail_compensation": {S.COMPENSATION_FAILED: frozenset({S.COMPENSATING})},
    "retry_compensation": {S.COMPENSATING: frozenset({S.COMPENSATION_FAILED})},
    "cancel": {S.CANCELLED: frozenset({S.PENDING, S.EXECUTING, S.PAUSED})},
    "retry": {S.EXECUTING: frozenset({S.FAILED, S.COMPENSATED, S.CANCELLED})},
}


# The statuses no transition leaves (COMPLETED): a workflow in one has no further events.
FINAL_STATUSES = frozenset(
    status for status in WorkflowStatus
    if not any(status in sources for moves in ALLOWED_TRANSITIONS.values()
               for sources in moves.values()))


def transition_allowed(action: str, from_status: WorkflowStatus) -> bool:
    """Whether `action` may be taken while in `from_status` (the full transition table)."""
    return any(from_status in sources for sources in ALLOWED_TRANSITIONS[action].values())


def current_step(status: WorkflowStatus | str,
                 steps: Iterable[tuple[str, StepStatus | str]]) -> str | None:
    """The step in flight, else the next one to run; None when every step is done, and
    None once the workflow is finished (COMPLETED, COMPENSATED, CANCELLED): a step that
    will never run is not current. The progress read model folds the same rule."""
    if WorkflowStatus(status).is_terminal:
        return None
    # Members pass through as they are (a conversion is a Python call, and the progress
    # read model asks this for every row it writes); text is converted.
    pairs = [(step_id, step_status if type(step_status) is StepStatus
              else StepStatus(step_status)) for step_id, step_status in steps]
    for step_id, step_status in pairs:
        if step_status in (StepStatus.EXECUTING, StepStatus.COMPENSATING):
            return step_id
    for step_id, step_status in pairs:
        if step_status not in (StepStatus.COMPLETED, StepStatus.SKIPPED, StepStatus.COMPENSATED):
            return step_id
    return None
