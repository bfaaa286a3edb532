"""The application's own errors; library and driver errors are translated into these."""

from __future__ import annotations

from uuid import UUID


class ApplicationError(Exception):
    """Base of the application's errors."""


class WorkflowNotFound(ApplicationError, LookupError):
    """No workflow has this id."""

    def __init__(self, workflow_id: UUID | str) -> None:
        self.workflow_id = workflow_id
        super().__init__(f"workflow {workflow_id} not found")


class DefinitionNotFound(ApplicationError, LookupError):
    """No definition (or no such version of it)."""

    def __init__(self, name: str, version: int | None = None) -> None:
        self.name = name
        self.version = version
        what = f"{name!r} version {version}" if version is not None else repr(name)
        super().__init__(f"workflow definition {what} not found")


class ConcurrencyConflict(ApplicationError):
    """Another command changed the workflow first; reload and decide again."""

    def __init__(self, workflow_id: UUID | str) -> None:
        self.workflow_id = workflow_id
        super().__init__(
            f"workflow {workflow_id} was changed by a concurrent command; retry on fresh state"
        )


class DatabaseUnavailable(ApplicationError):
    """PostgreSQL cannot be reached."""


class ConfigurationError(ApplicationError, ValueError):
    """A setting is missing or malformed."""
