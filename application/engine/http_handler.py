"""The HTTP step handler: `POST {base_url}/{operation}` on an instance of the step's service.

How answers become outcomes:

| answer | outcome |
|---|---|
| 2xx with a JSON object (or an empty body) | success with that output |
| 2xx with anything else | recoverable INTERNAL_ERROR, code BAD_RESPONSE, raw body in `detail` |
| 400 | VALIDATION_ERROR |
| 401, 403 | PERMISSION_DENIED |
| 404 | RESOURCE_NOT_FOUND |
| 408 | recoverable TIMEOUT |
| 422 and other 4xx | BUSINESS_RULE_VIOLATION |
| 429, 5xx | recoverable SERVICE_UNAVAILABLE |
| no answer in time | recoverable TIMEOUT |
| connection failed | recoverable NETWORK_ERROR |

Error answers keep the service's `code` and `message`; 4xx errors are not recoverable.
A 2xx answer whose body is over `max_output_bytes` (WES_MAX_OUTPUT_BYTES) is not read
further: a non-recoverable VALIDATION_ERROR, code OUTPUT_TOO_LARGE.

Every call carries `Idempotency-Key` (the step execution, the same for every attempt) and
`X-WES-Attempt` (which try this is, from 1): a service that has applied a key answers
every later call with it as it did the first time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

import httpx
import orjson

from application.engine.ports import (
    DEFAULT_MAX_OUTPUT_BYTES,
    StepCall,
    StepOutcome,
    output_too_large,
)
from application.engine.registry import ServiceRegistry, UnknownService
from application.errors import ApplicationError
from domain.enums import ErrorType
from domain.workflow_error import WorkflowError

log = logging.getLogger(__name__)

Observer = Callable[[str, str, float, bool | None], None]
"""Told of every selected instance: (instance, service, duration_ms, ok).

`ok` is whether the instance served the call: True for a success and for a 4xx rejection
(the instance is healthy, the request was refused); False for timeouts, connection errors,
429/5xx and unreadable answers; None when no request went out (nothing to judge, but the
selection is over, so load-aware routing can stop counting it as in flight).
"""

BODY_EXCERPT_CHARS = 500
ATTEMPT_HEADER = "X-WES-Attempt"

_STATUS_ERROR_TYPES: dict[int, ErrorType] = {
    400: ErrorType.VALIDATION_ERROR,
    401: ErrorType.PERMISSION_DENIED,
    403: ErrorType.PERMISSION_DENIED,
    404: ErrorType.RESOURCE_NOT_FOUND,
    408: ErrorType.TIMEOUT,
    429: ErrorType.SERVICE_UNAVAILABLE,
}


def error_type_for_status(status: int) -> ErrorType:
    """The error type of an HTTP error status (4xx, 5xx)."""
    if status in _STATUS_ERROR_TYPES:
        return _STATUS_ERROR_TYPES[status]
    if status >= 500:
        return ErrorType.SERVICE_UNAVAILABLE
    return ErrorType.BUSINESS_RULE_VIOLATION


def _excerpt(text: str) -> str:
    return text if len(text) <= BODY_EXCERPT_CHARS else text[:BODY_EXCERPT_CHARS] + "…"


def _error_fields(response: httpx.Response) -> tuple[str | None, str | None]:
    """The service's error code and message, from the shapes services commonly answer."""
    try:
        data: Any = response.json()
    except ValueError:
        return None, None
    if not isinstance(data, Mapping):
        return None, None
    if isinstance(data.get("error"), Mapping):  # {"error": {"code", "message"}}
        data = data["error"]
    code = data.get("code") or data.get("error_code")
    message = data.get("message") or data.get("detail") or data.get("title")
    return (str(code) if code else None,
            message if isinstance(message, str) else None)


