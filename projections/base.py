"""Batch projections: the same fold applies one event live or thousands in a rebuild."""

from __future__ import annotations

import functools
from abc import abstractmethod
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar, cast

import orjson
from eventsourcing.application import Application
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import (
    EventStore,
    JSONTranscoder,
    Mapper,
    Notification,
    StoredEvent,
    Tracking,
    find_id_convertor,
)
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic, resolve_topic
from psycopg.sql import SQL, Identifier

from projections.aggregates import WorkflowCache
from projections.batch import BatchTransaction
from projections.generations import GenerationalView

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
    `save` the changed rows. Events the fold ignores still advance the position. Those
    whose rows show a workflow fold its events into `workflows`, the aggregates at the
    version last folded (reconstructed from `use_event_store`'s events when missing).
    """

    topics: tuple[str, ...] = ()  # every event: ignored ones must still move the position

    def __init__(self, view: TView) -> None:
        super().__init__(view=view)
        self.workflows = WorkflowCache()

    def use_event_store(self, events: EventStore[Any]) -> None:
        """Where workflows the cache lacks are reconstructed from."""
        self.workflows.events = events

    def process_event(self, domain_event: Event, tracking: Tracking) -> None:
        """The library's entry point (live): a batch of one."""
        self.process_batch([(domain_event, tracking)])

    def process_batch(self, batch: Sequence[Item], generation: int | None = None) -> int:
        """Applies the events the target generation does not have yet; returns how many."""
        if not batch:
            return 0
        application_name = batch[0][1].application_name
        try:
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
        except BaseException:
            # Aggregates folded in a batch that did not commit are ahead of the read model.
            self.workflows.clear()
            raise

    @abstractmethod
    def load(self, tx: BatchTransaction[Any], events: Sequence[Event]) -> Any:
        """Reads the rows these events touch."""

    @abstractmethod
    def fold(self, state: Any, event: Event, position: int) -> None:
        """Applies one event to the rows in memory; must not do I/O."""

    @abstractmethod
    def save(self, tx: BatchTransaction[Any], state: Any) -> None:
        """Writes the changed rows."""


def build_indexes_now(view: GenerationalView[Any], generation: int,
                      wanted: Sequence[tuple[str, str]]) -> None:
    """Builds some of a fresh generation's secondary indexes at once, not after its bulk
    load: those a projection's own writes read through ((table suffix, index suffix) as in
    its TableSpecs). Without them each batch of a rebuild scans the whole growing table."""
    schema = Identifier(view.schema)
    specs = {spec.suffix: spec for spec in view.table_specs}
    with view.datastore.transaction(commit=True) as curs:
        for suffix, index_suffix in wanted:
            table = view._table_name(generation, suffix)
            columns = dict(specs[suffix].indexes)[index_suffix]
            curs.execute(SQL("CREATE INDEX IF NOT EXISTS {} ON {}.{} ({})").format(
                Identifier(f"{table}_{index_suffix}_idx"), schema, Identifier(table), columns))


def to_events(app: Application[Any], projection: str,
              notifications: Sequence[Notification]) -> tuple[list[Item], UnhandledEvent | None]:
    """Maps stored events to domain events, up to the first one this version cannot read."""
    decode = _decoder(app.mapper)
    items: list[Item] = []
    for notification in notifications:
        try:
            event = decode(notification)
        except Exception as e:
            return items, UnhandledEvent(projection, notification.id, notification.topic,
                                         repr(e))
        items.append((event, Tracking(app.name, notification.id)))
    return items, None


@functools.lru_cache(maxsize=8)  # one per application in use: its per-topic memo survives
def _decoder(mapper: Mapper[Any]) -> Callable[[StoredEvent], Event]:
    """`mapper.to_domain_event`, or the same mapping done faster when the stored state is
    plain JSON from the library's own transcoder (no cipher, no compressor)."""
    if (type(mapper) is not Mapper or type(mapper.transcoder) is not JSONTranscoder
            or mapper.cipher is not None or mapper.compressor is not None):
        return mapper.to_domain_event
    return _FastDecoder(mapper).decode


_WRAPPER = b'"_type_"'
# A translation of every digit to "0" and every other byte to " ": a run of 19 zeros in
# the translated state is a run of 19 digits (a C scan, ten times quicker than a regex).
_DIGITS = bytes(ord("0") if chr(byte).isdigit() and byte < 128 else ord(" ")
                for byte in range(256))
_LONG_NUMBER = b"0" * 19


class _FastDecoder:
    """Decodes stored events as `Mapper.to_domain_event` does, twice as fast.

    The library's JSON decoder calls a Python hook for every JSON object to turn
    `{"_type_": name, "_data_": data}` back into a value (a datetime, a UUID). Here orjson
    parses the state and only the wrappers are turned back: those at the top level (every
    event's timestamp) directly, any others by a walk that applies the hook's rule bottom
    up, as the hook does. Whatever this does not parse exactly as the library would (the
    NaN and Infinity literals, integers beyond 64 bits, an unknown transcoding...) is left
    to the mapper itself, which then decodes it or raises its own error.
    """

    def __init__(self, mapper: Mapper[Any]) -> None:
        self.mapper = mapper
        self.transcodings = cast(JSONTranscoder, mapper.transcoder).names
        # (topic, originator id type) -> (class, id convertor, class version)
        self.classes: dict[tuple[str, type], tuple[type[Any], Callable[[Any], Any], int]] = {}

    def decode(self, stored: StoredEvent) -> Event:
        try:
            state = self._state(stored.state)
        except Exception:
            return self.mapper.to_domain_event(stored)
        id_type = type(stored.originator_id)
        found = self.classes.get((stored.topic, id_type))
        if found is None:
            cls = resolve_topic(stored.topic)
            found = self.classes[(stored.topic, id_type)] = (
                cls, find_id_convertor(cls, cast(Hashable, id_type)),
                getattr(cls, "class_version", 1))
        cls, id_convertor, class_version = found
        # What Mapper.to_domain_event does with the decoded state, step by step.
        state["originator_id"] = id_convertor(stored.originator_id)
        state["originator_version"] = stored.originator_version
        from_version = state.pop("class_version", 1)
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(state)
            from_version += 1
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", state)
        return cast(Event, event)

    def _state(self, data: bytes) -> dict[str, Any]:
        if _LONG_NUMBER in data.translate(_DIGITS):
            # orjson turns integers beyond 64 bits into floats; json keeps them exact.
            raise ValueError("a number too long to parse here")
        state = orjson.loads(data)
        if type(state) is not dict or _is_wrapper(state):
            raise ValueError("not an event's state")
        # Every wrapper has the key "_type_" written literally; inside a JSON string a
        # quote is escaped, so a count of 0 proves there is none (more only costs a walk).
        wrappers = data.count(_WRAPPER)
        if not wrappers:
            return state
        if wrappers == 1:  # most events: only the timestamp
            value = state.get("timestamp")
            if type(value) is dict and _is_wrapper(value) and type(value["_data_"]) is str:
                state["timestamp"] = self.transcodings[value["_type_"]].decode(value["_data_"])
                return state
        simple = [key for key, value in state.items()
                  if type(value) is dict and _is_wrapper(value)
                  and type(value["_data_"]) not in (dict, list)]
        if len(simple) < wrappers:
            return {key: self._unwrap(value) for key, value in state.items()}
        for key in simple:
            state[key] = self.transcodings[state[key]["_type_"]].decode(state[key]["_data_"])
        return state

    def _unwrap(self, value: Any) -> Any:
        if type(value) is dict:
            value = {key: self._unwrap(item) for key, item in value.items()}
            if _is_wrapper(value):
                return self.transcodings[value["_type_"]].decode(value["_data_"])
            return value
        if type(value) is list:
            return [self._unwrap(item) for item in value]
        return value


def _is_wrapper(value: dict[str, Any]) -> bool:
    return len(value) == 2 and "_type_" in value and "_data_" in value
