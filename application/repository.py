"""The aggregate repository: the library's, loading the current state with one statement.

The library's `Repository` reads the latest snapshot, then the events after it: two round
trips on every load that misses its aggregate cache. Current state (no `version`) is read
here with one statement instead (`WesApplicationRecorder.select_latest`); loading as of a
version (audit replay) and the cache with its fast-forward are the library's, unchanged.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Repository
from eventsourcing.persistence import EventStore

from application.event_log import WesApplicationRecorder


class LatestInOneReadRepository(Repository[UUID]):
    """A `Repository` whose cache misses read the snapshot and later events together."""

    def __init__(self, *, event_store: EventStore[UUID], snapshot_store: EventStore[UUID] | None,
                 **kwargs: Any) -> None:
        super().__init__(event_store=event_store, snapshot_store=snapshot_store, **kwargs)
        recorder = event_store.recorder
        self._store = recorder if isinstance(recorder, WesApplicationRecorder) else None
        self._snapshots_table = (getattr(snapshot_store.recorder, "events_table_name", None)
                                 if snapshot_store is not None else None)

    def _reconstruct_aggregate(self, aggregate_id: UUID, version: int | None,
                               projector_func: Any) -> Any:
        if version is not None or self._store is None or self._snapshots_table is None:
            return super()._reconstruct_aggregate(aggregate_id, version, projector_func)
        snapshot, stored = self._store.select_latest(aggregate_id, self._snapshots_table)
        to_event = self.event_store.mapper.to_domain_event
        aggregate = projector_func(
            None, [to_event(e) for e in ([snapshot] if snapshot is not None else []) + stored])
        if aggregate is None:
            raise AggregateNotFoundError(f"Aggregate {aggregate_id!r} not found.")
        return aggregate
