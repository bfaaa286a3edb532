"""Blue/green rebuild: fresh tables from the whole history, then an atomic switch.

1. Under the projection's rebuild lock, a new generation of tables is created (or the one a
   crashed rebuild left is resumed) and recorded as `building` in the pointer table. The
   live generation keeps serving queries and keeps being fed by the live projector.
2. The history is read in large batches (`select_notifications`) and decoded once; each
   projection folds a batch in memory and writes it in one transaction with its
   generation's tracking position (executemany / COPY), the projections side by side in
   threads of their own. Memory stays flat however long the history is, and an
   interrupted rebuild resumes where each projection's last batch committed.
3. Secondary indexes are built once the bulk is loaded (but those a projection's own writes
   read through, built with the tables), then the generation catches up.
4. The switch (`GenerationalView.switch`) holds the pointer row, catches the generation up
   past the live projector's position, and moves the pointer and the SQL views in one
   commit. The live projector continues on the new generation, skipping what it has.
5. The old generation is dropped.

Nothing touches the live generation before the switch, so a rebuild that fails or is
killed leaves the live read model as it was.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import OperationalError

from application.locks import LockRole, LockSession
from projections.base import BatchProjection, to_events
from projections.read_models import PROJECTION_NAMES, ProjectionViews

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 5000
GC_THRESHOLD = 50_000  # allocations between two collections of the youngest generation
SWITCH_ATTEMPTS = 3
Progress = Callable[[int, int, int], None]  # (events read, position, head)


class RebuildInProgress(RuntimeError):
    """Another process is rebuilding this projection."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"projection {name} is already being rebuilt by another process")


@dataclass(frozen=True, slots=True)
class RebuildReport:
    """What a rebuild did."""

    name: str
    generation: int
    previous_generation: int
    resumed_from: int | None
    position: int
    events: int
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


@dataclass(slots=True)
class _Target:
    projection: BatchProjection[Any]
    generation: int
    previous: int
    resumed_from: int | None
    position: int


def rebuild(read_models: ProjectionViews, names: Sequence[str] = PROJECTION_NAMES, *,
            batch_size: int = DEFAULT_BATCH_SIZE, restart: bool = False,
            on_progress: Progress | None = None) -> list[RebuildReport]:
    """Rebuilds the named projections in one pass over the history and switches each.

    `restart` discards what an interrupted rebuild left instead of resuming it.
    Raises RebuildInProgress if another process is rebuilding one of them, and
    UnhandledEvent (with its position) if the history holds an event one cannot handle.
    """
    app = read_models.app
    started = time.monotonic()
    with LockSession(read_models.progress.datastore) as session, _rare_collections():
        for name in names:
            if not session.try_lock(read_models.view(name).lock_key(LockRole.REBUILD)):
                raise RebuildInProgress(name)
        targets = [_prepare(read_models.projection(name), app.name, restart) for name in names]
        events = _replay(read_models, targets, batch_size, on_progress, 0)
        # Each projection's indexes on a connection of its own: the server builds them side by side.
        with ThreadPoolExecutor(max_workers=len(targets)) as pool:
            for done in [pool.submit(t.projection.view.create_indexes, t.generation)
                         for t in targets]:
                done.result()
        events = _replay(read_models, targets, batch_size, on_progress, events)
        reports = []
        for target in targets:
            position = _switch(read_models, target, batch_size)
            reports.append(RebuildReport(
                target.projection.name, target.generation, target.previous,
                target.resumed_from, position, events, time.monotonic() - started))
            log.info("rebuilt %s: generation %d is live at position %d",
                     target.projection.name, target.generation, position)
            _drop_quietly(target, target.previous)
    return reports


@contextmanager
def _rare_collections() -> Iterator[None]:
    """Runs the cyclic garbage collector every 50,000 allocations instead of every 700.

    A rebuild allocates millions of short-lived objects (events, rows, parameters) that
    plain reference counting frees; at the default threshold the collector still ran
    through them over and over: a sixth of the rebuild's CPU. It stays on, just rarer,
    and the process's own setting comes back afterwards.
    """
    threshold = gc.get_threshold()
    gc.set_threshold(max(threshold[0], GC_THRESHOLD), *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)


