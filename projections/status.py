"""A projection's status: how far it is behind the event store, and in what state.

What it reads of the event store is `EventLog`: its name (the tracking key), its head and
the time of the oldest event not applied yet, not the application itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from eventsourcing.persistence import ApplicationRecorder, Mapper


@dataclass(frozen=True, slots=True)
class ProjectionStatus:
    """How far a projection is (API.md `GET /v1/projections`)."""

    name: str
    position: int
    head: int
    lag_events: int
    lag_seconds: float | None
    state: str
    generation: int
    rebuilding_generation: int | None = None
    rebuilding_position: int | None = None
    error_position: int | None = None
    rebuild_needed: str | None = None  # why the live generation's rows are incomplete


class HasEventStore(Protocol):
    """An application, as far as a status reads it."""

    @property
    def name(self) -> str: ...

    @property
    def recorder(self) -> ApplicationRecorder: ...

    @property
    def mapper(self) -> Mapper[Any]: ...


@dataclass(frozen=True, slots=True)
class EventLog:
    """The event store a projection follows, as its status reads it."""

    application_name: str
    recorder: ApplicationRecorder
    mapper: Mapper[Any]

    @classmethod
    def of(cls, app: HasEventStore) -> EventLog:
        return cls(app.name, app.recorder, app.mapper)

    def head(self) -> int:
        return self.recorder.max_notification_id() or 0

    def oldest_wait_seconds(self, position: int) -> float | None:
        """How long the oldest event after `position` has been waiting to be applied (or
        relayed); None if it cannot be read."""
        notifications: Sequence[Any] = self.recorder.select_notifications(
            start=position, limit=1, inclusive_of_start=False)
        if not notifications:
            return 0.0
        try:
            event = self.mapper.to_domain_event(notifications[0])
        except Exception:  # an event this version cannot read: the state says so
            return None
        return max((datetime.now(UTC) - event.timestamp).total_seconds(), 0.0)


def oldest_wait_seconds(app: HasEventStore, position: int) -> float | None:
    """`EventLog.oldest_wait_seconds` of an application's event store."""
    return EventLog.of(app).oldest_wait_seconds(position)


def state_of(row: Mapping[str, Any]) -> str:
    """The state shown for a status row: an error, else what the advisory locks held say."""
    if row["error"]:
        return f"error: {row['error']}"
    if row["rebuilding"]:
        return "rebuilding"
    if row["active"]:
        return "running"
    if row["present"]:
        return "standby"
    return "stopped"


def status_of(name: str, row: Mapping[str, Any], head: int, lag_seconds: float | None,
              building_position: int | None) -> ProjectionStatus:
    """A projection's status from its status row (the pointer, the position, the locks
    held), the event store's head and the wait of the oldest event not applied."""
    position = row["position"] or 0
    rebuilding = bool(row["rebuilding"])
    return ProjectionStatus(
        name=name, position=position, head=head, lag_events=max(head - position, 0),
        lag_seconds=lag_seconds, state=state_of(row), generation=row["generation"],
        rebuilding_generation=row["building"] if rebuilding else None,
        rebuilding_position=building_position if rebuilding else None,
        error_position=row["error_position"], rebuild_needed=row["rebuild_needed"],
    )
