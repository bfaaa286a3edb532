"""Batch projections: the same fold applies one event live or thousands in a rebuild."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, TypeVar

from eventsourcing.application import Application
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Notification, Tracking
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic

from projections.view import BatchTransaction, GenerationalView

TView = TypeVar("TView", bound=GenerationalView[Any])
Event = DomainEventProtocol[Any]
Item = tuple[Event, Tracking]


class UnhandledEvent(Exception):
    """An event a projection cannot process (e.g. a type from a newer version).

    The projection stops *before* it: its position stays at the previous event, so nothing
    is silently skipped, and the position is reported for the operator.
    """

    def __init__(self, projection: str, position: int, topic: str, reason: str) -> None:
        self.projection = projection
        self.position = position
        self.topic = topic
        self.reason = reason
        super().__init__(f"{projection} cannot handle event {topic} at position {position}: "
                         f"{reason}")


class BatchProjection(Projection[TView]):
    """A projection whose rows and tracking position commit together, batch by batch.

    Subclasses `load` the rows a batch touches, `fold` each event into them in memory and
    `save` the changed rows. Events the fold ignores still advance the position.
    """

    topics: tuple[str, ...] = ()  # every event: ignored ones must still move the position

    def process_event(self, domain_event: Event, tracking: Tracking) -> None:
        """The library's entry point (live): a batch of one."""
        self.process_batch([(domain_event, tracking)])

    def process_batch(self, batch: Sequence[Item], generation: int | None = None) -> int:
        """Applies the events the target generation does not have yet; returns how many."""
        if not batch:
            return 0
        application_name = batch[0][1].application_name
        with self.view.batch(application_name, generation) as tx:
            todo = [item for item in batch if tx.is_new(item[1].notification_id)]
            if todo:
                state = self.load(tx, [event for event, _ in todo])
                for event, tracking in todo:
                    try:
                        self.fold(state, event, tracking.notification_id)
                    except Exception as e:
                        raise UnhandledEvent(self.name, tracking.notification_id,
                                             get_topic(type(event)), repr(e)) from e
                self.save(tx, state)
                tx.track(todo[-1][1].notification_id)
            return len(todo)

    @abstractmethod
    def load(self, tx: BatchTransaction[Any], events: Sequence[Event]) -> Any:
        """Reads the rows these events touch."""

    @abstractmethod
    def fold(self, state: Any, event: Event, position: int) -> None:
        """Applies one event to the rows in memory; must not do I/O."""

    @abstractmethod
    def save(self, tx: BatchTransaction[Any], state: Any) -> None:
        """Writes the changed rows."""


def to_events(app: Application[Any], projection: str,
              notifications: Sequence[Notification]) -> tuple[list[Item], UnhandledEvent | None]:
    """Maps stored events to domain events, up to the first one this version cannot read."""
    items: list[Item] = []
    for notification in notifications:
        try:
            event = app.mapper.to_domain_event(notification)
        except Exception as e:
            return items, UnhandledEvent(projection, notification.id, notification.topic,
                                         repr(e))
        items.append((event, Tracking(app.name, notification.id)))
    return items, None
