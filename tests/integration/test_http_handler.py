"""The HTTP step handler against the simulated services over real HTTP: every outcome mapping."""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from application.engine.http_handler import BODY_EXCERPT_CHARS, HttpStepHandler
from application.engine.ports import StepCall, StepOutcome
from application.engine.registry import ServiceRegistry
from domain.enums import ErrorType
from domain.workflow_error import WorkflowError
from simulator.background import RunningSimulator
from simulator.client import SimulatorClient

Observed = tuple[str, str, float, bool]


def step_call(service: str = "inventory-service", operation: str = "reserve",
              input: dict[str, Any] | None = None, *, attempt: int = 1,
              timeout_s: float = 5.0, compensation: bool = False,
              correlation_id: str = "corr-1") -> StepCall:
    workflow_id = uuid.uuid4()
    key = f"{workflow_id}:reserve-inventory" + (":compensate" if compensation else "")
    return StepCall(workflow_id=workflow_id, step_id="reserve-inventory", attempt=attempt,
                    service=service, operation=operation,
                    input=input if input is not None else {"orderId": "order-1"},
                    timeout_s=timeout_s, correlation_id=correlation_id,
                    idempotency_key=key, compensation=compensation)


def error_of(outcome: StepOutcome) -> WorkflowError:
    assert outcome.error is not None, outcome
    return outcome.error


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def observed() -> list[Observed]:
    return []


@pytest.fixture
def handler(service_registry: ServiceRegistry,
            observed: list[Observed]) -> Iterator[HttpStepHandler]:
    def observe(instance: str, service: str, duration_ms: float, ok: bool) -> None:
        observed.append((instance, service, duration_ms, ok))

    with HttpStepHandler(service_registry, observer=observe) as h:
        yield h


class TestSuccess:
    def test_a_json_object_answer_is_the_steps_output(
        self, handler: HttpStepHandler, simulator_url: str,
    ) -> None:
        outcome = handler(step_call(input={"orderId": "order-1", "items": [{"sku": "A"}]}))
        assert outcome.ok
        assert outcome.output is not None
        assert outcome.output["reservationId"].startswith("res-")
        assert outcome.output["items"] == [{"sku": "A"}]
        assert outcome.instance == f"{simulator_url}/inventory-service"
        assert outcome.duration_ms >= 0
        assert outcome.extra["http_status"] == 200

    def test_sends_the_idempotency_key_the_attempt_and_the_correlation_id(
        self, handler: HttpStepHandler, simulator: SimulatorClient,
    ) -> None:
        call = step_call(attempt=2, correlation_id="order-7-corr")
        handler(call)
        [received] = simulator.calls()
        assert received["idempotency_key"] == f"{call.workflow_id}:reserve-inventory"
        assert received["attempt"] == 2
        assert received["correlation_id"] == "order-7-corr"
        assert received["input"] == {"orderId": "order-1"}

    def test_a_compensation_call_has_a_key_of_its_own(
        self, handler: HttpStepHandler, simulator: SimulatorClient,
    ) -> None:
        call = step_call(operation="release", compensation=True)
        assert handler(call).ok
        [received] = simulator.calls()
        assert received["operation"] == "release"
        assert received["idempotency_key"] == f"{call.workflow_id}:reserve-inventory:compensate"

    def test_a_call_made_again_gets_the_first_answer(
        self, handler: HttpStepHandler, simulator: SimulatorClient,
    ) -> None:
        call = step_call()
        first, again = handler(call), handler(call)
        assert again.output == first.output
        assert [c["repeated"] for c in simulator.calls()] == [False, True]

    def test_a_later_attempt_with_the_same_key_gets_the_first_answer(
        self, handler: HttpStepHandler, simulator: SimulatorClient,
    ) -> None:
        first = step_call()
        second = dataclasses.replace(first, attempt=2)
        answered_first = handler(first).output
        assert handler(second).output == answered_first
        assert [(c["attempt"], c["repeated"]) for c in simulator.calls()] == [
            (1, False), (2, True)]

    def test_input_values_json_cannot_hold_natively_are_sent_as_text(
        self, handler: HttpStepHandler, simulator: SimulatorClient,
    ) -> None:
        batch = uuid.uuid4()
        at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        assert handler(step_call(input={"orderId": "o", "batch": batch, "at": at})).ok
        [received] = simulator.calls()
        assert received["input"] == {"orderId": "o", "batch": str(batch),
                                     "at": "2026-01-02T03:04:05+00:00"}

    def test_an_empty_2xx_body_is_a_success_with_no_output(
        self, handler: HttpStepHandler, simulator: SimulatorClient,
    ) -> None:
        simulator.add_fault("inventory-service", "garbage", "reserve", body="")
        outcome = handler(step_call())
        assert outcome.ok
        assert outcome.output == {}


