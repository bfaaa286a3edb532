"""Steps: the definition of one step (StepSpec), its execution state, and its result."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from types import MappingProxyType
from typing import Any, Self

import orjson

from domain.compensation import CompensationAction
from domain.copying import copy_value, share
from domain.enums import StepStatus
from domain.exceptions import InvalidValue
from domain.retry_policy import RetryPolicy
from domain.workflow_error import WorkflowError

DEFAULT_STEP_TIMEOUT_MS = 5000


@dataclass(frozen=True, slots=True)
class StepSpec:
    """What a step does: the immutable part of a StepExecution, fixed when a workflow starts."""

    step_id: str
    name: str
    service: str
    operation: str
    execution_order: int
    input: Mapping[str, Any] = field(default_factory=dict)
    timeout_ms: int = DEFAULT_STEP_TIMEOUT_MS
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy.default)
    compensation: CompensationAction | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        # Immutable: an aggregate's deep copy (the repository's cache) can share it.
        return self

    def __post_init__(self) -> None:
        object.__setattr__(self, "input", MappingProxyType(dict(self.input)))
        if not self.step_id:
            raise InvalidValue("step_id", self.step_id, "must not be empty")
        if not self.service:
            raise InvalidValue(f"steps[{self.step_id}].service", self.service, "must not be empty")
        if not self.operation:
            raise InvalidValue(f"steps[{self.step_id}].operation", self.operation, "must not be empty")
        if isinstance(self.timeout_ms, bool) or not isinstance(self.timeout_ms, int) \
                or self.timeout_ms <= 0:
            raise InvalidValue(f"steps[{self.step_id}].timeout_ms", self.timeout_ms, "must be > 0")

    def to_dict(self) -> dict[str, Any]:
        return {
            "step_id": self.step_id,
            "name": self.name,
            "service": self.service,
            "operation": self.operation,
            "execution_order": self.execution_order,
            "input": _thaw(self.input),
            "timeout_ms": self.timeout_ms,
            "retry_policy": self.retry_policy.to_dict(),
            "compensation": self.compensation.to_dict() if self.compensation else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], execution_order: int | None = None) -> StepSpec:
        """Parses the definition shape of a step (API.md), validating every field."""
        step_id = data.get("step_id") or data.get("id")
        if not isinstance(step_id, str) or not step_id:
            raise InvalidValue("step_id", step_id, "must be a non-empty string")
        service = data.get("service") or data.get("service_name") or ""
        compensation = data.get("compensation")
        if isinstance(compensation, CompensationAction):
            action: CompensationAction | None = compensation
        elif compensation:
            if not isinstance(compensation, Mapping):
                raise InvalidValue(f"steps[{step_id}].compensation", compensation, "must be an object")
            action = CompensationAction.from_dict(compensation, step_id=step_id, service=service)
        else:
            action = None
        step_input = data.get("input", {}) or {}
        if not isinstance(step_input, Mapping):
            raise InvalidValue(f"steps[{step_id}].input", step_input, "must be an object")
        order = data.get("execution_order", execution_order)
        return cls(
            step_id=step_id,
            name=data.get("name") or step_id,
            service=service,
            operation=data.get("operation") or "",
            execution_order=int(order) if order is not None else 1,
            input=step_input,
            timeout_ms=data.get("timeout_ms", DEFAULT_STEP_TIMEOUT_MS),
            retry_policy=RetryPolicy.from_value(data.get("retry_policy")),
            compensation=action,
        )


_RECORDED_SPECS: dict[bytes, tuple[StepSpec, ...]] = {}
_RECORDED_SPECS_MAX = 4096


def recorded_specs(data: Sequence[Mapping[str, Any]]) -> tuple[StepSpec, ...]:
    """`StepSpec.from_dict` of each step as a Created event recorded them, one tuple of
    objects for every workflow created with the same steps (a StepSpec is immutable, so
    they can share it): parsing and validating the specs was most of the cost of folding
    a Created event, which the read models do for every workflow. Keyed by the steps'
    JSON, one encoding for the list."""
    try:
        key = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # not plain JSON data: parsed each time
        return tuple(StepSpec.from_dict(step) for step in data)
    specs = _RECORDED_SPECS.get(key)
    if specs is None:
        specs = tuple(StepSpec.from_dict(step) for step in data)
        if len(_RECORDED_SPECS) >= _RECORDED_SPECS_MAX:
            _RECORDED_SPECS.clear()
        _RECORDED_SPECS[key] = specs
    return specs


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_thaw(v) for v in value]
    return value


# Frozen, holding only immutable values: a workflow's deep copy shares them.
share(StepSpec, WorkflowError)


@dataclass(slots=True)
class StepExecution:
    """The running state of one step inside a Workflow (seed StepExecution).

    Mutable, but only the Workflow's event-applying methods change it.
    """

    spec: StepSpec
    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    input_data: dict[str, Any] | None = None
    output: dict[str, Any] | None = None
    duration_ms: int | None = None
    started_at: datetime | None = None
    deadline: datetime | None = None
    completed_at: datetime | None = None
    next_attempt_at: datetime | None = None
    last_error: WorkflowError | None = None
    compensation_attempts: int = 0
    compensation_deadline: datetime | None = None
    compensation_next_attempt_at: datetime | None = None
    compensation_output: dict[str, Any] | None = None
    # The run (workflow retry count) under whose key the service applied this step's call
    # while its answer could not be recorded (OUTPUT_TOO_LARGE); None once an answer is
    # recorded or the effect is undone. See Workflow.applied_unrecorded.
    applied_in_run: int | None = None
    # The service instance the attempt in flight was routed to (StepStarted's), if named.
    instance: str | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> StepExecution:
        # The aggregate cache copies a workflow on every load: values of immutable types
        # (the spec, times, the error, enums) are shared, anything else is copied, so a
        # field added later is safe by default (see domain.copying).
        copied = object.__new__(StepExecution)
        for name in _STEP_FIELDS:
            object.__setattr__(copied, name, copy_value(getattr(self, name), memo))
        return copied

    @property
    def step_id(self) -> str:
        return self.spec.step_id

    @property
    def retries(self) -> int:
        """Retries so far: every attempt after the first."""
        return max(self.attempts - 1, 0)

    @property
    def compensation_action(self) -> CompensationAction | None:
        return self.spec.compensation

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_dict(),
            "status": self.status.value,
            "attempts": self.attempts,
            "input_data": self.input_data,
            "output": self.output,
            "duration_ms": self.duration_ms,
            "started_at": _iso(self.started_at),
            "deadline": _iso(self.deadline),
            "completed_at": _iso(self.completed_at),
            "next_attempt_at": _iso(self.next_attempt_at),
            "last_error": self.last_error.to_dict() if self.last_error else None,
            "compensation_attempts": self.compensation_attempts,
            "compensation_deadline": _iso(self.compensation_deadline),
            "compensation_next_attempt_at": _iso(self.compensation_next_attempt_at),
            "compensation_output": self.compensation_output,
            "applied_in_run": self.applied_in_run,
            "instance": self.instance,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepExecution:
        return cls(
            spec=StepSpec.from_dict(data["spec"]),
            status=StepStatus(data["status"]),
            attempts=data["attempts"],
            input_data=data.get("input_data"),
            output=data.get("output"),
            duration_ms=data.get("duration_ms"),
            started_at=_dt(data.get("started_at")),
            deadline=_dt(data.get("deadline")),
            completed_at=_dt(data.get("completed_at")),
            next_attempt_at=_dt(data.get("next_attempt_at")),
            last_error=WorkflowError.from_dict(data["last_error"]) if data.get("last_error") else None,
            compensation_attempts=data.get("compensation_attempts", 0),
            compensation_deadline=_dt(data.get("compensation_deadline")),
            compensation_next_attempt_at=_dt(data.get("compensation_next_attempt_at")),
            compensation_output=data.get("compensation_output"),
            applied_in_run=data.get("applied_in_run"),  # absent in older snapshots
            instance=data.get("instance"),
        )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _dt(value: str | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


@dataclass(frozen=True, slots=True)
class StepResult:
    """A successful step outcome: output and execution time (seed StepResult.success)."""

    step_id: str
    output: Mapping[str, Any]
    execution_time_ms: int

    def __post_init__(self) -> None:
        if isinstance(self.execution_time_ms, bool) or self.execution_time_ms < 0:
            raise InvalidValue("execution_time_ms", self.execution_time_ms, "must be >= 0")
        if not isinstance(self.output, Mapping):
            raise InvalidValue("output", self.output, "must be an object")

    @classmethod
    def success(cls, step_id: str, output: Mapping[str, Any], execution_time_ms: int) -> StepResult:
        return cls(step_id, dict(output), int(execution_time_ms))


_STEP_FIELDS = tuple(f.name for f in fields(StepExecution))
