"""Rejected commands and values: a specific error with a clear message, and nothing changed."""

from __future__ import annotations

from typing import Any

import pytest

from domain.exceptions import (
    InvalidDefinition,
    InvalidStepTransition,
    InvalidTransition,
    InvalidValue,
    StepNotFound,
)
from domain.step import StepResult, StepSpec
from domain.workflow import Workflow
from domain.workflow_error import WorkflowError
from tests.unit.sagas import (
    ASSIGN,
    NOW,
    PICK,
    RESERVE,
    completed_through,
    executing_workflow,
    ms,
    order_fulfillment_steps,
    recoverable,
    saved,
    unchanged,
    unrecoverable,
)


class TestUnknownStep:
    @pytest.mark.parametrize("command", [
        lambda wf: wf.start_step("teleport", NOW),
        lambda wf: wf.record_step_result("teleport", StepResult.success("teleport", {}, 1), NOW),
        lambda wf: wf.handle_step_failure("teleport", recoverable("teleport"), NOW),
        lambda wf: wf.get_compensation_action("teleport"),
        lambda wf: wf.step("teleport"),
    ], ids=["start", "result", "failure", "compensation-action", "step"])
    def test_an_unknown_step_id_is_not_found(self, command: Any) -> None:
        wf = executing_workflow()

        with unchanged(wf), pytest.raises(StepNotFound) as refused:
            command(wf)

        assert str(refused.value) == f"workflow {wf.id} has no step 'teleport'"
        assert refused.value.step_id == "teleport"

    def test_marking_an_unknown_step_compensated_is_not_found(self) -> None:
        wf = completed_through(RESERVE)
        wf.fail(unrecoverable(ASSIGN), NOW + ms(2000))
        saved(wf)

        with unchanged(wf), pytest.raises(StepNotFound, match="has no step 'teleport'"):
            wf.mark_step_compensated("teleport", NOW + ms(3000))


class TestStepOrder:
    def test_a_step_cannot_be_started_twice(self) -> None:
        wf = executing_workflow()
        wf.start_step(RESERVE, NOW)
        saved(wf)

        with unchanged(wf), pytest.raises(InvalidStepTransition) as refused:
            wf.start_step(RESERVE, NOW + ms(10))

        assert str(refused.value) == (f"step 'reserve-inventory' of workflow {wf.id} "
                                      "cannot start while EXECUTING")

    def test_a_completed_step_cannot_be_started_again(self) -> None:
        wf = completed_through(RESERVE)

        with unchanged(wf), pytest.raises(InvalidStepTransition, match="cannot start while COMPLETED"):
            wf.start_step(RESERVE, NOW + ms(5000))

    def test_a_step_cannot_start_before_the_earlier_one_completed(self) -> None:
        wf = executing_workflow()

        with unchanged(wf), pytest.raises(
            InvalidStepTransition, match="start before earlier step 'reserve-inventory' is completed",
        ):
            wf.start_step(ASSIGN, NOW)

    def test_a_step_cannot_start_while_another_is_executing(self) -> None:
        wf = executing_workflow()
        wf.start_step(RESERVE, NOW)
        saved(wf)

        with unchanged(wf), pytest.raises(
            InvalidStepTransition, match="while step 'reserve-inventory' is executing",
        ):
            wf.start_step(ASSIGN, NOW)

    def test_a_result_for_a_step_not_started_is_refused(self) -> None:
        wf = executing_workflow()

        with unchanged(wf), pytest.raises(InvalidStepTransition,
                                          match="cannot record a result while PENDING"):
            wf.record_step_result(RESERVE, StepResult.success(RESERVE, {}, 10), NOW)

    def test_a_result_for_another_step_is_refused(self) -> None:
        wf = executing_workflow()
        wf.start_step(RESERVE, NOW)
        saved(wf)

        with unchanged(wf), pytest.raises(InvalidValue, match=r"result\.step_id"):
            wf.record_step_result(RESERVE, StepResult.success(ASSIGN, {}, 10), NOW)

    def test_a_result_for_a_stale_attempt_is_refused(self) -> None:
        wf = executing_workflow()
        wf.start_step(RESERVE, NOW)
        wf.handle_step_failure(RESERVE, recoverable(RESERVE), NOW + ms(100))
        wf.start_step(RESERVE, NOW + ms(1100))
        saved(wf)

        with unchanged(wf), pytest.raises(InvalidStepTransition,
                                          match="for attempt 1: the current attempt is 2"):
            wf.record_step_result(RESERVE, StepResult.success(RESERVE, {}, 10), NOW + ms(1200),
                                  attempt=1)

    def test_a_failure_for_a_later_step_is_refused_while_an_earlier_one_runs(self) -> None:
        wf = completed_through(RESERVE)
        wf.start_step(ASSIGN, NOW + ms(5000))
        saved(wf)

        with unchanged(wf), pytest.raises(
            InvalidStepTransition, match="while step 'assign-robot' is executing",
        ):
            wf.handle_step_failure(PICK, unrecoverable(PICK), NOW + ms(5100))

    def test_a_failure_for_a_step_whose_turn_has_not_come_is_refused(self) -> None:
        wf = executing_workflow()

        with unchanged(wf), pytest.raises(
            InvalidStepTransition, match="before earlier step 'reserve-inventory' is completed",
        ):
            wf.handle_step_failure(PICK, unrecoverable(PICK), NOW)

    def test_a_failure_for_a_step_waiting_to_retry_is_refused(self) -> None:
        wf = executing_workflow()
        wf.start_step(RESERVE, NOW)
        wf.handle_step_failure(RESERVE, recoverable(RESERVE), NOW + ms(100))
        saved(wf)

        with unchanged(wf), pytest.raises(InvalidStepTransition,
                                          match="cannot record a failure while PENDING"):
            wf.handle_step_failure(RESERVE, recoverable(RESERVE), NOW + ms(200))

    def test_a_step_is_refused_when_its_input_refers_to_a_missing_output_field(self) -> None:
        steps = [
            {"step_id": RESERVE, "service": "inventory-service", "operation": "reserve"},
            {"step_id": ASSIGN, "service": "robotics-service", "operation": "assign",
             "input": {"reservation": "${steps.reserve-inventory.reservationId}"}},
        ]
        wf = executing_workflow(steps)
        wf.start_step(RESERVE, NOW)
        wf.record_step_result(RESERVE, StepResult.success(RESERVE, {"other": 1}, 10), NOW)
        saved(wf)

        with unchanged(wf), pytest.raises(InvalidValue, match=r"steps\[assign-robot\].input"):
            wf.start_step(ASSIGN, NOW)


