"""Projection status and rebuilds."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ProjectionStatus(BaseModel):
    """Where a projection is, and how far behind the event store."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{
        "name": "progress", "position": 1040, "head": 1042, "lag_events": 2,
        "lag_seconds": 0.12, "state": "running", "generation": 1,
        "rebuilding_generation": None, "rebuilding_position": None, "error_position": None}]})

    name: str
    position: int | None = Field(description="The last global position applied.")
    head: int | None = Field(description="The event store's latest position.")
    lag_events: int
    lag_seconds: float | None
    state: str = Field(description="running, standby, stopped, rebuilding or error: ...")
    generation: int | None = Field(None, description="The live generation of its tables.")
    rebuilding_generation: int | None = None
    rebuilding_position: int | None = Field(None, description="How far a rebuild has got.")
    error_position: int | None = Field(None, description="The event it stopped at.")
    rebuild_needed: str | None = Field(
        None, description="Set when the live rows are incomplete (columns an upgrade added"
        " empty): why, and the rebuild that fills them. Cleared by that rebuild.")


class RebuildStarted(BaseModel):
    name: str
    state: str
