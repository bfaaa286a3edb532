"""The engine's ports: what a step call is, what it returns, and what a handler can do.

A handler receives a `StepCall` and returns a `StepOutcome`; it never raises for a failed
call (failures are outcomes). Besides the call, the worker uses four abilities of its
handler, all named by `StepHandler`: routing a call ahead (`reserve`, `release`), saying
that no instance can take work now (`unavailable_for`) and running an operation as a local
activity (`is_local`). `StepHandlerBase` gives the defaults of a handler that has none of
them. The remote handler behind the dispatcher may have the routing and the backpressure
abilities or not: `RoutesAhead` and `ReportsBackpressure` name them, checked once when the
dispatcher (or the registry, for its instance selector) is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from domain.enums import ErrorType
from domain.workflow_error import OUTPUT_TOO_LARGE, WorkflowError

# Step outputs larger than this (as JSON) are not stored: WES_MAX_OUTPUT_BYTES.
DEFAULT_MAX_OUTPUT_BYTES = 256 * 1024


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
    # StepHandler.reserve); None: the handler routes the call itself.
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
    """What a worker calls: carries out a call (an outcome, never an exception), and says
    how the call is to be made."""

    def __call__(self, call: StepCall) -> StepOutcome: ...

    def reserve(self, service: str, operation: str) -> str | None:
        """The instance the call will go to, chosen before its start is recorded so that
        the start can name it; None when the handler routes the call itself."""
        ...

    def release(self, instance: str, service: str) -> None:
        """Gives back a reservation whose call will not be made."""
        ...

    def unavailable_for(self, service: str) -> float | None:
        """Seconds to wait before a call to `service` can be routed (None: go ahead)."""
        ...

    def is_local(self, service: str, operation: str) -> bool:
        """Whether calls of this operation run as local activities: their start and outcome
        are recorded together, with the engine's next save (see PythonHandler.register)."""
        ...


class StepHandlerBase:
    """The defaults of a handler with none of the optional abilities: it routes each call
    itself, never holds a call back and runs nothing as a local activity."""

    def reserve(self, service: str, operation: str) -> str | None:
        return None

    def release(self, instance: str, service: str) -> None:
        return None

    def unavailable_for(self, service: str) -> float | None:
        return None

    def is_local(self, service: str, operation: str) -> bool:
        return False


class RemoteHandler(Protocol):
    """The handler the dispatcher sends calls to that no Python callable takes."""

    def __call__(self, call: StepCall) -> StepOutcome: ...


@runtime_checkable
class RoutesAhead(Protocol):
    """A remote handler that picks a service's instance before the call is made."""

    def reserve(self, service: str) -> str | None: ...

    def release(self, instance: str, service: str) -> None: ...


@runtime_checkable
class ReportsBackpressure(Protocol):
    """A remote handler (or an instance selector) that knows when no instance of a service
    can take work."""

    def unavailable_for(self, service: str) -> float | None: ...


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