class TestRejections:
    def test_a_business_rejection_keeps_the_services_code_and_message(
        self, handler: HttpStepHandler, simulator: SimulatorClient,
    ) -> None:
        simulator.add_fault("inventory-service", "unrecoverable", "reserve")
        outcome = handler(step_call())
        error = error_of(outcome)
        assert (error.code, error.error_type, error.recoverable) == (
            "INSUFFICIENT_INVENTORY", ErrorType.BUSINESS_RULE_VIOLATION, False)
        assert error.message == "not enough stock to reserve the order's items"
        assert (error.step_id, error.service) == ("reserve-inventory", "inventory-service")
        assert outcome.extra["http_status"] == 422

    @pytest.mark.parametrize(("status", "error_type"), [
        (400, ErrorType.VALIDATION_ERROR),
        (401, ErrorType.PERMISSION_DENIED),
        (403, ErrorType.PERMISSION_DENIED),
        (404, ErrorType.RESOURCE_NOT_FOUND),
        (409, ErrorType.BUSINESS_RULE_VIOLATION),
        (422, ErrorType.BUSINESS_RULE_VIOLATION),
    ])
    def test_a_4xx_answer_is_not_recoverable(
        self, handler: HttpStepHandler, simulator: SimulatorClient, status: int,
        error_type: ErrorType,
    ) -> None:
        simulator.add_fault("robotics-service", "unrecoverable", "assign", status=status,
                            code="ROBOT_RULE", message="robots say no")
        error = error_of(handler(step_call("robotics-service", "assign")))
        assert (error.error_type, error.recoverable) == (error_type, False)
        assert (error.code, error.message) == ("ROBOT_RULE", "robots say no")

    def test_a_request_timeout_answer_is_a_recoverable_timeout(
        self, handler: HttpStepHandler, simulator: SimulatorClient,
    ) -> None:
        simulator.add_fault("robotics-service", "unrecoverable", "assign", status=408)
        error = error_of(handler(step_call("robotics-service", "assign")))
        assert (error.error_type, error.recoverable) == (ErrorType.TIMEOUT, True)

    def test_an_invalid_request_is_a_validation_error(self, handler: HttpStepHandler) -> None:
        error = error_of(handler(step_call("warehouse-service", "pick", {"items": "SKU-1"})))
        assert (error.code, error.error_type, error.recoverable) == (
            "INVALID_REQUEST", ErrorType.VALIDATION_ERROR, False)
        assert error.message == "items must be a list"

    def test_an_unknown_operation_is_not_found(self, handler: HttpStepHandler) -> None:
        error = error_of(handler(step_call("inventory-service", "steal")))
        assert (error.code, error.error_type, error.recoverable) == (
            "UNKNOWN_OPERATION", ErrorType.RESOURCE_NOT_FOUND, False)


