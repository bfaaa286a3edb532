"""Chooses the handler for a call: a registered Python callable, else HTTP to the service."""

from __future__ import annotations

import concurrent.futures
import time

from application.engine.ports import (
    RemoteHandler,
    ReportsBackpressure,
    RoutesAhead,
    StepCall,
    StepOutcome,
)
from application.engine.python_handler import PYTHON_INSTANCE, PythonHandler
from domain.enums import ErrorType
from domain.workflow_error import WorkflowError


class Dispatcher:
    """Routes each call; Python callables run under the step's timeout too. A full
    `StepHandler`: the remote handler's abilities (routing ahead, backpressure) are found
    once, here, and absent ones answer as a handler without them would."""

    def __init__(self, python: PythonHandler | None = None, remote: RemoteHandler | None = None,
                 max_threads: int = 16) -> None:
        self.python = python or PythonHandler()
        self.remote = remote
        self._router = remote if isinstance(remote, RoutesAhead) else None
        self._backpressure = remote if isinstance(remote, ReportsBackpressure) else None
        self._pool = concurrent.futures.ThreadPoolExecutor(max_threads, "wes-step")

    def __call__(self, call: StepCall) -> StepOutcome:
        if self.python.handles(call.service, call.operation):
            return self._run_python(call)
        if self.remote is None:
            error = WorkflowError.create(
                call.step_id, call.service, "NO_HANDLER",
                f"no handler for service {call.service!r}: register a Python handler or "
                "configure the service in WES_SERVICES", ErrorType.INTERNAL_ERROR, False)
            return StepOutcome.failure(error, 0)
        return self.remote(call)

    def reserve(self, service: str, operation: str) -> str | None:
        """The instance a remote call will go to, chosen now so that the step's start can
        name it (the load read model counts work in flight per instance); "python" for a
        registered callable; None when the remote handler cannot route ahead."""
        if self.python.handles(service, operation):
            return PYTHON_INSTANCE
        return self._router.reserve(service) if self._router is not None else None

    def release(self, instance: str, service: str) -> None:
        """Gives back a reservation whose call will not be made."""
        if instance != PYTHON_INSTANCE and self._router is not None:
            self._router.release(instance, service)

    def unavailable_for(self, service: str) -> float | None:
        """Seconds to wait before a remote call to `service` can be routed (None: go)."""
        if self._backpressure is None:
            return None
        return self._backpressure.unavailable_for(service)

    def is_local(self, service: str, operation: str) -> bool:
        """Whether calls of this operation run as local activities (see PythonHandler)."""
        return self.python.is_local(service, operation)

    def _run_python(self, call: StepCall) -> StepOutcome:
        started = time.perf_counter()
        future = self._pool.submit(self.python, call)
        try:
            return future.result(timeout=call.timeout_s)
        except concurrent.futures.TimeoutError:
            # The callable keeps running in its thread; its late result is discarded.
            error = WorkflowError.create(
                call.step_id, call.service, "STEP_TIMEOUT",
                f"{call.service}/{call.operation} did not finish within {call.timeout_s:.3f} s",
                ErrorType.TIMEOUT, True)
            return StepOutcome.failure(error, int((time.perf_counter() - started) * 1000))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
