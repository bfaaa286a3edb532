"""Fault injection: what a fault is, and which faults a call runs into."""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from simulator.warehouse import SERVICE_OPERATIONS

FaultKind = Literal["unrecoverable", "recoverable", "latency", "outage", "garbage"]

DEFAULT_STATUS: dict[str, int] = {"unrecoverable": 422, "recoverable": 503, "outage": 503,
                                  "garbage": 200}


class FaultSpec(BaseModel):
    """The body of `POST /faults`."""

    model_config = ConfigDict(extra="forbid")

    service: str = Field(description="One of the simulated services.")
    operation: str | None = Field(
        default=None, description="One of the service's operations; null: every operation.")
    kind: FaultKind = Field(description=(
        "unrecoverable: 422 business rejection; recoverable: 503; latency: delays the answer; "
        "outage: 503 SERVICE_OUTAGE for every call to the service; garbage (extension): "
        "200 with a body that is not a JSON object."))
    count: int | None = Field(default=None, ge=1,
                              description="How many calls the fault affects; null: no limit.")
    rate: float | None = Field(default=None, ge=0.0, le=1.0,
                               description="Probability that a matching call is affected.")
    latency_ms: int = Field(default=0, ge=0, le=600_000,
                            description="Delay before answering (any kind; required by latency).")
    match: dict[str, Any] = Field(
        default_factory=dict,
        description='Top-level body fields a call must carry, e.g. {"orderId": "o-1"}.')
    status: int | None = Field(
        default=None, ge=400, le=599,
        description="Extension: the HTTP status to answer (unrecoverable: 4xx other than 429; "
                    "recoverable: 429 or 5xx).")
    code: str | None = Field(default=None, min_length=1,
                             description="Extension: the error code to answer.")
    message: str | None = Field(default=None, description="Extension: the error message.")
    body: str | None = Field(default=None,
                             description="Extension (garbage): the raw body to answer.")
    seed: int | None = Field(default=None,
                             description="Extension: seeds this fault's `rate` coin.")

    @model_validator(mode="after")
    def _check(self) -> Self:
        operations = SERVICE_OPERATIONS.get(self.service)
        if operations is None:
            raise ValueError(f"unknown service {self.service!r}; "
                             f"known: {sorted(SERVICE_OPERATIONS)}")
        if self.operation is not None and self.operation not in operations:
            raise ValueError(f"{self.service} has no operation {self.operation!r}; "
                             f"known: {list(operations)}")
        if self.kind == "latency" and self.latency_ms <= 0:
            raise ValueError("a latency fault needs latency_ms > 0")
        if self.status is not None:
            if self.kind == "unrecoverable" and not (400 <= self.status < 500
                                                     and self.status != 429):
                raise ValueError("an unrecoverable fault answers a 4xx status other than 429")
            if self.kind == "recoverable" and not (self.status == 429 or self.status >= 500):
                raise ValueError("a recoverable fault answers 429 or a 5xx status")
            if self.kind not in ("unrecoverable", "recoverable"):
                raise ValueError(f"a {self.kind} fault does not take a status")
        if self.body is not None and self.kind != "garbage":
            raise ValueError("only a garbage fault takes a body")
        return self


@dataclass
class Fault:
    """An injected fault and how many calls it has affected."""

    id: str
    spec: FaultSpec
    created_at: datetime
    rng: random.Random
    hits: int = 0

    @property
    def remaining(self) -> int | None:
        return None if self.spec.count is None else max(self.spec.count - self.hits, 0)

    def matches(self, service: str, operation: str, body: Mapping[str, Any]) -> bool:
        spec = self.spec
        if spec.service != service or self.remaining == 0:
            return False
        if spec.operation is not None and spec.operation != operation:
            return False
        return all(_matches(body, k, v) for k, v in spec.match.items())

    def strikes(self) -> bool:
        """Flips the fault's coin (its `rate`); a strike counts against its `count`."""
        if self.spec.rate is not None and self.rng.random() >= self.spec.rate:
            return False
        self.hits += 1
        return True

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, **self.spec.model_dump(), "hits": self.hits,
                "remaining": self.remaining, "created_at": self.created_at.isoformat()}


_MISSING = object()


def _matches(body: Mapping[str, Any], key: str, value: Any) -> bool:
    """A top-level field equals `value`, or one of the order's `items` has that field
    (`{"sku": "SKU-9"}` matches an order with SKU-9 among its items)."""
    if body.get(key, _MISSING) == value:
        return True
    items = body.get("items")
    return isinstance(items, list) and any(
        isinstance(item, Mapping) and item.get(key, _MISSING) == value for item in items)


@dataclass(frozen=True)
class Effects:
    """What the faults do to one call: a delay, then perhaps a faulty answer."""

    delay_ms: int = 0
    fault: Fault | None = None
    delayed_by: tuple[str, ...] = field(default_factory=tuple)


class FaultBook:
    """The faults in force on one simulator instance; thread-safe."""

    def __init__(self, seed: int | None = None) -> None:
        self._seed = seed
        self._lock = threading.Lock()
        self._faults: dict[str, Fault] = {}
        self._next = 1

    def add(self, spec: FaultSpec) -> Fault:
        with self._lock:
            fault_id = f"fault-{self._next}"
            self._next += 1
            # A fault's own seed fixes its coin; the app's seed gives each fault its own coin.
            if spec.seed is not None:
                rng = random.Random(spec.seed)
            elif self._seed is not None:
                rng = random.Random(f"{self._seed}:{fault_id}")
            else:
                rng = random.Random()
            fault = Fault(fault_id, spec, datetime.now(UTC), rng)
            self._faults[fault_id] = fault
            return fault

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_dict() for f in self._faults.values()]

    def remove(self, fault_id: str) -> bool:
        with self._lock:
            return self._faults.pop(fault_id, None) is not None

    def clear(self) -> int:
        with self._lock:
            removed = len(self._faults)
            self._faults.clear()
            return removed

    def effects(self, service: str, operation: str, body: Mapping[str, Any], *,
                applied: bool = False) -> Effects:
        """The faults this call runs into, counting each strike.

        Every matching latency fault adds its delay; of the other kinds, the first that
        strikes (outages before the rest, then in the order injected) decides the answer.
        `applied`: the call's idempotency key has a stored answer, so business rejections
        (`unrecoverable`, decided by the operation itself) pass it by; the path to the
        service (recoverable, outage, garbage, latency) still fails as it would.
        """
        with self._lock:
            matching = [f for f in self._faults.values() if f.matches(service, operation, body)
                        and not (applied and f.spec.kind == "unrecoverable")]
            delay, delayed_by = 0, []
            for fault in (f for f in matching if f.spec.kind == "latency"):
                if fault.strikes():
                    delay += fault.spec.latency_ms
                    delayed_by.append(fault.id)
            answering = sorted((f for f in matching if f.spec.kind != "latency"),
                               key=lambda f: f.spec.kind != "outage")
            for fault in answering:
                if fault.strikes():
                    return Effects(delay + fault.spec.latency_ms, fault, tuple(delayed_by))
            return Effects(delay, None, tuple(delayed_by))