class TestUnavailability:
    @pytest.mark.parametrize("status", [429, 500, 502, 503])
    def test_429_and_5xx_are_recoverable_unavailability(
        self, handler: HttpStepHandler, simulator: SimulatorClient, status: int,
    ) -> None:
        simulator.add_fault("packing-service", "recoverable", "pack", status=status)
        outcome = handler(step_call("packing-service", "pack"))
        error = error_of(outcome)
        assert (error.code, error.error_type, error.recoverable) == (
            "SERVICE_UNAVAILABLE", ErrorType.SERVICE_UNAVAILABLE, True)
        assert outcome.extra["http_status"] == status

    def test_an_outage_is_recoverable(
        self, handler: HttpStepHandler, simulator: SimulatorClient,
    ) -> None:
        simulator.add_fault("packing-service", "outage")
        error = error_of(handler(step_call("packing-service", "unpack")))
        assert (error.code, error.error_type, error.recoverable) == (
            "SERVICE_OUTAGE", ErrorType.SERVICE_UNAVAILABLE, True)

    def test_no_answer_within_the_timeout_is_a_recoverable_timeout(
        self, handler: HttpStepHandler, simulator: SimulatorClient,
    ) -> None:
        simulator.add_fault("warehouse-service", "latency", "pick", latency_ms=800)
        outcome = handler(step_call("warehouse-service", "pick", timeout_s=0.2))
        error = error_of(outcome)
        assert (error.code, error.error_type, error.recoverable) == (
            "TIMEOUT", ErrorType.TIMEOUT, True)
        assert 200 <= outcome.duration_ms < 800

    def test_an_answer_within_the_timeout_is_waited_for(
        self, handler: HttpStepHandler, simulator: SimulatorClient,
    ) -> None:
        simulator.add_fault("warehouse-service", "latency", "pick", latency_ms=200)
        outcome = handler(step_call("warehouse-service", "pick", timeout_s=2.0))
        assert outcome.ok
        assert outcome.duration_ms >= 200

    def test_waiting_too_long_for_a_pooled_connection_is_a_timeout_not_blamed_on_the_instance(
        self, service_registry: ServiceRegistry, simulator: SimulatorClient,
        observed: list[Observed],
    ) -> None:
        simulator.add_fault("warehouse-service", "latency", "pick", latency_ms=1100)
        with HttpStepHandler(service_registry, max_connections=1,
                             observer=lambda *args: observed.append(args)) as handler:
            holder = threading.Thread(
                target=handler, args=(step_call("warehouse-service", "pick", timeout_s=1.0),))
            holder.start()
            time.sleep(0.2)
            outcome = handler(step_call("warehouse-service", "pick", timeout_s=0.1))
            holder.join()
        error = error_of(outcome)
        assert (error.error_type, error.recoverable) == (ErrorType.TIMEOUT, True)
        assert error.message.startswith("no free connection")
        # The call that reached the instance is judged; the one that never got a
        # connection is reported with ok=None (not blamed on the instance).
        verdicts = [ok for *_, ok in observed]
        assert len(verdicts) == 2 and verdicts.count(None) == 1

    def test_a_refused_connection_is_a_recoverable_network_error(self) -> None:
        instance = f"http://127.0.0.1:{closed_port()}/inventory-service"
        registry = ServiceRegistry({"inventory-service": [instance]})
        with HttpStepHandler(registry) as handler:
            outcome = handler(step_call())
        error = error_of(outcome)
        assert (error.code, error.error_type, error.recoverable) == (
            "CONNECTION_FAILED", ErrorType.NETWORK_ERROR, True)
        assert outcome.instance == instance


