"""The simulated warehouse services as one FastAPI app (API.md "Simulated warehouse services").

`POST /{service}/{operation}` runs an operation; `/faults` injects faults at run time;
`/calls` lists every call received. State lives in memory, per app (so per instance).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import uvicorn
from fastapi import FastAPI, Header, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from simulator.calls import DEFAULT_LOG_SIZE, Call, CallLog, IdempotencyStore
from simulator.faults import DEFAULT_STATUS, Fault, FaultBook, FaultSpec
from simulator.warehouse import (
    BUSINESS_ERRORS,
    SERVICE_OPERATIONS,
    InvalidRequest,
    Warehouse,
    order_id_of,
)

log = logging.getLogger(__name__)

DEFAULT_INSTANCE_ID = "simulator"
GARBAGE_BODY = "<html><body><h1>It works!</h1></body></html>"


@dataclass
class SimulatorState:
    """Everything one simulator instance remembers."""

    instance_id: str
    warehouse: Warehouse
    faults: FaultBook
    calls: CallLog
    answers: IdempotencyStore
    in_flight: int = 0
    _in_flight_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @contextmanager
    def serving(self) -> Iterator[None]:
        """Counts a call as in flight while it is being answered."""
        with self._in_flight_lock:
            self.in_flight += 1
        try:
            yield
        finally:
            with self._in_flight_lock:
                self.in_flight -= 1


class FaultCreated(BaseModel):
    """The answer to `POST /faults`."""

    id: str


def _problem(status: int, code: str, message: str) -> JSONResponse:
    """A business-style error answer: `{"code", "message"}`."""
    return JSONResponse({"code": code, "message": message}, status_code=status)


def _parse_body(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """The body as a JSON object, or None and the reason it is not one."""
    if not raw.strip():
        return {}, None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        return None, f"body is not valid JSON: {e}"
    if not isinstance(data, dict):
        return None, f"body must be a JSON object, not {type(data).__name__}"
    return data, None


def _fault_answer(fault: Fault, service: str, operation: str) -> Response:
    spec = fault.spec
    if spec.kind == "garbage":
        return Response(spec.body if spec.body is not None else GARBAGE_BODY,
                        status_code=DEFAULT_STATUS["garbage"], media_type="application/json")
    if spec.kind == "outage":
        code, message = "SERVICE_OUTAGE", f"{service} is down"
    elif spec.kind == "recoverable":
        code, message = "SERVICE_UNAVAILABLE", f"{service} is temporarily unavailable"
    else:
        code, message = BUSINESS_ERRORS.get((service, operation),
                                            ("BUSINESS_RULE_VIOLATION", "request rejected"))
    status = spec.status or DEFAULT_STATUS[spec.kind]
    return JSONResponse({"code": spec.code or code, "message": spec.message or message,
                         "fault": fault.id}, status_code=status)


def create_app(instance_id: str = DEFAULT_INSTANCE_ID, *, seed: int | None = None,
               log_size: int = DEFAULT_LOG_SIZE) -> FastAPI:
    """The simulator app; `instance_id` names it in answers and calls, `seed` its fault coins."""
    state = SimulatorState(instance_id, Warehouse(instance_id), FaultBook(seed),
                           CallLog(log_size), IdempotencyStore())
    app = FastAPI(
        title="WES simulated warehouse services",
        version="1.0.0",
        description=(
            "Four simulated services (inventory, robotics, warehouse, packing), each operation "
            "idempotent by the Idempotency-Key header (the first successful answer is stored "
            "and replayed to every later call with the key, whatever its X-WES-Attempt; "
            "failures are not stored), with fault injection at run time."),
    )
    app.state.simulator = state

    _basic_routes(app, state)
    _fault_routes(app, state)
    _call_routes(app, state)
    _service_routes(app, state)
    return app


def _basic_routes(app: FastAPI, state: SimulatorState) -> None:
    """Validation errors in the services' own shape, and liveness."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = jsonable_encoder(exc.errors())
        message = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in errors)
        return JSONResponse({"code": "INVALID_REQUEST", "message": message, "errors": errors},
                            status_code=422)

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str | int]:
        """Liveness, and how many operation calls are being answered right now."""
        return {"status": "ok", "instance": state.instance_id, "in_flight": state.in_flight}


def _fault_routes(app: FastAPI, state: SimulatorState) -> None:
    """Fault injection at run time."""

    @app.post("/faults", status_code=201, tags=["faults"])
    def add_fault(spec: FaultSpec) -> FaultCreated:
        """Injects a fault; it affects matching calls until removed or its count runs out."""
        fault = state.faults.add(spec)
        log.info("fault injected", extra={"fault": fault.to_dict()})
        return FaultCreated(id=fault.id)

    @app.get("/faults", tags=["faults"])
    def list_faults() -> dict[str, list[dict[str, Any]]]:
        """The faults in force (an exhausted one stays listed with `remaining` 0)."""
        return {"items": state.faults.snapshot()}

    @app.delete("/faults/{fault_id}", tags=["faults"])
    def remove_fault(fault_id: str) -> JSONResponse:
        """Removes one fault."""
        if not state.faults.remove(fault_id):
            return _problem(404, "FAULT_NOT_FOUND", f"no fault {fault_id}")
        return JSONResponse({"deleted": 1})

    @app.delete("/faults", tags=["faults"])
    def clear_faults() -> dict[str, int]:
        """Removes every fault."""
        return {"deleted": state.faults.clear()}


