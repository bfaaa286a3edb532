"""CompensationAction: how to undo a completed step (seed section 5)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Self

from domain.enums import CompensationStrategy
from domain.exceptions import InvalidValue


def _frozen(data: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(data or {}))


@dataclass(frozen=True, slots=True)
class CompensationAction:
    """The operation that reverses a step, with its own retry budget and timeout."""

    step_id: str
    service: str
    operation: str
    strategy: CompensationStrategy = CompensationStrategy.REVERSE_OPERATION
    parameters: Mapping[str, Any] = field(default_factory=lambda: _frozen(None))
    snapshot: Mapping[str, Any] | None = None
    idempotent: bool = True
    max_retries: int = 3
    timeout_ms: int = 5000

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        # Immutable: an aggregate's deep copy (the repository's cache) can share it.
        return self

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameters", _frozen(self.parameters))
        if self.snapshot is not None:
            object.__setattr__(self, "snapshot", _frozen(self.snapshot))
        if not self.operation:
            raise InvalidValue("compensation.operation", self.operation, "must not be empty")
        if self.max_retries < 0:
            raise InvalidValue("compensation.max_retries", self.max_retries, "must be >= 0")
        if self.timeout_ms <= 0:
            raise InvalidValue("compensation.timeout_ms", self.timeout_ms, "must be > 0")

    @classmethod
    def reverse_operation(
        cls, step_id: str, service: str, operation: str, parameters: Mapping[str, Any] | None = None
    ) -> CompensationAction:
        """Call the opposite operation (reserve -> release)."""
        return cls(step_id, service, operation, CompensationStrategy.REVERSE_OPERATION,
                   _frozen(parameters))

    @classmethod
    def delete_created(
        cls, step_id: str, service: str, resource_id: str, parameters: Mapping[str, Any] | None = None
    ) -> CompensationAction:
        """Delete the resource the step created (operation "delete" with its id)."""
        params = {**(parameters or {}), "resourceId": resource_id}
        return cls(step_id, service, "delete", CompensationStrategy.DELETE_CREATED, _frozen(params))

    @classmethod
    def restore_state(
        cls, step_id: str, service: str, snapshot: Mapping[str, Any],
        parameters: Mapping[str, Any] | None = None,
    ) -> CompensationAction:
        """Restore the state captured before the step (operation "restore" with the snapshot)."""
        return cls(step_id, service, "restore", CompensationStrategy.RESTORE_STATE,
                   _frozen(parameters), snapshot=_frozen(snapshot))

    @classmethod
    def custom(
        cls, step_id: str, service: str, operation: str, parameters: Mapping[str, Any] | None = None
    ) -> CompensationAction:
        """Any other undo logic, named by its operation."""
        return cls(step_id, service, operation, CompensationStrategy.CUSTOM, _frozen(parameters))

    def request_body(self) -> dict[str, Any]:
        """The JSON a compensation call sends: parameters, plus the snapshot to restore."""
        body = dict(self.parameters)
        if self.snapshot is not None:
            body["snapshot"] = dict(self.snapshot)
        return body

    def to_dict(self) -> dict[str, Any]:
        return {
            "step_id": self.step_id,
            "service": self.service,
            "operation": self.operation,
            "strategy": self.strategy.value,
            "parameters": dict(self.parameters),
            "snapshot": dict(self.snapshot) if self.snapshot is not None else None,
            "idempotent": self.idempotent,
            "max_retries": self.max_retries,
            "timeout_ms": self.timeout_ms,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, step_id: str, service: str) -> CompensationAction:
        """Parses the definition shape `{"strategy", "operation", "parameters", ...}`."""
        try:
            strategy = CompensationStrategy(data.get("strategy", "REVERSE_OPERATION"))
        except ValueError:
            raise InvalidValue(
                "compensation.strategy", data.get("strategy"),
                f"unknown; known: {[s.value for s in CompensationStrategy]}",
            ) from None
        operation = data.get("operation")
        if not operation:
            operation = {
                CompensationStrategy.DELETE_CREATED: "delete",
                CompensationStrategy.RESTORE_STATE: "restore",
            }.get(strategy)
        if not operation:
            raise InvalidValue("compensation.operation", operation, "is required")
        return cls(
            step_id=data.get("step_id", step_id),
            service=data.get("service") or service,
            operation=operation,
            strategy=strategy,
            parameters=_frozen(data.get("parameters")),
            snapshot=_frozen(data["snapshot"]) if data.get("snapshot") is not None else None,
            idempotent=bool(data.get("idempotent", True)),
            max_retries=int(data.get("max_retries", 3)),
            timeout_ms=int(data.get("timeout_ms", 5000)),
        )
