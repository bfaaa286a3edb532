"""The event feed: every stored event in global order."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class FeedEvent(BaseModel):
    """One event of the store, as published on the feed and the SSE stream."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{
        "position": 58, "workflow_id": "2b1f6c1e-8f1a-4c55-9a51-7b0c3e1f9a10",
        "aggregate_id": "2b1f6c1e-8f1a-4c55-9a51-7b0c3e1f9a10", "aggregate_type": "Workflow",
        "version": 2, "event_type": "Started", "timestamp": "2026-11-25T20:40:00.123456Z",
        "correlation_id": "ord-ORD-12345", "data": {"actor": "oms",
                                                     "correlation_id": "ord-ORD-12345"}}]})

    position: int = Field(description="Global position (the SSE `id:`).")
    workflow_id: UUID | None = Field(description="The workflow; null for events of other "
                                                 "aggregates (e.g. the definition catalog).")
    aggregate_id: UUID
    aggregate_type: str = Field(description="`Workflow`, `DefinitionCatalog`, ...")
    version: int
    event_type: str = Field(description="The event's name, e.g. `StepExecuted`.")
    timestamp: datetime
    correlation_id: str | None
    data: dict[str, Any]


class EventPage(BaseModel):
    """Events after a position; continue with `?after=<next_after>`."""

    items: list[FeedEvent]
    next_after: int = Field(description="The last position read (pass as `after`).")
    next_cursor: str | None = Field(description="Same as `next_after` while committed "
                                                "events exist after it; null once caught up.")
    head: int = Field(description="The store's settled head when this page was read: every "
                                  "append at or below it has ended, so a reader that starts "
                                  "after it (\"from now\") misses nothing that commits later. "
                                  "It stays below an append still in flight.")
