"""Step handlers: how a step (or a compensation) is carried out.

A handler receives a `StepCall` and returns a `StepOutcome`; it never raises for a failed
call (failures are outcomes). The engine picks a handler per call: a registered Python
callable for the service, otherwise the HTTP handler that POSTs to a service instance.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

from domain.enums import ErrorType
from domain.workflow_error import OUTPUT_TOO_LARGE, WorkflowError


@dataclass(frozen=True, slots=True)
class StepCall:
    """One invocation of a step's (or its compensation's) operation.

    `idempotency_key` names the step execution, not the try: it is the same for every
    attempt (`Workflow.idempotency_key`), so a handler that has already applied it must
    answer as it did then; `attempt` (1-based) says which try this is.
    """

    workflow_id: UUID
    step_id: str
    attempt: int
    service: str
    operation: str
    input: Mapping[str, Any]
    timeout_s: float
    correlation_id: str
    idempotency_key: str
    compensation: bool = False
    # The instance reserved for this call when its start was recorded (see
    # Dispatcher.reserve); None: the handler routes the call itself.
    instance: str | None = None


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """Success with an output, or a classified error; with the time it took."""

    output: dict[str, Any] | None
    error: WorkflowError | None
    duration_ms: int
    instance: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def success(cls, output: Mapping[str, Any], duration_ms: int,
                instance: str | None = None) -> StepOutcome:
        return cls(dict(output), None, duration_ms, instance)

    @classmethod
    def failure(cls, error: WorkflowError, duration_ms: int,
                instance: str | None = None) -> StepOutcome:
        return cls(None, error, duration_ms, instance)


class StepHandler(Protocol):
    """Carries out a call; returns an outcome instead of raising."""

    def __call__(self, call: StepCall) -> StepOutcome: ...


# Step outputs larger than this (as JSON) are not stored: WES_MAX_OUTPUT_BYTES.
DEFAULT_MAX_OUTPUT_BYTES = 256 * 1024


def output_too_large(call: StepCall, limit: int, size: int | None = None) -> WorkflowError:
    """The failure recorded instead of an output over the limit (`size` None: the answer
    was cut off unread past the limit).

    Not recoverable: a service that applied the call answers every later attempt under the
    same idempotency key with the same stored answer, so a retry could only fail again.
    The domain reads the code as "applied, answer not recorded" (Workflow.applied_unrecorded).
    """
    what = f"{size} bytes" if size is not None else f"more than {limit} bytes"
    return WorkflowError.create(
        call.step_id, call.service, OUTPUT_TOO_LARGE,
        f"the output of {call.service}/{call.operation} is {what}, over the limit of "
        f"{limit} bytes (WES_MAX_OUTPUT_BYTES)", ErrorType.VALIDATION_ERROR, False)


PythonStep = Callable[[StepCall], Mapping[str, Any]]
PYTHON_INSTANCE = "python"  # the "instance" that in-process callables report


class PythonHandler:
    """Runs registered Python callables in-process (for in-process steps and tests).

    Callables are registered per service, or per (service, operation); they return the
    output mapping, or raise: the exception is classified like any other failure.
    """

    def __init__(self) -> None:
        self._by_operation: dict[tuple[str, str], PythonStep] = {}
        self._by_service: dict[str, PythonStep] = {}
        self._local: set[tuple[str, str | None]] = set()

    def register(self, service: str, fn: PythonStep, operation: str | None = None, *,
                 local: bool = False) -> None:
        """`local=True` makes it a local activity (as in Temporal): its start and outcome
        are recorded together with the engine's next save instead of the start being saved
        before the call. Much cheaper; the price is that a handler whose result could not
        be saved (a concurrent pause, a crash) runs again. Use it for fast, idempotent
        in-process work."""
        if operation is None:
            self._by_service[service] = fn
        else:
            self._by_operation[(service, operation)] = fn
        if local:
            self._local.add((service, operation))

    def handles(self, service: str, operation: str) -> bool:
        return (service, operation) in self._by_operation or service in self._by_service

    def is_local(self, service: str, operation: str) -> bool:
        if (service, operation) in self._by_operation:
            return (service, operation) in self._local
        return service in self._by_service and (service, None) in self._local

    def __call__(self, call: StepCall) -> StepOutcome:
        fn = self._by_operation.get((call.service, call.operation)) \
            or self._by_service.get(call.service)
        started = time.perf_counter()
        if fn is None:
            error = WorkflowError.create(call.step_id, call.service, "NO_HANDLER",
                                         f"no handler for {call.service}/{call.operation}",
                                         "INTERNAL_ERROR", False)
            return StepOutcome.failure(error, 0)
        try:
            output = fn(call)
        except Exception as exc:  # a handler that raises is a failed step, not a dead worker
            elapsed = int((time.perf_counter() - started) * 1000)
            return StepOutcome.failure(
                WorkflowError.from_exception(call.step_id, call.service, exc), elapsed)
        elapsed = int((time.perf_counter() - started) * 1000)
        if not isinstance(output, Mapping):
            error = WorkflowError.create(
                call.step_id, call.service, "BAD_OUTPUT",
                f"handler returned {type(output).__name__}, not an object",
                "INTERNAL_ERROR", True, detail=repr(output)[:500])
            return StepOutcome.failure(error, elapsed)
        return StepOutcome.success(output, elapsed, instance=PYTHON_INSTANCE)
