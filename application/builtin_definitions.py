"""Definitions that ship with the engine: the seed's order-fulfillment saga (section 12).

Version 1 is kept as it was registered (a definition version never changes, and workflows
started from it replay with it); it needed an `items` list. Version 2, the default, takes
the seed's own input too: `{"orderId"}` alone, with `sku` and `quantity`, or with `items`.
"""

from __future__ import annotations

import copy
from typing import Any

ORDER_FULFILLMENT_V1: dict[str, Any] = {
    "name": "order-fulfillment",
    "version": 1,
    "type": "ORDER_FULFILLMENT",
    "description": "Reserve inventory, assign a robot, pick, pack; each step undone in reverse.",
    "steps": [
        {
            "step_id": "reserve-inventory",
            "name": "Reserve Inventory",
            "service": "inventory-service",
            "operation": "reserve",
            "input": {"orderId": "${input.orderId}", "items": "${input.items}"},
            "timeout_ms": 5000,
            "retry_policy": "default",
            "compensation": {
                "strategy": "REVERSE_OPERATION",
                "operation": "release",
                "parameters": {
                    "orderId": "${input.orderId}",
                    "reservationId": "${steps.reserve-inventory.reservationId}",
                },
            },
        },
        {
            "step_id": "assign-robot",
            "name": "Assign Robot",
            "service": "robotics-service",
            "operation": "assign",
            "input": {"orderId": "${input.orderId}"},
            "timeout_ms": 5000,
            "retry_policy": "default",
            "compensation": {
                "strategy": "REVERSE_OPERATION",
                "operation": "unassign",
                "parameters": {
                    "orderId": "${input.orderId}",
                    "robotId": "${steps.assign-robot.robotId}",
                },
            },
        },
        {
            "step_id": "pick-items",
            "name": "Pick Items",
            "service": "warehouse-service",
            "operation": "pick",
            "input": {
                "orderId": "${input.orderId}",
                "items": "${input.items}",
                "robotId": "${steps.assign-robot.robotId}",
            },
            "timeout_ms": 5000,
            "retry_policy": "default",
            "compensation": {
                "strategy": "REVERSE_OPERATION",
                "operation": "return-to-stock",
                "parameters": {"orderId": "${input.orderId}", "items": "${input.items}"},
            },
        },
        {
            "step_id": "pack-items",
            "name": "Pack Items",
            "service": "packing-service",
            "operation": "pack",
            "input": {"orderId": "${input.orderId}", "items": "${input.items}"},
            "timeout_ms": 5000,
            "retry_policy": "default",
            "compensation": {
                "strategy": "REVERSE_OPERATION",
                "operation": "unpack",
                "parameters": {"orderId": "${input.orderId}"},
            },
        },
    ],
}

# The order's lines: the `items` given, else the one line `sku` x `quantity`, else left out
# (the services then work on the order as a whole, as the seed's `reserve(orderId)` does).
ITEMS: dict[str, Any] = {"$first": [
    "${input.items}",
    [{"sku": "${input.sku}", "quantity": "${input.quantity}"}],
    {"$omit": True},
]}

_SKU = {"type": "string", "minLength": 1, "maxLength": 200}
_QUANTITY = {"type": "integer", "minimum": 1, "maximum": 1_000_000}
ORDER_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["orderId"],
    "properties": {
        "orderId": {"type": "string", "minLength": 1, "maxLength": 200},
        "sku": _SKU,
        "quantity": _QUANTITY,
        "items": {
            "type": "array", "minItems": 1, "maxItems": 1000,
            "items": {"type": "object", "required": ["sku", "quantity"],
                      "properties": {"sku": _SKU, "quantity": _QUANTITY}},
        },
    },
    "dependentRequired": {"sku": ["quantity"], "quantity": ["sku"]},
}


def _order_fulfillment_v2() -> dict[str, Any]:
    data = copy.deepcopy(ORDER_FULFILLMENT_V1)
    data["version"] = 2
    data["input_schema"] = ORDER_INPUT_SCHEMA
    for step in data["steps"]:
        for body in (step["input"], step["compensation"]["parameters"]):
            if "items" in body:
                body["items"] = ITEMS
    return data


ORDER_FULFILLMENT: dict[str, Any] = _order_fulfillment_v2()

BUILTIN_DEFINITIONS: tuple[dict[str, Any], ...] = (ORDER_FULFILLMENT_V1, ORDER_FULFILLMENT)