def _call_routes(app: FastAPI, state: SimulatorState) -> None:
    """The log of calls received."""

    @app.get("/calls", tags=["calls"])
    def list_calls(
        service: Annotated[str | None, Query()] = None,
        operation: Annotated[str | None, Query()] = None,
        order_id: Annotated[str | None, Query()] = None,
        idempotency_key: Annotated[str | None, Query()] = None,
    ) -> dict[str, list[dict[str, Any]]]:
        """Every call received, oldest first; the filters narrow it."""
        calls = state.calls.find(service=service, operation=operation, order_id=order_id,
                                 idempotency_key=idempotency_key)
        return {"items": [c.to_dict() for c in calls]}

    @app.delete("/calls", tags=["calls"])
    def clear_calls() -> dict[str, int]:
        """Forgets the calls received so far."""
        return {"deleted": state.calls.clear()}


def _service_routes(app: FastAPI, state: SimulatorState) -> None:
    """The services' operations."""

    @app.post("/{service}/{operation}", tags=["services"])
    async def call_operation(
        service: str, operation: str, request: Request,
        idempotency_key: Annotated[str | None, Header(
            alias="Idempotency-Key",
            description="Names the step execution (the same for every attempt): the first "
                        "successful answer is stored and answered again, with "
                        "`Idempotent-Replayed: true`, to every later call with this key; "
                        "a failed call stores nothing.")] = None,
        attempt: Annotated[str | None, Header(
            alias="X-WES-Attempt",
            description="Which try of the step this is (1-based); logged in `/calls`, it "
                        "never changes the answer.")] = None,
    ) -> Response:
        """Runs a service operation on the JSON body; idempotent by `Idempotency-Key`."""
        with state.serving():
            return await _answer_call(state, service, operation, request,
                                      idempotency_key or None, _attempt(attempt))


async def _answer_call(state: SimulatorState, service: str, operation: str,
                       request: Request, key: str | None, attempt: int | None) -> Response:
    """Faults first (delay, faulty answer), then the operation; every call is logged."""
    correlation_id = request.headers.get("x-correlation-id") or None
    body, body_problem = _parse_body(await request.body())
    repeated = False
    fault_id: str | None = None

    response: Response
    if service not in SERVICE_OPERATIONS:
        response = _problem(404, "UNKNOWN_SERVICE", f"no service {service!r}")
    else:
        effects = state.faults.effects(service, operation, body or {},
                                       applied=state.answers.seen(service, operation, key))
        if effects.delay_ms:
            await asyncio.sleep(effects.delay_ms / 1000)
        if effects.fault is not None:
            fault_id = effects.fault.id
            response = _fault_answer(effects.fault, service, operation)
        elif operation not in SERVICE_OPERATIONS[service]:
            response = _problem(404, "UNKNOWN_OPERATION",
                                f"{service} has no operation {operation!r}")
        elif body is None:
            response = _problem(400, "INVALID_REQUEST", body_problem or "bad body")
        else:
            response, repeated = _perform(state, service, operation, key, body)

    state.calls.record(Call(
        service=service, operation=operation, idempotency_key=key, attempt=attempt,
        repeated=repeated,
        order_id=order_id_of(body), status=response.status_code, at=datetime.now(UTC),
        instance=state.instance_id, correlation_id=correlation_id, fault_id=fault_id,
        input=body))
    response.headers["X-Instance-ID"] = state.instance_id
    if correlation_id is not None:
        response.headers["X-Correlation-ID"] = correlation_id
    return response


def _attempt(raw: str | None) -> int | None:
    """The X-WES-Attempt header as a number (logged only: it never changes the answer)."""
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def _perform(state: SimulatorState, service: str, operation: str, key: str | None,
             body: dict[str, Any]) -> tuple[Response, bool]:
    try:
        answer, repeated = state.answers.answer(
            service, operation, key, lambda: state.warehouse.perform(service, operation, body))
    except InvalidRequest as e:
        return _problem(400, "INVALID_REQUEST", str(e)), False
    response = JSONResponse(answer)
    if repeated:
        response.headers["Idempotent-Replayed"] = "true"
    return response, repeated


def run(host: str = "127.0.0.1", port: int = 8100, *, instance_id: str = DEFAULT_INSTANCE_ID,
        seed: int | None = None, log_level: str = "info") -> None:
    """Serves the simulator until interrupted (`wes services`)."""
    uvicorn.run(create_app(instance_id, seed=seed), host=host, port=port, log_level=log_level)
