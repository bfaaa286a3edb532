"""WorkflowError: what went wrong in a step, and whether trying again can help."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.enums import ErrorType
from domain.exceptions import InvalidValue

# The service applied the call (it answered 2xx) but its answer was over the size limit and
# could not be recorded: the step's effect is in the world without an output.
OUTPUT_TOO_LARGE = "OUTPUT_TOO_LARGE"


@dataclass(frozen=True, slots=True)
class WorkflowError:
    """An error recorded against a step (seed: WorkflowError.create / fromException)."""

    step_id: str | None
    service: str | None
    code: str
    message: str
    error_type: ErrorType
    recoverable: bool
    occurred_at: datetime | None = None
    detail: str | None = None

    @classmethod
    def create(
        cls,
        step_id: str | None,
        service: str | None,
        code: str,
        message: str,
        error_type: str | ErrorType,
        recoverable: bool | None = None,
        *,
        occurred_at: datetime | None = None,
        detail: str | None = None,
    ) -> WorkflowError:
        """Builds an error; recoverability defaults to the error type's default."""
        kind = parse_error_type(error_type)
        if not code:
            raise InvalidValue("code", code, "must not be empty")
        return cls(
            step_id=step_id,
            service=service,
            code=code,
            message=message,
            error_type=kind,
            recoverable=kind.recoverable_by_default if recoverable is None else bool(recoverable),
            occurred_at=occurred_at,
            detail=detail,
        )

    @classmethod
    def from_exception(
        cls,
        step_id: str | None,
        service: str | None,
        exc: BaseException,
        *,
        occurred_at: datetime | None = None,
    ) -> WorkflowError:
        """Classifies an exception by its kind (seed facts: timeout, validation, ...)."""
        kind = classify_exception(exc)
        return cls(
            step_id=step_id,
            service=service,
            code=type(exc).__name__,
            message=str(exc) or type(exc).__name__,
            error_type=kind,
            recoverable=kind.recoverable_by_default,
            occurred_at=occurred_at,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "step_id": self.step_id,
            "service": self.service,
            "code": self.code,
            "message": self.message,
            "error_type": self.error_type.value,
            "recoverable": self.recoverable,
            "occurred_at": self.occurred_at.isoformat() if self.occurred_at else None,
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkflowError:
        occurred = data.get("occurred_at")
        return cls(
            step_id=data.get("step_id"),
            service=data.get("service"),
            code=data["code"],
            message=data.get("message", ""),
            error_type=ErrorType(data["error_type"]),
            recoverable=bool(data["recoverable"]),
            occurred_at=datetime.fromisoformat(occurred) if isinstance(occurred, str) else occurred,
            detail=data.get("detail"),
        )


def parse_error_type(value: str | ErrorType) -> ErrorType:
    try:
        return ErrorType(value)
    except ValueError:
        raise InvalidValue(
            "error_type", value, f"unknown; known: {[t.value for t in ErrorType]}"
        ) from None


def classify_exception(exc: BaseException) -> ErrorType:
    """Maps an exception to an ErrorType by its class names (including bases)."""
    if isinstance(exc, TimeoutError):
        return ErrorType.TIMEOUT
    if isinstance(exc, ConnectionError):
        return ErrorType.NETWORK_ERROR
    if isinstance(exc, PermissionError):
        return ErrorType.PERMISSION_DENIED
    if isinstance(exc, (KeyError, LookupError, FileNotFoundError)):
        return ErrorType.RESOURCE_NOT_FOUND
    names = " ".join(c.__name__.lower() for c in type(exc).__mro__)
    for needle, kind in (
        ("timeout", ErrorType.TIMEOUT),
        ("validation", ErrorType.VALIDATION_ERROR),
        ("notfound", ErrorType.RESOURCE_NOT_FOUND),
        ("permission", ErrorType.PERMISSION_DENIED),
        ("forbidden", ErrorType.PERMISSION_DENIED),
        ("network", ErrorType.NETWORK_ERROR),
        ("connect", ErrorType.NETWORK_ERROR),
    ):
        if needle in names:
            return kind
    if isinstance(exc, ValueError):
        return ErrorType.VALIDATION_ERROR
    return ErrorType.INTERNAL_ERROR
