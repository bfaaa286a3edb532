"""Audit rows (read model)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class AuditRow(BaseModel):
    """One workflow event as the audit trail records it."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{
        "position": 58, "workflow_id": "2b1f6c1e-8f1a-4c55-9a51-7b0c3e1f9a10", "version": 2,
        "event_type": "Started", "timestamp": "2026-11-25T20:40:00.123456Z", "actor": "oms",
        "correlation_id": "ord-ORD-12345", "step_id": None, "data": {"actor": "oms"}}]})

    position: int
    workflow_id: UUID
    version: int
    event_type: str
    timestamp: datetime
    actor: str | None
    correlation_id: str | None
    step_id: str | None
    data: dict[str, Any]


class CountsBucket(BaseModel):
    """One time bucket: how many events of each type asked for it holds."""

    start: datetime = Field(description="The bucket's start (UTC); it ends `bucket_seconds` "
                                        "later.")
    counts: dict[str, int] = Field(description="Events per type, every type asked for "
                                               "(zeros included).")


class AuditCounts(BaseModel):
    """Events per type and time bucket in the window `after` <= timestamp < `before`."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "bucket_seconds": 60, "after": "2026-11-25T20:00:30Z", "before": "2026-11-25T20:02:00Z",
        "buckets": [
            {"start": "2026-11-25T20:00:00Z", "counts": {"Completed": 3, "Failed": 0}},
            {"start": "2026-11-25T20:01:00Z", "counts": {"Completed": 5, "Failed": 1}}],
        "totals": {"Completed": 8, "Failed": 1}}]})

    bucket_seconds: int
    after: datetime
    before: datetime
    buckets: list[CountsBucket] = Field(description=(
        "Every bucket of the window, oldest first, aligned to the epoch: the first starts "
        "at or before `after` (it counts only events from `after` on), the last before "
        "`before`."))
    totals: dict[str, int] = Field(description="Events per type in the whole window.")
