"""Definitions that ship with the engine: the seed's order-fulfillment saga (section 12)."""

from __future__ import annotations

from typing import Any

ORDER_FULFILLMENT: dict[str, Any] = {
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

BUILTIN_DEFINITIONS: tuple[dict[str, Any], ...] = (ORDER_FULFILLMENT,)
