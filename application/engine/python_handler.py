"""The Python step handler: registered callables run in-process (steps, tests, demos).

The dispatcher picks a handler per call: a registered Python callable for the service,
otherwise the HTTP handler that POSTs to a service instance.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from application.engine.ports import StepCall, StepHandlerBase, StepOutcome
from domain.workflow_error import WorkflowError

PythonStep = Callable[[StepCall], Mapping[str, Any]]
PYTHON_INSTANCE = "python"  # the "instance" that in-process callables report


class PythonHandler(StepHandlerBase):
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
