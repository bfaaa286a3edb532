"""`/v1/events`: every event in global order, paged or as a live Server-Sent Events stream."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from api.access import Reader
from api.components import Components, ComponentsDep
from api.errors import ApiProblem, responses
from api.feed import SCAN_BATCH, EventFilter
from api.freshness import StoreFresh
from api.pagination import decimal_of
from api.schemas.common import INT64, EventTypeName, ShortText
from api.schemas.events import EventPage, FeedEvent

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/events", tags=["events"])

IN_FLIGHT_RETRY_SECONDS = 0.02

After = Annotated[int | None, Query(ge=0, le=INT64,
                                    description="Only events after this global position.")]
WorkflowFilter = Annotated[UUID | None, Query(description="Only this workflow's events.")]
CorrelationFilter = Annotated[ShortText | None, Query(description="Only events carrying "
                                                                  "this correlation id.")]
TypeFilter = Annotated[list[EventTypeName] | None, Query(
    description="Only these event types, e.g. `StepFailed` or `Workflow.StepFailed` "
                "(repeat the parameter).")]

STREAM_DOC = """Server-Sent Events, one per stored event in global order:

```
id: 58
data: {"position": 58, "workflow_id": "...", "event_type": "Started", ...}
```

`data` is a `FeedEvent`. On reconnecting, an `EventSource` sends `Last-Event-ID` and the
stream resumes right after that position, with no gap and no repeat. Without it the stream
starts after `?after=` or, when absent, "from now": after the settled head (below every
append still in flight), so it may begin with events that committed just before, and never
misses one that commits later. Any start position is safe: the stream never passes over an
append in flight. Comment lines (`: ping`) keep idle connections open."""


def _filter(workflow_id: UUID | None, correlation_id: str | None,
            event_type: list[str] | None) -> EventFilter:
    return EventFilter(workflow_id, correlation_id, frozenset(event_type or ()))


@router.get("", response_model=EventPage, responses=responses(403),
            summary="Events after a position")
def list_events(
    c: ComponentsDep, _: Reader, __: StoreFresh,
    after: After = None,
    limit: Annotated[int, Query(ge=1, le=500, description="At most this many events.")] = 50,
    workflow_id: WorkflowFilter = None,
    correlation_id: CorrelationFilter = None,
    event_type: TypeFilter = None,
) -> EventPage:
    """Events in global order after `after` (from the start when absent), read from the
    event store. With filters, a page may hold fewer than `limit` events while more
    follow: continue from `next_after` until `next_cursor` is null."""
    start = after or 0
    events, last = c.reader.scan(start, limit, _filter(workflow_id, correlation_id,
                                                       event_type))
    # Read after the page, so that the latest position is at least the last one read.
    heads = c.reader.heads()
    return EventPage(items=[FeedEvent.model_validate(e) for e in events], next_after=last,
                     next_cursor=str(last) if last < heads.latest else None,
                     head=heads.settled)


@router.get(
    "/stream", summary="Live event stream (SSE)", description=STREAM_DOC,
    response_class=EventSourceResponse,
    responses={200: {"description": "An endless `text/event-stream`.",
                     "content": {"text/event-stream": {"schema": {"type": "string"}}}},
               **responses(403)},
)
async def stream_events(
    request: Request, c: ComponentsDep, _: Reader,
    after: After = None,
    workflow_id: WorkflowFilter = None,
    correlation_id: CorrelationFilter = None,
    event_type: TypeFilter = None,
    last_event_id: Annotated[str | None, Header(
        alias="Last-Event-ID", max_length=20,
        description="Resume after this position (sent by EventSource on reconnect): up to "
                    "18 ASCII digits, else 422.")] = None,
) -> EventSourceResponse:
    # Only spaces and tabs are whitespace around a header value (RFC 9110).
    resume = last_event_id.strip(" \t") if last_event_id is not None else ""
    if resume:
        position = decimal_of(resume)
        if position is None:
            raise ApiProblem(422, "validation", "Invalid request",
                             "Last-Event-ID must be a global position (an integer)",
                             field="Last-Event-ID")
        start = position
    elif after is not None:
        start = after
    else:
        start = c.hub.head if c.hub.live else await run_in_threadpool(c.reader.head)
    wanted = _filter(workflow_id, correlation_id, event_type)
    return EventSourceResponse(_follow(c, wanted, start), ping=c.config.sse_ping_seconds)


async def _follow(c: Components, wanted: EventFilter, after: int) -> AsyncIterator[ServerSentEvent]:
    """Every matching event after `after`: from the hub's buffer when it reaches back that
    far, otherwise from the store; then waits for the next ones."""
    last = after
    while True:
        batch = c.hub.since(last)
        from_store = batch is None
        if batch is None:
            try:
                batch = await run_in_threadpool(c.reader.read, last, SCAN_BATCH)
            except Exception as e:  # database down: keep the client, try again shortly
                log.warning("event stream cannot read the store: %s", e)
                await asyncio.sleep(c.config.sse_idle_check_seconds)
                continue
        for event in batch:
            last = event.position
            if wanted.matches(event):
                yield ServerSentEvent(FeedEvent.model_validate(event).model_dump_json(),
                                      id=str(event.position))
        if batch:
            continue
        if from_store and c.hub.head > last:
            # The store holds back an append still in flight below the hub's head.
            await asyncio.sleep(IN_FLIGHT_RETRY_SECONDS)
        else:
            idle = c.config.sse_ping_seconds if c.hub.live else c.config.sse_idle_check_seconds
            await c.hub.wait_after(last, idle)