class TestBadAnswers:
    def test_a_2xx_that_is_not_json_is_a_recoverable_bad_response(
        self, handler: HttpStepHandler, simulator: SimulatorClient,
    ) -> None:
        simulator.add_fault("packing-service", "garbage", "pack", body="<html>oops</html>")
        error = error_of(handler(step_call("packing-service", "pack")))
        assert (error.code, error.error_type, error.recoverable) == (
            "BAD_RESPONSE", ErrorType.INTERNAL_ERROR, True)
        assert error.detail == "<html>oops</html>"

    def test_a_2xx_json_that_is_not_an_object_is_a_bad_response(
        self, handler: HttpStepHandler, simulator: SimulatorClient,
    ) -> None:
        simulator.add_fault("packing-service", "garbage", "pack", body="[1, 2, 3]")
        error = error_of(handler(step_call("packing-service", "pack")))
        assert (error.code, error.detail) == ("BAD_RESPONSE", "[1, 2, 3]")

    def test_the_raw_body_kept_in_the_detail_is_truncated(
        self, handler: HttpStepHandler, simulator: SimulatorClient,
    ) -> None:
        simulator.add_fault("packing-service", "garbage", "pack", body="x" * 5000)
        error = error_of(handler(step_call("packing-service", "pack")))
        assert error.detail == "x" * BODY_EXCERPT_CHARS + "…"

    def test_the_default_garbage_is_a_bad_response(
        self, handler: HttpStepHandler, simulator: SimulatorClient,
    ) -> None:
        simulator.add_fault("packing-service", "garbage", "pack")
        assert error_of(handler(step_call("packing-service", "pack"))).code == "BAD_RESPONSE"


class TestOutputLimit:
    def test_an_answer_over_the_limit_is_a_failure_naming_the_limit(
        self, service_registry: ServiceRegistry, simulator: SimulatorClient,
        observed: list[Observed],
    ) -> None:
        simulator.add_fault("packing-service", "garbage", "pack",
                            body=json.dumps({"label": "x" * 10_000}))

        def observe(instance: str, service: str, duration_ms: float, ok: bool) -> None:
            observed.append((instance, service, duration_ms, ok))

        with HttpStepHandler(service_registry, observer=observe,
                             max_output_bytes=4096) as handler:
            error = error_of(handler(step_call("packing-service", "pack")))
        assert (error.code, error.error_type, error.recoverable) == (
            "OUTPUT_TOO_LARGE", ErrorType.VALIDATION_ERROR, False)
        assert "4096 bytes (WES_MAX_OUTPUT_BYTES)" in error.message
        assert [ok for *_, ok in observed] == [True]  # the instance answered

    def test_an_answer_within_the_limit_is_the_output(
        self, service_registry: ServiceRegistry, simulator: SimulatorClient,
    ) -> None:
        body = json.dumps({"label": "x" * 3000})
        simulator.add_fault("packing-service", "garbage", "pack", body=body)
        with HttpStepHandler(service_registry, max_output_bytes=len(body)) as handler:
            outcome = handler(step_call("packing-service", "pack"))
        assert outcome.output == {"label": "x" * 3000}

    def test_an_error_answer_over_the_limit_keeps_its_status_meaning(self) -> None:
        from fastapi import FastAPI
        from fastapi.responses import PlainTextResponse

        from cli.background import serve_in_background

        proxy = FastAPI()

        @proxy.post("/busy-service/op")
        async def busy() -> PlainTextResponse:
            return PlainTextResponse("<html>" + "busy " * 20_000, status_code=503)

        server = serve_in_background(proxy)
        try:
            registry = ServiceRegistry({"busy-service": [f"{server.url}/busy-service"]})
            with HttpStepHandler(registry, max_output_bytes=1024) as handler:
                error = error_of(handler(step_call("busy-service", "op")))
        finally:
            server.stop()
        assert (error.error_type, error.recoverable) == (ErrorType.SERVICE_UNAVAILABLE, True)
        assert error.detail is not None and error.detail.startswith("<html>busy")


class TestNeverRaises:
    def test_an_unknown_service_is_a_failed_step(self, handler: HttpStepHandler) -> None:
        error = error_of(handler(step_call("billing-service", "charge")))
        assert (error.code, error.error_type, error.recoverable) == (
            "UNKNOWN_SERVICE", ErrorType.INTERNAL_ERROR, False)

    def test_input_that_cannot_be_sent_is_a_failed_step(
        self, handler: HttpStepHandler, simulator: SimulatorClient,
    ) -> None:
        error = error_of(handler(step_call(input={"orderId": object()})))
        assert (error.code, error.recoverable) == ("BAD_INPUT", False)
        assert simulator.calls() == []

    def test_a_failing_observer_does_not_fail_the_call(
        self, service_registry: ServiceRegistry,
    ) -> None:
        def broken(instance: str, service: str, duration_ms: float, ok: bool) -> None:
            raise RuntimeError("observer is broken")

        with HttpStepHandler(service_registry, observer=broken) as handler:
            assert handler(step_call()).ok


