"""WorkflowError: creation, recoverability by type, and classifying exceptions."""

from __future__ import annotations

import pytest

from domain.enums import ErrorType
from domain.workflow_error import WorkflowError
from tests.unit.sagas import NOW


class ValidationError(Exception):
    pass


class OrderNotFoundError(Exception):
    pass


class ForbiddenError(Exception):
    pass


class NetworkGlitch(Exception):
    pass


class ConnectTimeout(OSError):
    """Named like httpx's: both 'connect' and 'timeout'; the timeout wins."""


class ServiceRefusedConnection(ConnectionError):
    pass


class TestCreate:
    def test_create_from_the_guides_section_3_example(self) -> None:
        error = WorkflowError.create(
            "step-2", "inventory-service", "INVENTORY_UNAVAILABLE",
            "Insufficient inventory for product SKU-12345",
            ErrorType.BUSINESS_RULE_VIOLATION.name, True,
        )

        assert error.error_type == ErrorType.BUSINESS_RULE_VIOLATION
        assert error.recoverable is True
        assert (error.step_id, error.service, error.code) == (
            "step-2", "inventory-service", "INVENTORY_UNAVAILABLE")

    def test_an_explicit_recoverable_flag_overrides_the_types_default(self) -> None:
        error = WorkflowError.create("step-3", "robotics-service", "ROBOT_UNAVAILABLE",
                                     "All robots are offline", "SERVICE_UNAVAILABLE", False)

        assert error.recoverable is False

    @pytest.mark.parametrize("error_type", list(ErrorType))
    def test_only_timeout_service_unavailable_and_network_errors_recover_by_default(
        self, error_type: ErrorType,
    ) -> None:
        error = WorkflowError.create("s", "svc", "CODE", "message", error_type.value)

        expected = error_type in {ErrorType.TIMEOUT, ErrorType.SERVICE_UNAVAILABLE,
                                  ErrorType.NETWORK_ERROR}
        assert error.recoverable is expected

    def test_round_trips_through_its_dict(self) -> None:
        error = WorkflowError.create("s", "svc", "CODE", "message", "TIMEOUT",
                                     occurred_at=NOW, detail="after 5000 ms")

        assert WorkflowError.from_dict(error.to_dict()) == error


class TestFromException:
    @pytest.mark.parametrize(("exc", "expected"), [
        (TimeoutError("no answer in 5000 ms"), ErrorType.TIMEOUT),
        (ConnectTimeout("connect timed out"), ErrorType.TIMEOUT),
        (ValidationError("quantity must be positive"), ErrorType.VALIDATION_ERROR),
        (ValueError("bad sku"), ErrorType.VALIDATION_ERROR),
        (OrderNotFoundError("ORD-1"), ErrorType.RESOURCE_NOT_FOUND),
        (FileNotFoundError("label.pdf"), ErrorType.RESOURCE_NOT_FOUND),
        (PermissionError("robots are locked"), ErrorType.PERMISSION_DENIED),
        (ForbiddenError("zone B"), ErrorType.PERMISSION_DENIED),
        (ConnectionRefusedError("inventory-service"), ErrorType.NETWORK_ERROR),
        (ServiceRefusedConnection("robotics-service"), ErrorType.NETWORK_ERROR),
        (NetworkGlitch("packet loss"), ErrorType.NETWORK_ERROR),
        (RuntimeError("boom"), ErrorType.INTERNAL_ERROR),
        (ZeroDivisionError("division by zero"), ErrorType.INTERNAL_ERROR),
    ], ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else "")
    def test_classifies_by_the_kind_of_exception(self, exc: Exception,
                                                 expected: ErrorType) -> None:
        error = WorkflowError.from_exception("pick-items", "warehouse-service", exc)

        assert error.error_type == expected
        assert error.recoverable is expected.recoverable_by_default

    def test_keeps_the_step_service_class_name_and_message(self) -> None:
        error = WorkflowError.from_exception("pick-items", "warehouse-service",
                                             OrderNotFoundError("ORD-1 is unknown"),
                                             occurred_at=NOW)

        assert (error.step_id, error.service, error.code, error.message, error.occurred_at) == (
            "pick-items", "warehouse-service", "OrderNotFoundError", "ORD-1 is unknown", NOW)

    def test_an_exception_without_a_message_is_described_by_its_class(self) -> None:
        error = WorkflowError.from_exception(None, None, RuntimeError())

        assert error.message == "RuntimeError"

    def test_a_timeout_is_recoverable_and_an_internal_error_is_not(self) -> None:
        timeout = WorkflowError.from_exception("s", "svc", TimeoutError())
        internal = WorkflowError.from_exception("s", "svc", RuntimeError("bug"))

        assert (timeout.recoverable, internal.recoverable) == (True, False)
