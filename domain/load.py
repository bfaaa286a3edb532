"""Load balancing (seed section 7): metrics, load score, health, rebalancing, selection.

The numbers follow SEED-FACTS. Three documented improvements:
- target shares are proportional to each instance's headroom (100 - load score), so a
  busier instance gets less new work instead of an equal split;
- instances whose scores are within `SCORE_BUCKET` points count as equally loaded, and
  among those the choice is a "power of two choices" (Envoy's least-request, Finagle's
  P2C): two of them drawn at random, the one with the clearly lower cost wins, where cost
  weighs the outstanding requests by the latency estimate. Without the random draw,
  equal instances degenerate into "always the same one" (the lowest latency measured once
  wins every time); without the latency term a slowed instance would keep half the
  traffic, because the seed's score has no latency in it;
- latencies within `LATENCY_SLACK_MS` (or `LATENCY_SLACK_RATIO` of the smaller) count as
  equal, so measurement noise between healthy instances decides nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from random import Random
from typing import Any

from domain.exceptions import InvalidValue

TARGET_SCORE = 85.0
CRITICAL_SCORE = 95.0
REBALANCE_SPREAD = 30.0
MAX_ACCEPTING_ERROR_RATE = 0.5
SCORE_BUCKET = 5.0
LATENCY_SLACK_MS = 25.0
LATENCY_SLACK_RATIO = 0.25


class HealthStatus(StrEnum):
    HEALTHY = "HEALTHY"
    DEGRADED = "DEGRADED"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"


def _number(field: str, value: Any, low: float, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidValue(field, value, "must be a number")
    if value < low or (high is not None and value > high):
        bound = f"between {low:g} and {high:g}" if high is not None else f">= {low:g}"
        raise InvalidValue(field, value, f"must be {bound}")
    return float(value)


@dataclass(frozen=True, slots=True)
class LoadMetrics:
    """A snapshot of one service instance's load (seed LoadMetrics.snapshot)."""

    instance_id: str
    service_name: str
    cpu_percent: float
    memory_percent: float
    active_requests: int
    queue_depth: int
    avg_response_time_ms: float
    error_rate: float
    observed_at: datetime | None = None

    def __post_init__(self) -> None:
        if not self.instance_id:
            raise InvalidValue("instance_id", self.instance_id, "must not be empty")
        if not self.service_name:
            raise InvalidValue("service_name", self.service_name, "must not be empty")
        _number("cpu_percent", self.cpu_percent, 0, 100)
        _number("memory_percent", self.memory_percent, 0, 100)
        _number("active_requests", self.active_requests, 0)
        _number("queue_depth", self.queue_depth, 0)
        _number("avg_response_time_ms", self.avg_response_time_ms, 0)
        _number("error_rate", self.error_rate, 0, 1)

    @classmethod
    def snapshot(cls, instance_id: str, service_name: str, cpu_percent: float,
                 memory_percent: float, active_requests: int, queue_depth: int,
                 avg_response_time_ms: float, error_rate: float,
                 observed_at: datetime | None = None) -> LoadMetrics:
        return cls(instance_id, service_name, cpu_percent, memory_percent, active_requests,
                   queue_depth, avg_response_time_ms, error_rate, observed_at)

    @property
    def load_score(self) -> float:
        """cpu x 0.3 + memory x 0.3 + queue x 0.2 + error rate x 100 x 0.2 (queue capped)."""
        queue = min(self.queue_depth / 1000 * 100, 100.0)
        return (self.cpu_percent * 0.3 + self.memory_percent * 0.3 + queue * 0.2
                + self.error_rate * 100 * 0.2)

    @property
    def health(self) -> HealthStatus:
        score = self.load_score
        if score >= CRITICAL_SCORE:
            return HealthStatus.CRITICAL
        if score >= TARGET_SCORE:
            return HealthStatus.WARNING
        if self.error_rate > 0.5:
            return HealthStatus.DEGRADED
        return HealthStatus.HEALTHY

    @property
    def is_overloaded(self) -> bool:
        return self.load_score >= CRITICAL_SCORE

    @property
    def wants_rebalancing(self) -> bool:
        return self.load_score >= TARGET_SCORE

    @property
    def can_accept_work(self) -> bool:
        return self.load_score < TARGET_SCORE and self.error_rate < MAX_ACCEPTING_ERROR_RATE

    def to_dict(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id, "service_name": self.service_name,
            "cpu_percent": self.cpu_percent, "memory_percent": self.memory_percent,
            "active_requests": self.active_requests, "queue_depth": self.queue_depth,
            "avg_response_time_ms": self.avg_response_time_ms, "error_rate": self.error_rate,
            "load_score": round(self.load_score, 3),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoadMetrics:
        return cls(data["instance_id"], data["service_name"], data["cpu_percent"],
                   data["memory_percent"], data["active_requests"], data["queue_depth"],
                   data["avg_response_time_ms"], data["error_rate"])


@dataclass(frozen=True, slots=True)
class InstanceLoad:
    """What routing knows of one instance: its metrics, latency and circuit."""

    instance_id: str
    metrics: LoadMetrics
    observed_latency_ms: float = 0.0
    circuit_open: bool = False

    @property
    def load_score(self) -> float:
        return self.metrics.load_score


def needs_rebalancing(loads: Sequence[InstanceLoad]) -> bool:
    """Any instance overloaded, or (two or more) a score spread above 30 points."""
    if any(load.metrics.is_overloaded for load in loads):
        return True
    if len(loads) < 2:
        return False
    scores = [load.load_score for load in loads]
    return max(scores) - min(scores) > REBALANCE_SPREAD


def calculate_rebalancing_strategy(loads: Sequence[InstanceLoad]) -> dict[str, float]:
    """Target share of new work per instance, summing to 1 (or all 0 when none can take
    any): proportional to headroom below the critical score, 0 for open circuits and for
    instances that cannot accept work."""
    headroom = {
        load.instance_id: max(CRITICAL_SCORE - load.load_score, 0.0)
        if load.metrics.can_accept_work and not load.circuit_open else 0.0
        for load in loads
    }
    total = sum(headroom.values())
    if total <= 0:
        return {instance: 0.0 for instance in headroom}
    return {instance: value / total for instance, value in headroom.items()}


def select_instance(loads: Sequence[InstanceLoad], rng: Random | None = None) -> str | None:
    """The least-loaded instance that can accept work and whose circuit is closed.

    Scores within SCORE_BUCKET points count as equal. Among the least loaded, with `rng`
    two are drawn at random and the one with the clearly lower cost wins (the first drawn
    when neither is clearly better), so equal instances share the work evenly; without
    `rng` (deterministic callers) every pair is compared and ties go to the lowest id.
    None when no instance can take work (the caller treats it as SERVICE_UNAVAILABLE).
    """
    candidates = [load for load in loads if load.metrics.can_accept_work and not load.circuit_open]
    if not candidates:
        return None
    band = min(math.floor(load.load_score / SCORE_BUCKET) for load in candidates)
    least = sorted((load for load in candidates
                    if math.floor(load.load_score / SCORE_BUCKET) == band),
                   key=lambda load: load.instance_id)
    if rng is not None and len(least) > 2:
        least = rng.sample(least, 2)
    elif rng is not None and len(least) == 2:
        rng.shuffle(least)
    best = least[0]
    for other in least[1:]:
        if _clearly_better(other, best):
            best = other
    return best.instance_id


def _latencies_equivalent(a: float, b: float) -> bool:
    return abs(a - b) <= max(LATENCY_SLACK_MS, LATENCY_SLACK_RATIO * min(a, b))


def _clearly_better(challenger: InstanceLoad, incumbent: InstanceLoad) -> bool:
    """Least request first when latencies are alike; otherwise the latency-weighted cost
    (outstanding + 1) x latency, as Finagle's P2C does."""
    mine, theirs = challenger.observed_latency_ms, incumbent.observed_latency_ms
    if _latencies_equivalent(mine, theirs):
        return challenger.metrics.active_requests < incumbent.metrics.active_requests
    return ((challenger.metrics.active_requests + 1) * mine
            < (incumbent.metrics.active_requests + 1) * theirs)


def select_service_for_workflow(service_loads: Mapping[str, InstanceLoad]) -> str | None:
    """Seed selectServiceForWorkflow: the key of the least-loaded accepting entry."""
    chosen = select_instance(list(service_loads.values()))
    if chosen is None:
        return None
    for key, load in service_loads.items():
        if load.instance_id == chosen:
            return key
    return None
