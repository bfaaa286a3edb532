"""Workflow definitions (API.md shape) and input mapping between steps."""

from __future__ import annotations

from typing import Any

import pytest

from domain.definition import WorkflowDefinition
from domain.enums import CompensationStrategy, WorkflowType
from domain.exceptions import InvalidDefinition
from domain.input_mapping import UnresolvedReference, references, resolve
from domain.retry_policy import RetryPolicy


def step(step_id: str, **fields: Any) -> dict[str, Any]:
    return {"step_id": step_id, "service": "inventory-service", "operation": "reserve",
            **fields}


def definition(*steps: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"name": "order-fulfillment", "version": 1, "type": "ORDER_FULFILLMENT",
            "steps": list(steps), **fields}


def refused_field(data: dict[str, Any]) -> tuple[str, str]:
    with pytest.raises(InvalidDefinition) as refused:
        WorkflowDefinition.from_dict(data)
    return refused.value.field, str(refused.value)


ORDER_FULFILLMENT = definition(
    step("reserve-inventory", input={"orderId": "${input.orderId}"},
         compensation={"operation": "release",
                       "parameters": {"reservationId": "${steps.reserve-inventory.reservationId}"}}),
    {"step_id": "assign-robot", "service": "robotics-service", "operation": "assign",
     "input": {"orderId": "${input.orderId}",
               "reservationId": "${steps.reserve-inventory.reservationId}"},
     "timeout_ms": 8000, "retry_policy": "aggressive",
     "compensation": {"strategy": "REVERSE_OPERATION", "operation": "unassign"}},
    {"step_id": "print-label", "service": "shipping-service", "operation": "print",
     "retry_policy": {"max_retries": 1, "initial_delay_ms": 200, "max_delay_ms": 200},
     "compensation": {"strategy": "DELETE_CREATED",
                      "parameters": {"resourceId": "${steps.print-label.labelId}"}}},
)


class TestWorkflowDefinition:
    def test_parses_steps_in_list_order_with_their_policies_and_compensations(self) -> None:
        parsed = WorkflowDefinition.from_dict(ORDER_FULFILLMENT)

        assert (parsed.name, parsed.version, parsed.workflow_type) == (
            "order-fulfillment", 1, WorkflowType.ORDER_FULFILLMENT)
        assert [(s.step_id, s.execution_order) for s in parsed.steps] == [
            ("reserve-inventory", 1), ("assign-robot", 2), ("print-label", 3)]
        reserve, assign, label = parsed.steps
        assert (reserve.timeout_ms, reserve.retry_policy) == (5000, RetryPolicy.default())
        assert (assign.timeout_ms, assign.retry_policy) == (8000, RetryPolicy.aggressive())
        assert label.retry_policy == RetryPolicy(1, 200, 200, 2.0)
        assert assign.compensation is not None and assign.compensation.operation == "unassign"
        assert assign.compensation.service == "robotics-service"
        assert label.compensation is not None
        assert (label.compensation.strategy, label.compensation.operation) == (
            CompensationStrategy.DELETE_CREATED, "delete")

    def test_round_trips_through_its_dict(self) -> None:
        parsed = WorkflowDefinition.from_dict(ORDER_FULFILLMENT)

        assert WorkflowDefinition.from_dict(parsed.to_dict()) == parsed

    def test_duplicate_step_ids_are_refused(self) -> None:
        field, message = refused_field(definition(step("reserve"), step("reserve")))

        assert field == "steps[1].step_id"
        assert message == "steps[1].step_id: duplicate step id 'reserve'"

    def test_an_unknown_retry_policy_is_refused(self) -> None:
        field, message = refused_field(definition(step("reserve"),
                                                  step("assign", retry_policy="turbo")))

        assert field == "steps[1].retry_policy"
        assert "'turbo'" in message

    def test_a_compensation_without_an_operation_is_refused(self) -> None:
        field, _ = refused_field(definition(step("reserve", compensation={"parameters": {}})))

        assert field == "steps[0].compensation.operation"

    def test_an_unknown_compensation_strategy_is_refused(self) -> None:
        field, message = refused_field(definition(
            step("reserve", compensation={"strategy": "PRAY", "operation": "release"})))

        assert field == "steps[0].compensation.strategy"
        assert "'PRAY'" in message

    def test_an_input_referring_to_its_own_step_is_a_cycle(self) -> None:
        field, message = refused_field(definition(
            step("reserve", input={"id": "${steps.reserve.reservationId}"})))

        assert field == "steps[0].input"
        assert "cycle" in message

    def test_an_input_referring_to_a_later_step_is_a_cycle(self) -> None:
        field, message = refused_field(definition(
            step("reserve", input={"robot": "${steps.assign.robotId}"}),
            step("assign"),
        ))

        assert field == "steps[0].input"
        assert "'assign', which does not run before 'reserve'" in message

    def test_an_input_referring_to_an_unknown_step_is_refused(self) -> None:
        field, message = refused_field(definition(
            step("reserve"),
            step("assign", input={"nested": [{"x": "${steps.teleport.id}"}]}),
        ))

        assert field == "steps[1].input"
        assert "unknown step 'teleport'" in message

    def test_a_reference_with_an_unknown_root_is_refused(self) -> None:
        field, message = refused_field(definition(step("reserve", input={"x": "${env.HOME}"})))

        assert field == "steps[0].input"
        assert "must start with 'input.' or 'steps.<step_id>'" in message

    def test_a_compensation_may_refer_to_its_own_steps_output(self) -> None:
        parsed = WorkflowDefinition.from_dict(definition(
            step("reserve", compensation={"operation": "release",
                                          "parameters": {"id": "${steps.reserve.id}"}})))

        assert parsed.steps[0].compensation is not None

    def test_a_compensation_may_not_refer_to_a_later_step(self) -> None:
        field, _ = refused_field(definition(
            step("reserve", compensation={"operation": "release",
                                          "parameters": {"robot": "${steps.assign.id}"}}),
            step("assign"),
        ))

        assert field == "steps[0].compensation.parameters"

    @pytest.mark.parametrize(("data", "field"), [
        (definition(name="order fulfillment!"), "name"),
        (definition(version=0), "version"),
        (definition(version=True), "version"),
        (definition(type="SORTING"), "type"),
        (definition(steps="reserve"), "steps"),
        (definition(), "steps"),
        (definition(step("reserve", timeout_ms=-5)), "steps[0].timeout_ms"),
        (definition(step("reserve", input=["x"])), "steps[0].input"),
        (definition(step("reserve"), "assign"), "steps[1]"),
    ])
    def test_invalid_fields_are_refused_naming_the_field(self, data: dict[str, Any],
                                                          field: str) -> None:
        assert refused_field(data)[0] == field