class HttpStepHandler:
    """Calls warehouse services over HTTP with one pooled client; never raises. The
    dispatcher's remote handler: it routes ahead (`RoutesAhead`) and reports backpressure
    (`ReportsBackpressure`) through its registry.

    The call's `timeout_s` bounds each phase of the request (connect, send, wait for the
    answer), as httpx timeouts do. Thread-safe: workers share one handler and its pool.
    """

    def __init__(self, registry: ServiceRegistry, *, observer: Observer | None = None,
                 client: httpx.Client | None = None, max_connections: int = 100,
                 max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES) -> None:
        self.registry = registry
        self.observer = observer
        self.max_output_bytes = max_output_bytes
        self._client = client or httpx.Client(
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=max_connections),
            headers={"User-Agent": "wes-orchestrator"},
        )

    def reserve(self, service: str) -> str | None:
        """Routes a call before it is made (the engine records the instance with the step's
        start): the instance the registry selects, counted as busy until the call ends or
        `release` gives it back; None if none can be chosen now (the call will say why)."""
        try:
            return self.registry.select(service)
        except (UnknownService, ApplicationError):
            return None

    def release(self, instance: str, service: str) -> None:
        """Gives back a reservation whose call will not be made (its start was not saved)."""
        self._observe(instance, service, 0.0, None)

    def __call__(self, call: StepCall) -> StepOutcome:
        """Calls the operation on the reserved instance, or the one the registry selects;
        the outcome, never raises."""
        try:
            instance = call.instance or self.registry.select(call.service)
        except UnknownService as e:
            return StepOutcome.failure(self._error(call, "UNKNOWN_SERVICE", str(e),
                                                   ErrorType.INTERNAL_ERROR, False), 0)
        except ApplicationError as e:
            # Load-aware routing found no instance able to take work (all overloaded or
            # circuits open): try again later, like any unavailable service.
            return StepOutcome.failure(self._error(call, "NO_INSTANCE_AVAILABLE", str(e),
                                                   ErrorType.SERVICE_UNAVAILABLE, True), 0)
        started = time.perf_counter()
        outcome, healthy = self._call(instance, call)
        elapsed_ms = (time.perf_counter() - started) * 1000
        outcome = StepOutcome(outcome.output, outcome.error, int(elapsed_ms), instance,
                              outcome.extra)
        self._observe(instance, call.service, elapsed_ms, healthy)
        return outcome

    def unavailable_for(self, service: str) -> float | None:
        """Backpressure: seconds until an instance may take work (see the registry)."""
        return self.registry.unavailable_for(service)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpStepHandler:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _post(self, url: str, content: bytes, headers: dict[str, str],
              timeout_s: float) -> tuple[httpx.Response, bool]:
        """POSTs within an overall deadline: httpx's timeouts bound each phase (connect,
        write, every read), so a service trickling its answer byte by byte is cut off
        here once the step's whole timeout has passed. The answer is read up to just over
        `max_output_bytes` (so a huge one costs no memory); True if it was cut there."""
        deadline = time.monotonic() + timeout_s
        with self._client.stream("POST", url, content=content, headers=headers,
                                 timeout=timeout_s) as streamed:
            chunks = []
            size = 0
            cut = False
            for chunk in streamed.iter_raw():  # raw: the new Response decodes it
                chunks.append(chunk)
                size += len(chunk)
                if size > self.max_output_bytes:
                    cut = True
                    break
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout("the answer did not complete within the step "
                                            "timeout", request=streamed.request)
            body = b"".join(chunks)
            if cut:
                # What was read may end inside a compressed frame: keep it undecoded.
                headers_read = httpx.Headers(
                    [(k, v) for k, v in streamed.headers.multi_items()
                     if k.lower() != "content-encoding"])
                return httpx.Response(streamed.status_code, headers=headers_read,
                                      content=body, request=streamed.request), True
            return httpx.Response(streamed.status_code, headers=streamed.headers,
                                  content=body, request=streamed.request), False

    def _call(self, instance: str, call: StepCall) -> tuple[StepOutcome, bool | None]:
        """The outcome (its duration filled in by the caller) and whether the instance was ok.

        None instead of ok when no request could be sent, so there is nothing to observe.
        """
        url = f"{instance}/{call.operation}"
        where = f"{call.service}/{call.operation} at {instance}"
        try:
            content = orjson.dumps(call.input, option=orjson.OPT_NON_STR_KEYS)
        except TypeError as e:
            return self._failed(call, "BAD_INPUT", f"input is not JSON: {e}",
                                ErrorType.INTERNAL_ERROR, False), None
        headers = {"Content-Type": "application/json", "Idempotency-Key": call.idempotency_key,
                   ATTEMPT_HEADER: str(call.attempt)}
        if call.correlation_id:
            headers["X-Correlation-ID"] = call.correlation_id
        try:
            response, cut = self._post(url, content, headers, call.timeout_s)
        except httpx.PoolTimeout:
            # Every pooled connection was busy: our congestion, not the instance's health.
            return self._failed(call, "TIMEOUT", f"no free connection to {where} within "
                                f"{call.timeout_s:g}s", ErrorType.TIMEOUT, True), None
        except httpx.TimeoutException:
            return self._failed(call, "TIMEOUT", f"{where} did not answer within "
                                f"{call.timeout_s:g}s", ErrorType.TIMEOUT, True), False
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as e:
            return self._failed(call, "BAD_SERVICE_URL", f"{where}: {e}",
                                ErrorType.INTERNAL_ERROR, False), None
        except httpx.ConnectError as e:
            return self._failed(call, "CONNECTION_FAILED", f"{where}: {e}",
                                ErrorType.NETWORK_ERROR, True), False
        except httpx.TransportError as e:
            return self._failed(call, "NETWORK_ERROR", f"{where}: {type(e).__name__}: {e}",
                                ErrorType.NETWORK_ERROR, True), False
        except Exception as e:  # a handler never raises: anything else is a failed step
            log.exception("unexpected error calling %s", where)
            return StepOutcome.failure(
                WorkflowError.from_exception(call.step_id, call.service, e), 0), False
        return self._interpret(call, where, response, cut)

    def _interpret(self, call: StepCall, where: str, response: httpx.Response,
                   cut: bool = False) -> tuple[StepOutcome, bool]:
        status = response.status_code
        extra: dict[str, Any] = {"http_status": status}
        if 200 <= status < 300 and cut:
            # The instance answered (it is healthy); its answer is too big to keep.
            return StepOutcome(None, output_too_large(call, self.max_output_bytes), 0,
                               extra=extra), True
        if 200 <= status < 300:
            if not response.content.strip():
                return StepOutcome(output={}, error=None, duration_ms=0, extra=extra), True
            try:
                output: Any = response.json()
            except ValueError:
                output = None
            if isinstance(output, dict):
                return StepOutcome(output=output, error=None, duration_ms=0, extra=extra), True
            error = self._error(call, "BAD_RESPONSE",
                                f"{where} answered {status} with a body that is not a JSON "
                                "object", ErrorType.INTERNAL_ERROR, True,
                                detail=_excerpt(response.text))
            return StepOutcome(None, error, 0, extra=extra), False
        if status < 400:
            error = self._error(call, f"HTTP_{status}", f"{where} answered {status}",
                                ErrorType.INTERNAL_ERROR, False, detail=_excerpt(response.text))
            return StepOutcome(None, error, 0, extra=extra), False
        kind = error_type_for_status(status)
        recoverable = kind.recoverable_by_default
        code, message = _error_fields(response)
        error = self._error(call, code or f"HTTP_{status}",
                            message or f"{where} answered {status} {response.reason_phrase}",
                            kind, recoverable, detail=_excerpt(response.text))
        return StepOutcome(None, error, 0, extra=extra), not recoverable

    def _failed(self, call: StepCall, code: str, message: str, kind: ErrorType,
                recoverable: bool) -> StepOutcome:
        return StepOutcome.failure(self._error(call, code, message, kind, recoverable), 0)

    @staticmethod
    def _error(call: StepCall, code: str, message: str, kind: ErrorType, recoverable: bool,
               detail: str | None = None) -> WorkflowError:
        return WorkflowError.create(call.step_id, call.service, code, message, kind,
                                    recoverable, detail=detail)

    def _observe(self, instance: str, service: str, duration_ms: float, ok: bool | None) -> None:
        if self.observer is None:
            return
        try:
            self.observer(instance, service, duration_ms, ok)
        except Exception:  # an observer must not turn a recorded outcome into a crash
            log.exception("step call observer failed")
