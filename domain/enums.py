"""Enumerations of the workflow domain (seed: WorkflowStatus, StepStatus, priorities, types)."""

from __future__ import annotations

from enum import StrEnum


class WorkflowStatus(StrEnum):
    """Lifecycle states of a workflow (seed section 10, plus COMPENSATION_FAILED)."""

    PENDING = "PENDING"
    EXECUTING = "EXECUTING"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    COMPENSATING = "COMPENSATING"
    COMPENSATED = "COMPENSATED"
    COMPENSATION_FAILED = "COMPENSATION_FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    @property
    def is_active(self) -> bool:
        return self in ACTIVE_STATUSES


TERMINAL_STATUSES = frozenset(
    {WorkflowStatus.COMPLETED, WorkflowStatus.COMPENSATED, WorkflowStatus.CANCELLED}
)
# FAILED and COMPENSATION_FAILED are not terminal: an operator can still act on them.
ACTIVE_STATUSES = frozenset(
    {WorkflowStatus.EXECUTING, WorkflowStatus.PAUSED, WorkflowStatus.COMPENSATING}
)


class StepStatus(StrEnum):
    """States of one step execution."""

    PENDING = "PENDING"
    EXECUTING = "EXECUTING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    COMPENSATING = "COMPENSATING"
    COMPENSATED = "COMPENSATED"
    SKIPPED = "SKIPPED"


class WorkflowPriority(StrEnum):
    """Priorities; a lower rank is served first (HIGH=1, NORMAL=2, LOW=3)."""

    HIGH = "HIGH"
    NORMAL = "NORMAL"
    LOW = "LOW"

    @property
    def rank(self) -> int:
        return _PRIORITY_RANK[self]


_PRIORITY_RANK = {WorkflowPriority.HIGH: 1, WorkflowPriority.NORMAL: 2, WorkflowPriority.LOW: 3}


class WorkflowType(StrEnum):
    """Kinds of warehouse workflow."""

    ORDER_FULFILLMENT = "ORDER_FULFILLMENT"
    RECEIVING = "RECEIVING"
    PUTAWAY = "PUTAWAY"
    PICKING = "PICKING"
    PACKING = "PACKING"
    SHIPPING = "SHIPPING"
    RETURNS_PROCESSING = "RETURNS_PROCESSING"
    INVENTORY_TRANSFER = "INVENTORY_TRANSFER"
    CYCLE_COUNT = "CYCLE_COUNT"
    REPLENISHMENT = "REPLENISHMENT"
    CROSS_DOCKING = "CROSS_DOCKING"
    WAVE_PROCESSING = "WAVE_PROCESSING"
    WAVELESS_PROCESSING = "WAVELESS_PROCESSING"
    QUALITY_CHECK = "QUALITY_CHECK"
    VALUE_ADDED_SERVICE = "VALUE_ADDED_SERVICE"

    @property
    def is_waveless_capable(self) -> bool:
        return self in WAVELESS_CAPABLE_TYPES


WAVELESS_CAPABLE_TYPES = frozenset(
    {WorkflowType.ORDER_FULFILLMENT, WorkflowType.PICKING, WorkflowType.PACKING}
)


class ErrorType(StrEnum):
    """Classification of a step error; decides default recoverability."""

    VALIDATION_ERROR = "VALIDATION_ERROR"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    TIMEOUT = "TIMEOUT"
    BUSINESS_RULE_VIOLATION = "BUSINESS_RULE_VIOLATION"
    DATA_INTEGRITY_ERROR = "DATA_INTEGRITY_ERROR"
    NETWORK_ERROR = "NETWORK_ERROR"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    RESOURCE_NOT_FOUND = "RESOURCE_NOT_FOUND"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    COMPENSATION_FAILED = "COMPENSATION_FAILED"

    @property
    def recoverable_by_default(self) -> bool:
        return self in RECOVERABLE_ERROR_TYPES


RECOVERABLE_ERROR_TYPES = frozenset(
    {ErrorType.TIMEOUT, ErrorType.SERVICE_UNAVAILABLE, ErrorType.NETWORK_ERROR}
)


class CompensationStrategy(StrEnum):
    """How a completed step is undone."""

    REVERSE_OPERATION = "REVERSE_OPERATION"
    DELETE_CREATED = "DELETE_CREATED"
    RESTORE_STATE = "RESTORE_STATE"
    CUSTOM = "CUSTOM"


class DrivenBy(StrEnum):
    """Who advances a workflow: the engine's workers, or the caller (seed sections 2-4)."""

    ENGINE = "engine"
    CALLER = "caller"
