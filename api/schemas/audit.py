"""Audit rows (read model)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict


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
