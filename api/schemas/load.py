"""Load per service instance (read model) and load metrics reported by services."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import INT32, Identifier


class LoadRow(BaseModel):
    """Load of one service instance."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{
        "service": "inventory-service", "instance": "http://127.0.0.1:8000/sim/inventory-service",
        "in_flight": 1, "queued": 0, "completed": 120, "failed": 3, "avg_duration_ms": 12.5,
        "p95_duration_ms": 40.0, "error_rate": 0.024, "window_seconds": 300.0,
        "load_score": 41.2, "circuit_state": "CLOSED", "target_share": 0.5,
        "metrics": None, "metrics_at": None, "rebalanced_at": None,
        "updated_at": "2026-11-25T20:40:00Z"}]})

    service: str
    instance: str
    in_flight: int
    queued: int
    completed: int
    failed: int
    avg_duration_ms: float | None
    p95_duration_ms: float | None
    error_rate: float | None
    window_seconds: float = Field(description="Durations and error rate cover this window.")
    load_score: float | None
    circuit_state: str | None
    target_share: float | None
    metrics: dict[str, Any] | None = Field(description="The last reported LoadMetrics.")
    health: str | None = Field(None, description=(
        "HEALTHY, DEGRADED, WARNING or CRITICAL from the last reported LoadMetrics; null "
        "while none was reported."))
    metrics_at: datetime | None
    rebalanced_at: datetime | None
    updated_at: datetime


class LoadMetricsIn(BaseModel):
    """A LoadMetrics snapshot (seed section 7)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "instance_id": "inv-01", "service_name": "inventory-service", "cpu_percent": 75.0,
        "memory_percent": 60.0, "active_requests": 50, "queue_depth": 100,
        "avg_response_time_ms": 250, "error_rate": 0.05}]})

    instance_id: Identifier
    service_name: Identifier
    cpu_percent: float = Field(ge=0, le=100)
    memory_percent: float = Field(ge=0, le=100)
    active_requests: int = Field(ge=0, le=INT32)
    queue_depth: int = Field(ge=0, le=INT32)
    avg_response_time_ms: float = Field(ge=0, le=86_400_000)
    error_rate: float = Field(ge=0, le=1)


class MetricsRecorded(BaseModel):
    """The recorded snapshot's load score and health."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"position": 311, "load_score": 58.0, "health": "HEALTHY"}]})

    position: int | None
    load_score: float
    health: str


class RebalancingDecision(BaseModel):
    service: str
    target_shares: dict[str, float] = Field(description="Instance -> share of new work.")
    position: int | None


class Rebalanced(BaseModel):
    """One decision per service; `position` is the last one's."""

    position: int | None
    decisions: list[RebalancingDecision]
