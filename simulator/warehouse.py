"""The simulated warehouse: four services, their operations, and the in-memory state behind them.

Every operation takes the request body (a JSON object) and returns the answer body. Reverse
operations (release, unassign, return-to-stock, unpack) always succeed, even for something
this instance never did: a compensation must be safe to repeat, and with several instances
of a service the undo may reach another instance than the original call did.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

Body = Mapping[str, Any]
Answer = dict[str, Any]

SERVICE_OPERATIONS: dict[str, tuple[str, ...]] = {
    "inventory-service": ("reserve", "release"),
    "robotics-service": ("assign", "unassign"),
    "warehouse-service": ("pick", "return-to-stock"),
    "packing-service": ("pack", "unpack"),
}

# The business rejection each operation answers to an `unrecoverable` fault, unless the fault
# names its own code.
BUSINESS_ERRORS: dict[tuple[str, str], tuple[str, str]] = {
    ("inventory-service", "reserve"): ("INSUFFICIENT_INVENTORY",
                                       "not enough stock to reserve the order's items"),
    ("inventory-service", "release"): ("RESERVATION_NOT_RELEASABLE",
                                       "the reservation can no longer be released"),
    ("robotics-service", "assign"): ("NO_ROBOT_AVAILABLE", "no robot can take the order"),
    ("robotics-service", "unassign"): ("ROBOT_NOT_UNASSIGNABLE",
                                       "the robot cannot be released from the order"),
    ("warehouse-service", "pick"): ("ITEM_NOT_AT_LOCATION",
                                    "an item was not found at its pick location"),
    ("warehouse-service", "return-to-stock"): ("RETURN_REJECTED",
                                               "the items cannot be returned to stock"),
    ("packing-service", "pack"): ("PACKING_STATION_UNAVAILABLE", "no packing station can pack"),
    ("packing-service", "unpack"): ("PACKAGE_ALREADY_SHIPPED", "the package has already left"),
}

ROBOT_FLEET_SIZE = 50


class InvalidRequest(ValueError):
    """The request body is not what the operation accepts (answered with 400)."""


def order_id_of(body: Body | None) -> str | None:
    """The body's `orderId` as text, or None when absent or not a scalar."""
    if body is None:
        return None
    value = body.get("orderId")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return str(value)


def _items(body: Body) -> list[Any]:
    items = body.get("items", [])
    if not isinstance(items, list):
        raise InvalidRequest("items must be a list")
    return items


def _check_order_id(body: Body) -> str | None:
    if "orderId" in body and order_id_of(body) is None:
        raise InvalidRequest("orderId must be a string or an integer")
    return order_id_of(body)


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class Warehouse:
    """The business state of one simulator instance: reservations, robots, picks, packages."""

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        self._lock = threading.Lock()
        self._reservations: dict[str, dict[str, Any]] = {}
        self._robots: dict[str, str] = {}  # orderId -> robotId
        self._next_robot = 0
        self._picks: dict[str, str] = {}  # orderId -> pickId
        self._packages: dict[str, str] = {}  # orderId -> packageId
        self._operations: dict[tuple[str, str], Callable[[Body], Answer]] = {
            ("inventory-service", "reserve"): self.reserve,
            ("inventory-service", "release"): self.release,
            ("robotics-service", "assign"): self.assign,
            ("robotics-service", "unassign"): self.unassign,
            ("warehouse-service", "pick"): self.pick,
            ("warehouse-service", "return-to-stock"): self.return_to_stock,
            ("packing-service", "pack"): self.pack,
            ("packing-service", "unpack"): self.unpack,
        }

    def perform(self, service: str, operation: str, body: Body) -> Answer:
        """Runs one operation; raises InvalidRequest for a malformed body."""
        answer = self._operations[(service, operation)](body)
        answer["instance"] = self.instance_id
        return answer

    def reserve(self, body: Body) -> Answer:
        """Reserves the order's items; answers the reservation id."""
        order_id, items = _check_order_id(body), _items(body)
        reservation_id = _new_id("res")
        with self._lock:
            self._reservations[reservation_id] = {"orderId": order_id, "items": items,
                                                  "released": False}
        return {"reservationId": reservation_id, "orderId": order_id, "reserved": True,
                "items": items, "reservedAt": datetime.now(UTC).isoformat()}

    def release(self, body: Body) -> Answer:
        """Releases a reservation (by reservationId, else every reservation of the order)."""
        order_id = _check_order_id(body)
        reservation_id = body.get("reservationId")
        with self._lock:
            if isinstance(reservation_id, str):
                chosen = [reservation_id] if reservation_id in self._reservations else []
            else:
                chosen = [rid for rid, r in self._reservations.items() if r["orderId"] == order_id]
            for rid in chosen:
                self._reservations[rid]["released"] = True
        return {"released": True, "orderId": order_id, "reservationId": reservation_id,
                "releasedReservations": chosen}

    def assign(self, body: Body) -> Answer:
        """Assigns a robot to the order (the same robot while the order keeps it)."""
        order_id = _check_order_id(body)
        with self._lock:
            robot_id = self._robots.get(order_id) if order_id is not None else None
            if robot_id is None:
                robot_id = f"robot-{self._next_robot % ROBOT_FLEET_SIZE + 1:03d}"
                self._next_robot += 1
                if order_id is not None:
                    self._robots[order_id] = robot_id
        return {"robotId": robot_id, "orderId": order_id, "assigned": True}

    def unassign(self, body: Body) -> Answer:
        """Frees the order's robot."""
        order_id = _check_order_id(body)
        with self._lock:
            held = self._robots.pop(order_id, None) if order_id is not None else None
        robot_id = body.get("robotId") or held
        return {"unassigned": True, "orderId": order_id, "robotId": robot_id}

    def pick(self, body: Body) -> Answer:
        """Picks the order's items."""
        order_id, items = _check_order_id(body), _items(body)
        pick_id = _new_id("pick")
        with self._lock:
            if order_id is not None:
                self._picks[order_id] = pick_id
        return {"pickId": pick_id, "orderId": order_id, "picked": True, "pickedItems": items,
                "robotId": body.get("robotId")}

    def return_to_stock(self, body: Body) -> Answer:
        """Puts the order's picked items back."""
        order_id, items = _check_order_id(body), _items(body)
        with self._lock:
            pick_id = self._picks.pop(order_id, None) if order_id is not None else None
        return {"returned": True, "orderId": order_id, "pickId": pick_id,
                "returnedItems": items}

    def pack(self, body: Body) -> Answer:
        """Packs the order into a package."""
        order_id, items = _check_order_id(body), _items(body)
        package_id = _new_id("pkg")
        with self._lock:
            if order_id is not None:
                self._packages[order_id] = package_id
        return {"packageId": package_id, "orderId": order_id, "packed": True,
                "itemCount": len(items)}

    def unpack(self, body: Body) -> Answer:
        """Opens the order's package again."""
        order_id = _check_order_id(body)
        with self._lock:
            held = self._packages.pop(order_id, None) if order_id is not None else None
        return {"unpacked": True, "orderId": order_id, "packageId": body.get("packageId") or held}
