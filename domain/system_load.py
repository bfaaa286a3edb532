"""SystemLoad: the event-sourced load history of one service instance (seed section 7)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from eventsourcing.domain import Aggregate

from domain.load import LoadMetrics

_NAMESPACE = uuid.UUID("0c7d5f7e-2a43-4b8e-9a43-5b7b2d5c1e01")


def system_load_id(instance_id: str) -> uuid.UUID:
    """One stream per instance, found again from the instance id alone."""
    return uuid.uuid5(_NAMESPACE, instance_id)


REBALANCING_STREAM = uuid.uuid5(_NAMESPACE, "rebalancing-decisions")


class SystemLoad(Aggregate):
    """Reported and observed metrics and circuit changes of one instance."""

    class Registered(Aggregate.Created):
        instance_id: str
        service_name: str

    class MetricsReported(Aggregate.Event):
        """A LoadMetrics snapshot, reported by the service or observed by the engine."""

        metrics: dict[str, Any]
        source: str  # "reported" | "observed"

        def apply(self, aggregate: Any) -> None:
            load = cast(SystemLoad, aggregate)
            if self.source == "reported":
                load.reported = dict(self.metrics)
                load.reported_at = self.timestamp
            else:
                load.observed = dict(self.metrics)

    class CircuitStateChanged(Aggregate.Event):
        """The instance's circuit breaker changed state."""

        state: str
        failure_rate: float | None

        def apply(self, aggregate: Any) -> None:
            cast(SystemLoad, aggregate).circuit_state = self.state

    def __init__(self, instance_id: str, service_name: str) -> None:
        self.instance_id = instance_id
        self.service_name = service_name
        self.reported: dict[str, Any] | None = None
        self.reported_at: datetime | None = None
        self.observed: dict[str, Any] | None = None
        self.circuit_state = "CLOSED"

    @classmethod
    def register(cls, instance_id: str, service_name: str, now: datetime) -> SystemLoad:
        return cls._create(cls.Registered, id=system_load_id(instance_id), timestamp=now,
                           instance_id=instance_id, service_name=service_name)

    def report(self, metrics: LoadMetrics, now: datetime, source: str = "reported") -> None:
        self.trigger_event(self.MetricsReported, timestamp=now, metrics=metrics.to_dict(),
                           source=source)

    def change_circuit(self, state: str, now: datetime, failure_rate: float | None = None) -> None:
        if state != self.circuit_state:
            self.trigger_event(self.CircuitStateChanged, timestamp=now, state=state,
                               failure_rate=failure_rate)


class RebalancingLog(Aggregate):
    """The stream of rebalancing decisions (seed SystemLoadRebalancedEvent)."""

    class Started(Aggregate.Created):
        pass

    class SystemLoadRebalanced(Aggregate.Event):
        """A rebalancing decision: target share per instance, and why."""

        service_name: str
        target_shares: dict[str, float]
        scores: dict[str, float]
        reason: str
        actor: str

        def apply(self, aggregate: Any) -> None:
            log = cast(RebalancingLog, aggregate)
            log.latest[self.service_name] = dict(self.target_shares)

    def __init__(self) -> None:
        self.latest: dict[str, dict[str, float]] = {}

    @classmethod
    def start(cls, now: datetime) -> RebalancingLog:
        return cls._create(cls.Started, id=REBALANCING_STREAM, timestamp=now)

    def record(self, service_name: str, target_shares: dict[str, float],
               scores: dict[str, float], reason: str, actor: str, now: datetime) -> None:
        self.trigger_event(self.SystemLoadRebalanced, timestamp=now, service_name=service_name,
                           target_shares=target_shares, scores=scores, reason=reason, actor=actor)
