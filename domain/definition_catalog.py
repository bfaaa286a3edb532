"""DefinitionCatalog: the event-sourced register of workflow definition versions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from eventsourcing.domain import Aggregate

from domain.definition import WorkflowDefinition
from domain.exceptions import DomainError

CATALOG_ID = uuid.uuid5(uuid.NAMESPACE_URL, "wes-orchestrator:definition-catalog")


class DefinitionVersionExists(DomainError):
    """A version can be registered once; a changed definition needs a new version."""

    def __init__(self, name: str, version: int) -> None:
        self.name = name
        self.version = version
        super().__init__(
            f"definition {name!r} version {version} is already registered with other content;"
            " register a new version instead"
        )


class DefinitionCatalog(Aggregate):
    """All definition versions, in one stream (definitions change rarely)."""

    class Registered(Aggregate.Event):
        """A definition version was registered."""

        name: str
        version: int
        definition: dict[str, Any]
        actor: str

        def apply(self, aggregate: Any) -> None:
            catalog = cast(DefinitionCatalog, aggregate)
            catalog.definitions.setdefault(self.name, {})[self.version] = dict(self.definition)

    def __init__(self) -> None:
        self.definitions: dict[str, dict[int, dict[str, Any]]] = {}

    @staticmethod
    def create_id() -> uuid.UUID:
        return CATALOG_ID

    def register(self, definition: WorkflowDefinition, now: datetime, actor: str = "admin") -> bool:
        """Records the version; returns False when the identical version is already there."""
        data = definition.to_dict()
        existing = self.definitions.get(definition.name, {}).get(definition.version)
        if existing is not None:
            if existing == data:
                return False
            raise DefinitionVersionExists(definition.name, definition.version)
        self.trigger_event(self.Registered, timestamp=now, name=definition.name,
                           version=definition.version, definition=data, actor=actor)
        return True

    def get(self, name: str, version: int | None = None) -> WorkflowDefinition | None:
        versions = self.definitions.get(name)
        if not versions:
            return None
        chosen = versions.get(version) if version is not None else versions[max(versions)]
        return WorkflowDefinition.from_dict(chosen) if chosen is not None else None

    def versions(self, name: str) -> list[int]:
        return sorted(self.definitions.get(name, {}))

    def names(self) -> list[str]:
        return sorted(self.definitions)
