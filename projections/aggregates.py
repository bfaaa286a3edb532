"""The Workflow aggregates a projection folds its events into.

The read models show what the `Workflow` aggregate knows, computed from the aggregate
itself (domain.progress, domain.load_view), so the state machine lives in one place. A
projection keeps each workflow's aggregate at the version it last folded, in a bounded
cache; each event is applied with the library's own `event.mutate`. A workflow the cache
lacks (after a restart or an eviction), or holds at another version (a batch whose
transaction failed after folding), is reconstructed from the event store's events up to the
version before the batch's first: from events only, never a snapshot, so that a snapshot
written by an older release (without a fact added since) cannot change a row.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any, cast
from uuid import UUID

from eventsourcing.persistence import EventStore

from domain.workflow import Workflow

DEFAULT_CACHE_SIZE = 4096


class MissingEventStore(RuntimeError):
    """A projection must reconstruct a workflow but was given no event store to read."""


class WorkflowCache:
    """Workflow aggregates by id, least recently used evicted once a batch is done."""

    def __init__(self, events: EventStore[Any] | None = None,
                 maxsize: int = DEFAULT_CACHE_SIZE) -> None:
        self.events = events
        self.maxsize = maxsize
        self._aggregates: OrderedDict[UUID, Workflow] = OrderedDict()

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
            wf = self._aggregates.get(workflow_id)
            if wf is None or wf.version != version - 1:
                found = self._reconstruct(workflow_id, version - 1)
                if found is None:
                    # The event store does not have it (an event without its Created): the
                    # fold of that event fails, so the projection stops before it.
                    self._aggregates.pop(workflow_id, None)
                else:
                    self._aggregates[workflow_id] = found

    def fold(self, event: Workflow.Event) -> Workflow:
        """Applies `event` to its workflow's aggregate (made by a Created); returns it."""
        workflow_id = cast(UUID, event.originator_id)
        aggregates = self._aggregates
        if isinstance(event, Workflow.Created):
            wf = cast(Workflow, event.mutate(None))
            aggregates[workflow_id] = wf
            return wf
        wf = self.get(workflow_id)
        aggregates.move_to_end(workflow_id)
        event.mutate(wf)
        return wf

    def get(self, workflow_id: UUID) -> Workflow:
        try:
            return self._aggregates[workflow_id]
        except KeyError:
            raise KeyError(f"workflow {workflow_id} has no earlier events") from None

    def trim(self) -> None:
        """Evicts the least recently used beyond `maxsize` (between batches only: a
        batch's workflows stay until its rows are written)."""
        aggregates = self._aggregates
        while len(aggregates) > self.maxsize:
            aggregates.popitem(last=False)

    def clear(self) -> None:
        """Forgets every aggregate (a batch failed: some may be ahead of the read model)."""
        self._aggregates.clear()

    def __len__(self) -> int:
        return len(self._aggregates)

    def _reconstruct(self, workflow_id: UUID, version: int) -> Workflow | None:
        if self.events is None:
            raise MissingEventStore(f"workflow {workflow_id} is not cached at version "
                                    f"{version} and there is no event store to read it from")
        wf: Workflow | None = None
        for event in cast(Sequence[Any], self.events.get(workflow_id, lte=version)):
            wf = event.mutate(wf)
        return wf if wf is not None and wf.version == version else None
