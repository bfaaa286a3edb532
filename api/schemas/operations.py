"""Liveness and readiness."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class ProjectionReadiness(BaseModel):
    name: str
    lag_events: int
    lag_seconds: float | None
    ready: bool


class Readiness(BaseModel):
    """Ready when the database answers and every projection is within its lag limits."""

    status: Literal["ready", "not ready"]
    database: Literal["ok", "unavailable"]
    projections: list[ProjectionReadiness]