class TestObserver:
    def test_is_told_of_every_call_and_whether_the_instance_served_it(
        self, handler: HttpStepHandler, simulator: SimulatorClient, simulator_url: str,
        observed: list[Observed],
    ) -> None:
        handler(step_call())
        simulator.add_fault("inventory-service", "unrecoverable", "reserve", count=1)
        handler(step_call())
        simulator.add_fault("inventory-service", "recoverable", "reserve", count=1)
        handler(step_call())
        simulator.add_fault("inventory-service", "latency", "reserve", latency_ms=600, count=1)
        handler(step_call(timeout_s=0.1))
        simulator.add_fault("inventory-service", "garbage", "reserve", count=1)
        handler(step_call())

        instance = f"{simulator_url}/inventory-service"
        assert [(i, s, ok) for i, s, _, ok in observed] == [
            (instance, "inventory-service", True),
            (instance, "inventory-service", True),  # a rejection is a served call
            (instance, "inventory-service", False),
            (instance, "inventory-service", False),
            (instance, "inventory-service", False),
        ]
        assert observed[3][2] >= 100

    def test_calls_that_were_never_sent_are_reported_without_a_verdict(
        self, handler: HttpStepHandler, observed: list[Observed],
    ) -> None:
        handler(step_call("billing-service", "charge"))  # unknown: no instance was chosen
        handler(step_call(input={"orderId": object()}))  # chosen, but nothing was sent
        assert [(service, ok) for _, service, _, ok in observed] == [("inventory-service", None)]


class TestRouting:
    def test_calls_go_round_robin_over_a_services_instances(
        self, start_simulator: Callable[..., RunningSimulator],
    ) -> None:
        first, second = start_simulator("inv-01"), start_simulator("inv-02")
        urls = [first.service_url("inventory-service"), second.service_url("inventory-service")]
        registry = ServiceRegistry({"inventory-service": urls})
        with HttpStepHandler(registry) as handler:
            outcomes = [handler(step_call()) for _ in range(4)]
        assert [o.instance for o in outcomes] == urls * 2
        assert [o.output["instance"] for o in outcomes if o.output] == ["inv-01", "inv-02"] * 2

    def test_the_selector_can_be_replaced(
        self, service_registry: ServiceRegistry, handler: HttpStepHandler,
        start_simulator: Callable[..., RunningSimulator],
    ) -> None:
        spare = start_simulator("spare").service_url("inventory-service")

        def always_spare(service: str, instances: Sequence[str]) -> str:
            return spare

        service_registry.use_selector(always_spare)
        assert handler(step_call()).instance == spare


class TestOverallDeadline:
    def test_a_service_trickling_its_answer_is_cut_off_at_the_step_timeout(self) -> None:
        import asyncio

        from fastapi import FastAPI
        from fastapi.responses import StreamingResponse

        from cli.background import serve_in_background

        trickle = FastAPI()

        @trickle.post("/slow-service/op")
        async def slow() -> StreamingResponse:
            async def drip():  # type: ignore[no-untyped-def]
                for _ in range(30):
                    yield b" "
                    await asyncio.sleep(0.1)
                yield b"{}"
            return StreamingResponse(drip(), media_type="application/json")

        server = serve_in_background(trickle)
        try:
            registry = ServiceRegistry({"slow-service": [f"{server.url}/slow-service"]})
            with HttpStepHandler(registry) as handler:
                started = time.perf_counter()
                outcome = handler(step_call("slow-service", "op", timeout_s=0.5))
                elapsed = time.perf_counter() - started
        finally:
            server.stop()
        assert outcome.error is not None
        assert (outcome.error.error_type, outcome.error.recoverable) == (ErrorType.TIMEOUT, True)
        assert elapsed < 1.5
