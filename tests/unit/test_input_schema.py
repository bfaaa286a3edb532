"""Input schemas of definitions, and the input mapping's fallbacks that the built-in uses."""

from __future__ import annotations

from typing import Any

import pytest

from application.builtin_definitions import ITEMS, ORDER_FULFILLMENT, ORDER_FULFILLMENT_V1
from domain.definition import WorkflowDefinition
from domain.exceptions import InvalidDefinition
from domain.input_mapping import check_references, resolve
from domain.input_schema import InvalidInput, check_schema, validate

ORDER = WorkflowDefinition.from_dict(ORDER_FULFILLMENT)


def refused(schema: dict[str, Any], value: Any) -> str:
    with pytest.raises(InvalidInput) as caught:
        validate(schema, value)
    return str(caught.value)


class TestValidate:
    def test_names_the_missing_field(self) -> None:
        assert refused({"type": "object", "required": ["orderId"]}, {}) == \
            "input.orderId: is required"

    def test_names_a_field_inside_a_list(self) -> None:
        schema = {"type": "object", "properties": {"items": {
            "type": "array", "items": {"type": "object", "properties": {
                "quantity": {"type": "integer", "minimum": 1}}}}}}
        message = refused(schema, {"items": [{"quantity": 0}]})
        assert message.startswith("input.items[0].quantity: 0 is less than the minimum 1")

    @pytest.mark.parametrize(("schema", "value"), [
        ({"type": "string"}, 1),
        ({"type": "integer"}, 1.5),
        ({"type": "integer"}, True),
        ({"type": "number"}, "1"),
        ({"type": "boolean"}, 0),
        ({"type": "null"}, 0),
        ({"type": "array"}, {}),
        ({"type": "object"}, []),
        ({"type": ["string", "null"]}, 3),
        ({"enum": ["A", "B"]}, "C"),
        ({"enum": [1]}, True),
        ({"const": 1}, 2),
        ({"minLength": 2}, "a"),
        ({"maxLength": 2}, "abc"),
        ({"minItems": 1}, []),
        ({"maxItems": 1}, [1, 2]),
        ({"maximum": 5}, 6),
        ({"exclusiveMinimum": 5}, 5),
        ({"exclusiveMaximum": 5}, 5),
        ({"additionalProperties": False}, {"x": 1}),
        ({"additionalProperties": {"type": "string"}}, {"x": 1}),
        ({"dependentRequired": {"sku": ["quantity"]}}, {"sku": "S"}),
    ])
    def test_refuses_what_does_not_fit(self, schema: dict[str, Any], value: Any) -> None:
        with pytest.raises(InvalidInput):
            validate(schema, value)

    @pytest.mark.parametrize(("schema", "value"), [
        ({"type": "integer"}, 2.0),
        ({"type": "number"}, 2),
        ({"type": ["string", "null"]}, None),
        ({"enum": ["A", 1]}, 1),
        ({"minLength": 1, "maxLength": 1}, "a"),
        ({"minimum": 1, "maximum": 1}, 1),
        ({"properties": {"a": {"type": "string"}}}, {"a": "x", "b": 2}),
        ({"dependentRequired": {"sku": ["quantity"]}}, {"other": 1}),
        ({"description": "annotations are ignored", "title": "t"}, 1),
    ])
    def test_accepts_what_fits(self, schema: dict[str, Any], value: Any) -> None:
        validate(schema, value)


class TestCheckSchema:
    @pytest.mark.parametrize(("schema", "field"), [
        ([], "input_schema"),
        ({"type": "date"}, "input_schema.type"),
        ({"type": []}, "input_schema.type"),
        ({"pattern": "^a+$"}, "input_schema.pattern"),
        ({"$ref": "http://example.com/s.json"}, "input_schema.$ref"),
        ({"oneOf": []}, "input_schema.oneOf"),
        ({"properties": {"a": {"minLength": -1}}}, "input_schema.properties.a.minLength"),
        ({"properties": []}, "input_schema.properties"),
        ({"required": "orderId"}, "input_schema.required"),
        ({"required": ["a", "a"]}, "input_schema.required"),
        ({"items": {"maximum": "9"}}, "input_schema.items.maximum"),
        ({"enum": []}, "input_schema.enum"),
        ({"additionalProperties": 1}, "input_schema.additionalProperties"),
        ({"dependentRequired": {"a": "b"}}, "input_schema.dependentRequired"),
    ])
    def test_refuses_a_schema_outside_the_subset_naming_the_field(
            self, schema: Any, field: str) -> None:
        with pytest.raises(InvalidDefinition) as caught:
            check_schema(schema)
        assert caught.value.field == field

    def test_a_definition_with_an_invalid_schema_is_refused(self) -> None:
        with pytest.raises(InvalidDefinition) as caught:
            WorkflowDefinition.from_dict({**ORDER_FULFILLMENT, "input_schema": {"type": "x"}})
        assert caught.value.field == "input_schema.type"

    def test_the_schema_is_kept_and_round_trips(self) -> None:
        assert ORDER.input_schema is not None
        assert WorkflowDefinition.from_dict(ORDER.to_dict()) == ORDER

    def test_a_definition_without_a_schema_keeps_its_old_shape(self) -> None:
        assert "input_schema" not in WorkflowDefinition.from_dict(ORDER_FULFILLMENT_V1).to_dict()


