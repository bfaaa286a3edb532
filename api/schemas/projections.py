"""Projection status and rebuilds."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ProjectionStatus(BaseModel):
    """Where a projection is, and how far behind the event store."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{
        "name": "progress", "position": 1040, "head": 1042, "lag_events": 2,
        "lag_seconds": 0.12, "state": "running"}]})

    name: str
    position: int | None = Field(description="The last global position applied.")
    head: int | None = Field(description="The event store's latest position.")
    lag_events: int
    lag_seconds: float | None
    state: str


class RebuildStarted(BaseModel):
    name: str
    state: str
