"""Read-your-writes: `?min_position=N` waits (bounded) until the read models applied N.

Every dependency is `async`: none does I/O except the wait itself, which runs in a worker
thread.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from api.components import Components, components_of
from api.errors import PositionNotWritten, WaitTimeout
from api.schemas.common import INT64

MIN_POSITION = Query(
    ge=0, le=INT64,
    description="Wait (bounded) until the read model has applied this global position, "
                "e.g. the `position` a command answered; 504 if it does not in time, 422 at "
                "once if the event store has no such position yet.",
)


def _written(c: Components, position: int) -> None:
    """A position above the latest committed one is a 422 at once: a command answers only
    after its events committed, so such a position was never handed out."""
    latest = c.reader.latest()
    if position > latest:
        raise PositionNotWritten(position, latest)


def _fresh(*names: str) -> Callable[..., Coroutine[None, None, None]]:
    def wait_for(c: Components, position: int) -> tuple[int | None, Any]:
        _written(c, position)
        timeout = c.config.min_position_timeout
        routing = c.queries.routing
        if routing is not None:
            # The queries must go where the position was seen applied (a replica's own).
            return routing.wait(names, position, timeout)  # type: ignore[no-any-return]
        return c.queries.projections.wait(names, position, timeout), None

    async def wait(request: Request,
                   min_position: Annotated[int | None, MIN_POSITION] = None) -> None:
        c = components_of(request)
        routing = c.queries.routing
        if min_position is None:
            if routing is not None:
                routing.pin(None)
            return
        # The wait polls the database and sleeps: a worker thread, not the event loop.
        reached, target = await run_in_threadpool(wait_for, c, min_position)
        if routing is not None:
            routing.pin(target)
        if reached is None or reached < min_position:
            raise WaitTimeout(min_position, reached, c.config.min_position_timeout)

    return wait


async def _current(request: Request,
                   min_position: Annotated[int | None, MIN_POSITION] = None) -> None:
    """Reads from the event store are always current: nothing to wait for, but a position
    the store does not have is refused as everywhere."""
    if min_position is not None:
        await run_in_threadpool(_written, components_of(request), min_position)


ProgressFresh = Annotated[None, Depends(_fresh("progress"))]
AuditFresh = Annotated[None, Depends(_fresh("audit"))]
LoadFresh = Annotated[None, Depends(_fresh("load"))]
StoreFresh = Annotated[None, Depends(_current)]
