"""The Workflow aggregates a projection folds its events into.

The read models show what the `Workflow` aggregate knows, computed from the aggregate
itself (domain.progress, domain.load_view), so the state machine lives in one place. A
projection keeps each workflow's aggregate at the version it last folded, in a bounded
cache; each event is applied as the library's own `event.mutate` applies it (`created`
and `mutate` below: its steps without the generic ones that do nothing here). A workflow
the cache lacks (after a restart or an eviction), or holds at another version (a batch whose
transaction failed after folding), is reconstructed from the event store's events up to the
version before the batch's first: from events only, never a snapshot, so that a snapshot
written by an older release (without a fact added since) cannot change a row.

The cache is keyed by the id's 128-bit integer, not the UUID: a UUID's `__hash__` and
`__eq__` are Python functions, and a projection looks a workflow up several times per
event (cProfile: 7 % of the load projection's fold went to UUID hashing and comparing).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar, cast
from uuid import UUID

from eventsourcing.domain import OriginatorVersionError
from eventsourcing.persistence import EventStore
from eventsourcing.utils import get_topic

from domain.workflow import Workflow
from domain.workflow.transitions import FINAL_STATUSES

DEFAULT_CACHE_SIZE = 4096
T = TypeVar("T")
_WORKFLOW_TOPIC = get_topic(Workflow)


def created(event: Workflow.Created) -> Workflow:
    """`event.mutate(None)`: the library's `CanInitAggregate.mutate` resolves the aggregate
    class from the event's topic and picks the arguments of `__base_init__` and `__init__`
    out of the event's fields by their signatures, for every workflow; a `Workflow` takes
    the same three every time and its `__init__` none (tests/unit/test_library_pins.py
    compares the two on every event type). A Created of another class goes the library's way."""
    if event.originator_topic != _WORKFLOW_TOPIC:
        return cast(Workflow, event.mutate(None))
    wf = object.__new__(Workflow)
    wf.__base_init__(event.originator_id, event.originator_version, event.timestamp)
    event.apply(wf)
    return wf


def mutate(event: Workflow.Event, wf: Workflow) -> None:
    """`event.mutate(wf)` (the library's `CanMutateAggregate.mutate`) for an aggregate the
    cache found by the event's own id, so without comparing the ids again (a UUID's
    `__eq__` is a Python call): the version check, `apply`, then version and time."""
    next_version = wf.version + 1
    if event.originator_version != next_version:
        raise OriginatorVersionError(event.originator_version, next_version)
    event.apply(wf)
    wf.version = event.originator_version
    wf.modified_on = event.timestamp


class MissingEventStore(RuntimeError):
    """A projection must reconstruct a workflow but was given no event store to read."""


class WorkflowCache:
    """Workflow aggregates by id, evicted once a batch is done: those in a final status
    (no transition leaves it, so no event follows), then the least recently used.

    Most workflows complete, and holding the completed ones until the LRU let them go kept
    4,096 aggregates alive (some forty objects each) that the cyclic garbage collector
    walked again and again: a tenth of a rebuild's CPU. An event after all (there is none
    in the domain today) finds its workflow reconstructed from the event store.

    Beside each aggregate the cache can keep one value derived from it (`fold_derived`), valid
    for the version it was computed at: a projection that needs a function of the state
    before each event (the load model's contribution) computes it once per event, not twice.
    """

    def __init__(self, events: EventStore[Any] | None = None,
                 maxsize: int = DEFAULT_CACHE_SIZE) -> None:
        self.events = events
        self.maxsize = maxsize
        self._aggregates: OrderedDict[int, Workflow] = OrderedDict()
        self._derived: dict[int, tuple[int, Any]] = {}
        self._finished: list[int] = []

    def prepare(self, events: Iterable[Any]) -> None:
        """Makes sure every workflow these events continue is here at the version before
        its first one (reconstructing it from the event store when not)."""
        first: dict[UUID, int] = {}
        for event in events:
            if isinstance(event, Workflow.Event):
                first.setdefault(cast(UUID, event.originator_id), event.originator_version)
        for workflow_id, version in first.items():
            if version == 1:
                continue  # the Created event makes it
            wf = self._aggregates.get(workflow_id.int)
            if wf is None or wf.version != version - 1:
                found = self._reconstruct(workflow_id, version - 1)
                if found is None:
                    # The event store does not have it (an event without its Created): the
                    # fold of that event fails, so the projection stops before it.
                    self._aggregates.pop(workflow_id.int, None)
                    self._derived.pop(workflow_id.int, None)
                else:
                    self._aggregates[workflow_id.int] = found

    def fold(self, event: Workflow.Event) -> Workflow:
        """Applies `event` to its workflow's aggregate (made by a Created); returns it."""
        key = cast(UUID, event.originator_id).int
        aggregates = self._aggregates
        if isinstance(event, Workflow.Created):
            wf = created(event)
            aggregates[key] = wf
            return wf
        wf = aggregates.get(key)
        if wf is None:
            raise self._missing(event.originator_id)
        aggregates.move_to_end(key)
        mutate(event, wf)
        if wf.status in FINAL_STATUSES:
            self._finished.append(key)
        return wf

    def get(self, workflow_id: UUID) -> Workflow:
        wf = self._aggregates.get(workflow_id.int)
        if wf is None:
            raise self._missing(workflow_id)
        return wf

    def fold_derived(self, event: Workflow.Event, compute: Callable[[Workflow], T]
                     ) -> tuple[T | None, T]:
        """Folds `event` as `fold` does; returns `compute` of the workflow before it (None
        for a Created) and after it. The value after is remembered with its version, so
        the next event's value before is not computed again (one function per cache: the
        value of another function would be handed out for it)."""
        key = cast(UUID, event.originator_id).int
        before: T | None = None
        if not isinstance(event, Workflow.Created):
            found = self._derived.get(key)
            wf = self._aggregates.get(key)
            if found is not None and wf is not None and found[0] == wf.version:
                before = cast(T, found[1])
            elif wf is not None:
                before = compute(wf)
        wf = self.fold(event)
        after = compute(wf)
        self._derived[key] = (wf.version, after)
        return before, after

    def trim(self) -> None:
        """Evicts the workflows that reached a final status, then the least recently used
        beyond `maxsize` (between batches only: a batch's workflows stay until its rows
        are written)."""
        aggregates, derived = self._aggregates, self._derived
        for key in self._finished:
            aggregates.pop(key, None)
            derived.pop(key, None)
        self._finished.clear()
        while len(aggregates) > self.maxsize:
            key, _ = aggregates.popitem(last=False)
            derived.pop(key, None)

    def clear(self) -> None:
        """Forgets every aggregate (a batch failed: some may be ahead of the read model)."""
        self._aggregates.clear()
        self._derived.clear()
        self._finished.clear()

    def __len__(self) -> int:
        return len(self._aggregates)

    @staticmethod
    def _missing(workflow_id: Any) -> KeyError:
        return KeyError(f"workflow {workflow_id} has no earlier events")

    def _reconstruct(self, workflow_id: UUID, version: int) -> Workflow | None:
        if self.events is None:
            raise MissingEventStore(f"workflow {workflow_id} is not cached at version "
                                    f"{version} and there is no event store to read it from")
        wf: Workflow | None = None
        for event in cast(Sequence[Any], self.events.get(workflow_id, lte=version)):
            wf = event.mutate(wf)
        return wf if wf is not None and wf.version == version else None