SEED_INPUTS = {
    "orderId alone": {"orderId": "ORD-12345"},
    "sku and quantity": {"orderId": "ORD-1", "sku": "SKU-12345", "quantity": 10},
    "items": {"orderId": "ORD-1", "items": [{"sku": "SKU-1", "quantity": 2},
                                            {"sku": "SKU-2", "quantity": 1}]},
}


class TestBuiltinOrderFulfillment:
    @pytest.mark.parametrize("shape", SEED_INPUTS)
    def test_accepts_the_seeds_input_shapes(self, shape: str) -> None:
        ORDER.check_input(SEED_INPUTS[shape])

    @pytest.mark.parametrize(("given", "field"), [
        (None, "input.orderId"),
        ({"orderId": ""}, "input.orderId"),
        ({"orderId": 12345}, "input.orderId"),
        ({"orderId": "O", "sku": "S"}, "input.quantity"),
        ({"orderId": "O", "quantity": 1}, "input.sku"),
        ({"orderId": "O", "items": []}, "input.items"),
        ({"orderId": "O", "items": [{"sku": "S"}]}, "input.items[0].quantity"),
        ({"orderId": "O", "items": [{"sku": "S", "quantity": 0}]}, "input.items[0].quantity"),
        ({"orderId": "O", "items": [{"sku": "S", "quantity": "2"}]}, "input.items[0].quantity"),
    ])
    def test_refuses_other_input_naming_the_field(self, given: Any, field: str) -> None:
        with pytest.raises(InvalidInput) as caught:
            ORDER.check_input(given)
        assert caught.value.field == field

    def test_each_shape_resolves_to_the_order_lines(self) -> None:
        reserve = ORDER.steps[0].input
        lines = {shape: resolve(reserve, given, {}) for shape, given in SEED_INPUTS.items()}
        assert lines == {
            "orderId alone": {"orderId": "ORD-12345"},
            "sku and quantity": {"orderId": "ORD-1",
                                 "items": [{"sku": "SKU-12345", "quantity": 10}]},
            "items": {"orderId": "ORD-1", "items": SEED_INPUTS["items"]["items"]},
        }


class TestFallbacks:
    def test_the_first_alternative_that_resolves_wins(self) -> None:
        template = {"n": {"$first": ["${input.a}", "${input.b}", 0]}}
        assert resolve(template, {"b": 2}, {}) == {"n": 2}
        assert resolve(template, {"a": 1, "b": 2}, {}) == {"n": 1}
        assert resolve(template, {}, {}) == {"n": 0}

    def test_omit_leaves_the_field_or_element_out(self) -> None:
        template = {"keep": 1, "items": ITEMS, "list": [{"$first": ["${input.x}",
                                                                     {"$omit": True}]}, 2]}
        assert resolve(template, {}, {}) == {"keep": 1, "list": [2]}

    def test_nothing_resolving_is_an_unresolved_reference(self) -> None:
        with pytest.raises(LookupError, match="no alternative"):
            resolve({"n": {"$first": ["${input.a}"]}}, {}, {})

    @pytest.mark.parametrize("template", [
        {"n": {"$first": []}},
        {"n": {"$first": "${input.a}"}},
        {"n": {"$first": ["${input.a}"], "other": 1}},
        {"n": {"$omit": True}},
        {"n": {"$first": ["${steps.later.x}"]}},
    ])
    def test_malformed_fallbacks_are_refused(self, template: dict[str, Any]) -> None:
        with pytest.raises(InvalidDefinition):
            check_references("steps[0].input", template, "s", [], ["later"])