class TestInputMapping:
    OUTPUTS = {"reserve-inventory": {"reservationId": "res-12345", "quantity": 10,
                                     "bins": ["A-1", "B-2"]}}
    INPUT = {"orderId": "ORD-12345", "lines": 3, "customer": {"address": {"city": "Lyon"}}}

    def test_a_whole_value_reference_keeps_its_type(self) -> None:
        resolved = resolve({"lines": "${input.lines}", "qty": "${steps.reserve-inventory.quantity}",
                            "bins": "${steps.reserve-inventory.bins}"}, self.INPUT, self.OUTPUTS)

        assert resolved == {"lines": 3, "qty": 10, "bins": ["A-1", "B-2"]}

    def test_references_inside_a_longer_string_are_interpolated_as_text(self) -> None:
        resolved = resolve("order-${input.orderId}/x${steps.reserve-inventory.quantity}",
                           self.INPUT, self.OUTPUTS)

        assert resolved == "order-ORD-12345/x10"

    def test_paths_descend_through_objects(self) -> None:
        assert resolve("${input.customer.address.city}", self.INPUT, self.OUTPUTS) == "Lyon"

    def test_an_explicit_output_segment_is_accepted(self) -> None:
        resolved = resolve("${steps.reserve-inventory.output.reservationId}", self.INPUT,
                           self.OUTPUTS)

        assert resolved == "res-12345"

    def test_a_whole_output_can_be_passed_on(self) -> None:
        resolved = resolve({"reservation": "${steps.reserve-inventory}"}, self.INPUT, self.OUTPUTS)

        assert resolved == {"reservation": self.OUTPUTS["reserve-inventory"]}

    def test_nested_lists_and_objects_are_resolved_and_other_values_kept(self) -> None:
        template = {"lines": [{"order": "${input.orderId}", "n": 1}], "flag": True, "none": None}

        resolved = resolve(template, self.INPUT, self.OUTPUTS)

        assert resolved == {"lines": [{"order": "ORD-12345", "n": 1}], "flag": True, "none": None}

    @pytest.mark.parametrize(("template", "reason"), [
        ("${input.sku}", "no 'sku'"),
        ("${steps.assign-robot.robotId}", "step 'assign-robot' has no output"),
        ("${steps.reserve-inventory.robotId}", "no 'robotId'"),
        ("${env.HOME}", "unknown root"),
    ])
    def test_a_missing_value_is_an_unresolved_reference(self, template: str,
                                                        reason: str) -> None:
        with pytest.raises(UnresolvedReference, match=reason):
            resolve(template, self.INPUT, self.OUTPUTS)

    def test_references_lists_every_expression(self) -> None:
        found = references({"a": "${input.orderId}", "b": ["x-${ steps.reserve.id }-${input.n}"]})

        assert found == ["input.orderId", "steps.reserve.id", "input.n"]


class TestMalformedReferences:
    @pytest.mark.parametrize("value", ["${input.}", "${steps..x}", "${", "order-${input.id",
                                       "${}"])
    def test_a_malformed_reference_is_refused_when_the_definition_is_registered(self, value):
        with pytest.raises(InvalidDefinition, match=r"steps\[0\]\.input"):
            WorkflowDefinition.from_dict({"name": "d", "steps": [
                {"step_id": "a", "service": "s", "operation": "o", "input": {"x": value}}]})