class TestWorkflowValues:
    @pytest.mark.parametrize(("options", "field"), [
        ({"priority": "URGENT"}, "priority"),
        ({"workflow_type": "SORTING"}, "type"),
        ({"driven_by": "robot"}, "driven_by"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": True}, "max_retries"),
        ({"timeout_ms": 0}, "timeout_ms"),
        ({"input": ["ORD-1"]}, "input"),
        ({"cut_off": NOW.replace(tzinfo=None)}, "cut_off"),
    ])
    def test_invalid_workflow_values_are_refused_naming_the_field(
        self, options: dict[str, Any], field: str,
    ) -> None:
        with pytest.raises(InvalidValue) as refused:
            Workflow.create(steps=order_fulfillment_steps(), now=NOW, **options)

        assert refused.value.field == field
        assert str(refused.value).startswith(f"invalid {field}=")

    def test_invalid_priority_lists_the_allowed_ones(self) -> None:
        with pytest.raises(InvalidValue, match=r"must be one of \['HIGH', 'NORMAL', 'LOW'\]"):
            Workflow.create(steps=order_fulfillment_steps(), now=NOW, priority="URGENT")

    def test_a_workflow_needs_at_least_one_step(self) -> None:
        with pytest.raises(InvalidDefinition, match="at least one step"):
            Workflow.create(steps=[], now=NOW)

    def test_duplicate_steps_are_refused(self) -> None:
        steps = order_fulfillment_steps()
        with pytest.raises(InvalidDefinition, match=r"steps\[1\].step_id: duplicate"):
            Workflow.create(steps=[steps[0], steps[0]], now=NOW)

    @pytest.mark.parametrize(("fields", "field"), [
        ({"step_id": ""}, "step_id"),
        ({"service": ""}, "steps[pick].service"),
        ({"operation": ""}, "steps[pick].operation"),
        ({"timeout_ms": 0}, "steps[pick].timeout_ms"),
    ])
    def test_invalid_step_values_are_refused(self, fields: dict[str, Any], field: str) -> None:
        values = {"step_id": "pick", "name": "Pick", "service": "warehouse-service",
                  "operation": "pick", "execution_order": 1, **fields}

        with pytest.raises(InvalidValue) as refused:
            StepSpec(**values)

        assert refused.value.field == field

    def test_a_negative_execution_time_is_refused(self) -> None:
        with pytest.raises(InvalidValue, match="execution_time_ms"):
            StepResult.success(RESERVE, {}, -1)

    def test_an_unknown_error_type_is_refused_listing_the_known_ones(self) -> None:
        with pytest.raises(InvalidValue) as refused:
            WorkflowError.create(RESERVE, "inventory-service", "X", "x", "OOPS", True)

        assert refused.value.field == "error_type"
        assert "'OOPS'" in str(refused.value)
        assert "SERVICE_UNAVAILABLE" in str(refused.value)

    def test_an_error_needs_a_code(self) -> None:
        with pytest.raises(InvalidValue, match="invalid code=''"):
            WorkflowError.create(RESERVE, "inventory-service", "", "x", "TIMEOUT")


class TestCommandsOutOfPlace:
    def test_complete_is_refused_while_steps_remain(self) -> None:
        wf = completed_through(RESERVE)

        with unchanged(wf), pytest.raises(InvalidTransition) as refused:
            wf.complete(NOW + ms(5000))

        assert "steps not completed: ['assign-robot', 'pick-items', 'pack-items']" in str(
            refused.value)

    def test_steps_cannot_be_compensated_outside_compensation(self) -> None:
        wf = completed_through(RESERVE)

        with unchanged(wf), pytest.raises(InvalidTransition,
                                          match="cannot compensate step 'reserve-inventory'"):
            wf.start_step_compensation(RESERVE, NOW + ms(5000))

    def test_a_step_outside_the_compensation_queue_cannot_be_compensated(self) -> None:
        wf = completed_through(RESERVE)
        wf.fail(unrecoverable(ASSIGN), NOW + ms(2000))
        saved(wf)

        with unchanged(wf), pytest.raises(InvalidStepTransition,
                                          match=r"'assign-robot'.*cannot mark compensated"):
            wf.mark_step_compensated(ASSIGN, NOW + ms(3000))

    def test_waveless_is_refused_for_a_type_that_is_not_capable(self) -> None:
        wf = executing_workflow(workflow_type="RECEIVING")

        with unchanged(wf), pytest.raises(InvalidTransition, match="waveless-capable type"):
            wf.enable_waveless(NOW)
