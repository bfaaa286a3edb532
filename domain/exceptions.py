"""The domain's error hierarchy: every rejected command raises one of these, naming ids."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every rule the domain refuses to break."""


class InvalidValue(DomainError, ValueError):
    """A value object or command argument is out of range."""

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"invalid {field}={value!r}: {reason}")


class InvalidTransition(DomainError):
    """The workflow's current state does not allow the action."""

    def __init__(self, workflow_id: object, status: str, action: str, detail: str = "") -> None:
        self.workflow_id = workflow_id
        self.status = status
        self.action = action
        message = f"workflow {workflow_id} cannot {action} while {status}"
        super().__init__(f"{message}: {detail}" if detail else message)


class StepNotFound(DomainError):
    """A step id that the workflow does not have."""

    def __init__(self, workflow_id: object, step_id: str) -> None:
        self.workflow_id = workflow_id
        self.step_id = step_id
        super().__init__(f"workflow {workflow_id} has no step {step_id!r}")


class InvalidStepTransition(DomainError):
    """The step's current state does not allow the action (e.g. started twice)."""

    def __init__(self, workflow_id: object, step_id: str, status: str, action: str) -> None:
        self.workflow_id = workflow_id
        self.step_id = step_id
        self.status = status
        self.action = action
        super().__init__(f"step {step_id!r} of workflow {workflow_id} cannot {action} while {status}")


class InvalidDefinition(DomainError, ValueError):
    """A workflow definition breaks a rule; `field` points at the offending place."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")
