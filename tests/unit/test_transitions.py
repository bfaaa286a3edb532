"""The full lifecycle transition table: every status against every lifecycle action."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from domain.enums import ErrorType, WorkflowStatus
from domain.exceptions import InvalidTransition
from domain.workflow import Workflow
from domain.workflow.transitions import ALLOWED_TRANSITIONS, transition_allowed
from domain.workflow_error import WorkflowError
from tests.unit.sagas import NOW, RESERVE, ms, replay, run_step, unrecoverable

S = WorkflowStatus
LATER = NOW + ms(60_000)

COMMANDS: dict[str, Callable[[Workflow, datetime], None]] = {
    "start": lambda wf, now: wf.start(now),
    "pause": lambda wf, now: wf.pause(now, reason="shift change"),
    "resume": lambda wf, now: wf.resume(now),
    "cancel": lambda wf, now: wf.cancel(now, reason="Cancelled by user"),
    "retry": lambda wf, now: wf.retry(now),
    "complete": lambda wf, now: wf.complete(now),
    "fail": lambda wf, now: wf.fail(unrecoverable(None), now),
    "compensate": lambda wf, now: wf.compensate(now),
    "complete_compensation": lambda wf, now: wf.complete_compensation(now),
    "retry_compensation": lambda wf, now: wf.retry_compensation(now),
}

# The event that takes each action's transition.
TRANSITION_EVENT: dict[str, type[Any]] = {
    "start": Workflow.Started,
    "pause": Workflow.Paused,
    "resume": Workflow.Resumed,
    "cancel": Workflow.Cancelled,
    "retry": Workflow.Retried,
    "complete": Workflow.Completed,
    "fail": Workflow.Failed,
    "compensate": Workflow.CompensationStarted,
    "complete_compensation": Workflow.CompensationCompleted,
    "retry_compensation": Workflow.CompensationRetried,
    "fail_compensation": Workflow.CompensationFailed,
}

ONE_STEP = [{"step_id": RESERVE, "service": "inventory-service", "operation": "reserve",
             "compensation": {"operation": "release"}}]


def history_in(status: WorkflowStatus) -> list[Any]:
    """The events of a one-step saga brought to `status` by real commands.

    Each state is chosen so that every action the table allows from it can succeed: the
    EXECUTING saga has finished its step (so it may complete), the COMPENSATING one has
    undone its step (so compensation may complete). FAILED is never a resting state (a
    failed saga starts compensating at once), so it is the history up to the Failed event:
    the state an audit replay shows as of that version.
    """
    wf = Workflow.create(steps=ONE_STEP, now=NOW, input={"orderId": "ORD-1"})
    if status != S.PENDING:
        wf.start(NOW)
    if status in (S.PENDING, S.PAUSED, S.CANCELLED):
        if status == S.PAUSED:
            wf.pause(NOW)
        elif status == S.CANCELLED:
            wf.cancel(NOW)
        return list(wf.collect_events())
    run_step(wf, RESERVE)
    if status == S.COMPLETED:
        wf.complete(NOW + ms(2000))
    elif status != S.EXECUTING:
        fail_and_compensate_to(wf, status)
    events = list(wf.collect_events())
    if status == S.FAILED:
        events = events[: next(i for i, e in enumerate(events)
                               if isinstance(e, Workflow.Failed)) + 1]
    return events


def fail_and_compensate_to(wf: Workflow, status: WorkflowStatus) -> None:
    """Fails the saga whose step has run, then compensates it as far as `status` needs."""
    wf.fail(unrecoverable(None), NOW + ms(2000))
    if status == S.COMPENSATION_FAILED:
        wf.start_step_compensation(RESERVE, NOW + ms(3000))
        error = WorkflowError.create(RESERVE, "inventory-service", "GONE", "cannot release",
                                     ErrorType.RESOURCE_NOT_FOUND)
        wf.handle_compensation_failure(RESERVE, error, NOW + ms(3500))
    elif status in (S.COMPENSATING, S.COMPENSATED):
        wf.mark_step_compensated(RESERVE, NOW + ms(3000))
        if status == S.COMPENSATED:
            wf.complete_compensation(NOW + ms(4000))


@pytest.mark.parametrize("status", list(WorkflowStatus))
def test_each_status_is_reached_by_real_commands(status: WorkflowStatus) -> None:
    wf = replay(history_in(status))

    assert wf.status == status
    assert wf.pending_events == []


def test_every_lifecycle_action_in_the_table_has_a_command() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(COMMANDS) | {"fail_compensation"}


def test_table_is_the_seed_diagram_plus_our_additions() -> None:
    allowed = {(action, status) for action in ALLOWED_TRANSITIONS for status in WorkflowStatus
               if transition_allowed(action, status)}

    seed_section_10 = {
        ("start", S.PENDING), ("complete", S.EXECUTING), ("pause", S.EXECUTING),
        ("resume", S.PAUSED), ("fail", S.EXECUTING), ("compensate", S.FAILED),
        ("complete_compensation", S.COMPENSATING), ("cancel", S.EXECUTING),
    }
    additions = {
        ("cancel", S.PENDING), ("cancel", S.PAUSED), ("compensate", S.CANCELLED),
        ("fail_compensation", S.COMPENSATING), ("retry_compensation", S.COMPENSATION_FAILED),
        ("retry", S.FAILED), ("retry", S.COMPENSATED), ("retry", S.CANCELLED),
    }
    assert allowed == seed_section_10 | additions


CASES = [(action, status) for action in COMMANDS for status in WorkflowStatus]


def _case_id(case: tuple[str, WorkflowStatus]) -> str:
    action, status = case
    verdict = "allowed" if transition_allowed(action, status) else "refused"
    return f"{action}-from-{status.value}-{verdict}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_lifecycle_action(case: tuple[str, WorkflowStatus]) -> None:
    action, status = case
    history = history_in(status)
    wf = replay(history)

    if transition_allowed(action, status):
        COMMANDS[action](wf, LATER)

        new_events = list(wf.collect_events())
        assert isinstance(new_events[0], TRANSITION_EVENT[action])
        (target,) = ALLOWED_TRANSITIONS[action]
        assert replay(history + new_events[:1]).status == target
        assert wf.version == len(history) + len(new_events)
    else:
        state = wf.snapshot_state()
        with pytest.raises(InvalidTransition) as rejected:
            COMMANDS[action](wf, LATER)

        message = str(rejected.value)
        assert str(wf.id) in message
        assert f"cannot {action.replace('_', ' ')} while {status.value}" in message
        assert (rejected.value.workflow_id, rejected.value.status) == (wf.id, status)
        assert wf.pending_events == []
        assert wf.version == len(history)
        assert wf.snapshot_state() == state


@pytest.mark.parametrize("status", list(WorkflowStatus))
def test_only_a_compensating_workflow_can_fail_its_compensation(status: WorkflowStatus) -> None:
    # The COMPENSATING state has its step undone already: take the one whose undo is under way.
    history = (history_in(S.COMPENSATION_FAILED)[:-2] if status == S.COMPENSATING
               else history_in(status))
    wf = replay(history)
    error = WorkflowError.create(RESERVE, "inventory-service", "GONE", "cannot release",
                                 ErrorType.RESOURCE_NOT_FOUND)

    if transition_allowed("fail_compensation", status):
        decision = wf.handle_compensation_failure(RESERVE, error, LATER)

        assert decision.decision == "fail"
        assert isinstance(wf.collect_events()[-1], TRANSITION_EVENT["fail_compensation"])
        assert wf.status == S.COMPENSATION_FAILED
    else:
        with pytest.raises(InvalidTransition, match=f"cannot fail compensation of '{RESERVE}' "
                                                    f"while {status.value}"):
            wf.handle_compensation_failure(RESERVE, error, LATER)
        assert wf.pending_events == []
        assert wf.version == len(history)
