"""`/v1/load`: load per service instance (read model), load metrics and rebalancing."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from api.access import Operator, Reader
from api.components import ComponentsDep, QueryPortsDep, load_commands
from api.errors import responses
from api.freshness import LoadFresh
from api.schemas.common import Page
from api.schemas.load import (
    LoadMetricsIn,
    LoadRow,
    MetricsRecorded,
    Rebalanced,
    RebalancingDecision,
)
from domain.load import LoadMetrics

router = APIRouter(prefix="/v1/load", tags=["load"])


@router.get("", response_model=Page[LoadRow], responses=responses(403, 504),
            summary="Load per service instance")
def list_load(
    _: Reader, __: LoadFresh, views: QueryPortsDep,
    window_seconds: Annotated[float, Query(gt=0, le=86_400, description=(
        "Durations and error rate over this many recent seconds."))] = 300.0,
) -> Page[LoadRow]:
    """Per service and instance: calls in flight and queued, completed and failed, average
    and p95 duration, error rate, load score, circuit state and target share. One row per
    configured instance, so the whole list is one page (`next_cursor` is always null)."""
    rows = views.load.list(window_seconds=window_seconds)
    return Page[LoadRow](items=[_row(r) for r in rows], next_cursor=None)


def _row(r: Any) -> LoadRow:
    row = LoadRow.model_validate(r)
    if row.metrics is not None:
        try:
            row.health = LoadMetrics.from_dict(row.metrics).health.value
        except (KeyError, TypeError, ValueError):  # a snapshot of another shape: unknown
            row.health = None
    return row


@router.post("/metrics", response_model=MetricsRecorded, responses=responses(403, 404),
               summary="Report a LoadMetrics snapshot")
def report_metrics(c: ComponentsDep, _: Operator,
                   body: Annotated[LoadMetricsIn, Body()]) -> MetricsRecorded:
    """Records a service instance's load snapshot (seed LoadMetrics.snapshot); routing and
    rebalancing take it into account at once. 404 for an instance no service has."""
    metrics = LoadMetrics.snapshot(**body.model_dump())
    position = load_commands(c).report_metrics(metrics)
    return MetricsRecorded(position=position, load_score=round(metrics.load_score, 3),
                           health=metrics.health.value)


@router.post("/rebalance", response_model=Rebalanced, responses=responses(403),
               summary="Rebalance now")
def rebalance(c: ComponentsDep, who: Operator) -> Rebalanced:
    """Computes target shares for every service from current load and records the
    decision, whether or not a threshold is crossed (seed: manual rebalancing)."""
    decisions = [RebalancingDecision(service=service, target_shares=dict(shares),
                                     position=position)
                 for service, shares, position in load_commands(c).rebalance(actor=who.actor)]
    positions = [d.position for d in decisions if d.position is not None]
    return Rebalanced(position=max(positions, default=None), decisions=decisions)