def _prepare(projection: BatchProjection[Any], application_name: str,
             restart: bool) -> _Target:
    """The generation to build: the one an interrupted rebuild left, or a fresh one."""
    view = projection.view
    pointer = view.pointer()
    on_disk = view.generations_on_disk()
    if pointer.building is not None and pointer.building in on_disk and not restart:
        position = view.generation_position(pointer.building, application_name) or 0
        log.info("resuming the rebuild of %s (generation %d) from position %d",
                 projection.name, pointer.building, position)
        return _Target(projection, pointer.building, pointer.generation, position, position)
    for leftover in on_disk:
        if leftover != pointer.generation:
            view.drop_generation(leftover)
    generation = max([pointer.generation, *on_disk]) + 1
    view.create_generation(generation)
    view.set_building(generation)
    return _Target(projection, generation, pointer.generation, None, 0)


def _replay(read_models: ProjectionViews, targets: Sequence[_Target], batch_size: int,
            on_progress: Progress | None, events: int) -> int:
    """Feeds the history after the targets' positions to them, batch by batch, until a
    short batch shows the head is near; returns the events read so far.

    The targets take each batch at the same time, each in a thread and a transaction of its
    own: while one waits on PostgreSQL (a COPY, a commit), the others fold. Each still
    takes its batches in order, one transaction each, so what it writes is unchanged.
    """
    app = read_models.app
    label = ",".join(t.projection.name for t in targets)
    position = min(t.position for t in targets)
    head = app.recorder.max_notification_id() or 0
    with ThreadPoolExecutor(max_workers=len(targets), thread_name_prefix="rebuild") as pool:
        while True:
            notifications = app.recorder.select_notifications(
                start=position, limit=batch_size, inclusive_of_start=False)
            if not notifications:
                break
            items, unreadable = to_events(app, label, notifications)
            writes = [pool.submit(t.projection.process_batch, items, generation=t.generation)
                      for t in targets]
            failures = [e for e in (w.exception() for w in writes) if e is not None]
            if failures:
                raise failures[0]
            if items:
                for target in targets:
                    target.position = max(target.position, items[-1][1].notification_id)
            if unreadable is not None:
                raise unreadable
            position = notifications[-1].id
            events += len(notifications)
            head = max(head, position)
            if on_progress is not None:
                on_progress(events, position, head)
            if len(notifications) < batch_size:
                break
    return events


def _switch(read_models: ProjectionViews, target: _Target, batch_size: int) -> int:
    app = read_models.app

    def catch_up(live_position: int) -> int:
        # Only as far as the live generation, which the pointer lock holds still: the live
        # projector goes on from there. Chasing the head instead kept the switch's
        # transaction open, idle, for as long as writers outpaced it, until PostgreSQL's
        # idle-in-transaction timeout killed it.
        while target.position < live_position:
            notifications = app.recorder.select_notifications(
                start=target.position, limit=batch_size, stop=live_position,
                inclusive_of_start=False)
            if not notifications:
                break
            items, unreadable = to_events(app, target.projection.name, notifications)
            target.projection.process_batch(items, generation=target.generation)
            if unreadable is not None:
                raise unreadable
            target.position = notifications[-1].id
        if target.position < live_position:  # pragma: no cover - the head bounds the live
            raise RuntimeError(f"{target.projection.name}: generation {target.generation} "
                               f"is at {target.position}, behind the live {live_position}")
        return target.position

    for attempt in range(1, SWITCH_ATTEMPTS + 1):
        try:
            return target.projection.view.switch(target.generation, app.name, catch_up)
        except OperationalError as e:  # a lock timeout: readers or the projector were busy
            if attempt == SWITCH_ATTEMPTS:
                raise
            log.warning("switching %s failed (%s), trying again", target.projection.name, e)
    raise AssertionError("unreachable")  # pragma: no cover


def _drop_quietly(target: _Target, generation: int) -> None:
    """Drops the old generation; if readers hold it too long, the next rebuild does."""
    try:
        target.projection.view.drop_generation(generation)
    except OperationalError as e:
        log.warning("could not drop generation %d of %s yet: %s", generation,
                    target.projection.name, e)
