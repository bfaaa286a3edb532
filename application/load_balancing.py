"""Load-aware routing: every HTTP step call goes to the least-loaded healthy instance.

The balancer is the HTTP handler's instance selector and call observer. It keeps, per
instance, a circuit breaker and a window of recent calls (latency, errors, in-flight),
combines them with the latest metrics the service reported (`report_metrics`, the
`POST /v1/load/metrics` command) and routes by `domain.load.select_instance`. What it
learns is recorded as events on each instance's SystemLoad stream (reported and observed
metrics, circuit changes) and rebalancing decisions on the rebalancing stream, so the load
history can be replayed and projected like everything else.

Routing's latency estimate is a decaying peak EWMA per instance (Finagle's): a slow answer
raises it at once, fast answers lower it gradually, and it fades with the time since the
last answer, so an instance that got no calls for a while (idle, or just recovered) looks
fast again and is given trial traffic instead of keeping an old latency forever. A circuit
that opens forgets the estimate: the breaker speaks for that instance until it closes.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from random import Random
from typing import Any

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from application.errors import ApplicationError
from application.workflows import Workflows, utc_now
from domain.circuit_breaker import BreakerConfig, CircuitBreaker, CircuitState
from domain.load import (
    InstanceLoad,
    LoadMetrics,
    calculate_rebalancing_strategy,
    needs_rebalancing,
)
from domain.load import select_instance as choose
from domain.system_load import REBALANCING_STREAM, RebalancingLog, SystemLoad, system_load_id

log = logging.getLogger(__name__)

RECENT_WINDOW = timedelta(seconds=60)
REPORT_FRESHNESS = timedelta(seconds=120)
# The latency estimate's time constant: answers older than this weigh e^-1 as much, and an
# instance unused for this long looks e^-1 as slow as it last was.
LATENCY_DECAY_SECONDS = 10.0
# However close together calls come, a new answer moves the estimate by at least this much.
MIN_SAMPLE_WEIGHT = 0.1


class UnknownInstance(ApplicationError, LookupError):
    """Metrics for an instance that no configured service has."""

    def __init__(self, instance_id: str, service: str, known: Sequence[str]) -> None:
        self.instance_id = instance_id
        super().__init__(f"unknown instance {instance_id!r} of service {service!r}; "
                         f"known instances: {', '.join(known) or 'none'}")


class NoInstanceAvailable(ApplicationError):
    """Every instance of the service is overloaded or has an open circuit."""

    def __init__(self, service: str) -> None:
        self.service = service
        super().__init__(f"no instance of {service} can accept work now "
                         "(all overloaded or circuit open)")


@dataclass
class InstanceState:
    """What this process knows about one instance."""

    instance_id: str
    service: str
    breaker: CircuitBreaker
    recent: deque[tuple[datetime, float, bool]] = field(default_factory=deque)
    in_flight: int = 0
    reported: LoadMetrics | None = None
    reported_at: datetime | None = None
    last_recorded: datetime | None = None
    target_share: float | None = None
    latency_estimate: float | None = None
    latency_at: datetime | None = None

    def learn_latency(self, duration_ms: float, now: datetime) -> None:
        """Peak EWMA: a slower answer counts at once, a faster one by its time weight."""
        if self.latency_estimate is None or self.latency_at is None \
                or duration_ms >= self.latency_estimate:
            self.latency_estimate = duration_ms
        else:
            elapsed = max((now - self.latency_at).total_seconds(), 0.0)
            weight = max(1.0 - math.exp(-elapsed / LATENCY_DECAY_SECONDS), MIN_SAMPLE_WEIGHT)
            self.latency_estimate += weight * (duration_ms - self.latency_estimate)
        self.latency_at = now

    def forget_latency(self) -> None:
        self.latency_estimate = None
        self.latency_at = None

    def routing_latency_ms(self, now: datetime) -> float:
        """The estimate faded by the time since the last answer (0 when none is known)."""
        if self.latency_estimate is None or self.latency_at is None:
            return 0.0
        idle = max((now - self.latency_at).total_seconds(), 0.0)
        return self.latency_estimate * math.exp(-idle / LATENCY_DECAY_SECONDS)

    def trim(self, now: datetime) -> None:
        while self.recent and now - self.recent[0][0] > RECENT_WINDOW:
            self.recent.popleft()

    def observed_latency_ms(self) -> float:
        if not self.recent:
            return 0.0
        return sum(d for _, d, _ in self.recent) / len(self.recent)

    def observed_error_rate(self) -> float:
        if not self.recent:
            return 0.0
        return sum(1 for _, _, ok in self.recent if not ok) / len(self.recent)

    def effective(self, now: datetime) -> LoadMetrics:
        """The reported metrics if fresh, with what we observe folded in."""
        fresh = self.reported is not None and self.reported_at is not None \
            and now - self.reported_at <= REPORT_FRESHNESS
        base = self.reported if fresh else None
        observed_errors = self.observed_error_rate() if len(self.recent) >= 5 else 0.0
        return LoadMetrics(
            instance_id=self.instance_id, service_name=self.service,
            cpu_percent=base.cpu_percent if base else 0.0,
            memory_percent=base.memory_percent if base else 0.0,
            active_requests=max(base.active_requests if base else 0, self.in_flight),
            queue_depth=max(base.queue_depth if base else 0, self.in_flight),
            avg_response_time_ms=self.observed_latency_ms() or (
                base.avg_response_time_ms if base else 0.0),
            error_rate=max(base.error_rate if base else 0.0, observed_errors),
            observed_at=now,
        )


class LoadBalancer:
    """Selector + observer for the HTTP handler; records what it learns as events."""

    def __init__(self, app: Workflows, services: dict[str, list[str]], *,
                 breaker: BreakerConfig | None = None, record_every: float = 5.0,
                 refresh_every: float = 5.0,
                 clock: Callable[[], datetime] = utc_now, rng: Random | None = None) -> None:
        self.app = app
        self.clock = clock
        # The two random choices among equally loaded instances (seedable for tests).
        self._rng = rng or Random()
        self.record_every = timedelta(seconds=record_every)
        self.refresh_every = timedelta(seconds=refresh_every)
        self._refreshed_at: datetime | None = None
        self._lock = threading.Lock()
        config = breaker or BreakerConfig()
        self._instances: dict[str, InstanceState] = {
            url: InstanceState(url, service, CircuitBreaker(config))
            for service, urls in services.items() for url in urls
        }

    # ---- routing (InstanceSelector protocol)

    def __call__(self, service: str, instances: Sequence[str]) -> str:
        now = self.clock()
        self._refresh_reported(now)
        with self._lock:
            states = [self._state(url, service) for url in instances]
            loads = [self._load(s, now) for s in states]
            chosen = choose(loads, self._rng)
            if chosen is None:
                raise NoInstanceAvailable(service)
            state = self._instances[chosen]
            state.breaker.allow(now)  # takes a half-open trial slot when half-open
            state.in_flight += 1
            return chosen

    def _refresh_reported(self, now: datetime) -> None:
        """Picks up metrics reported through another process (say the API container) from
        the instances' SystemLoad streams, at most every `refresh_every`."""
        if self._refreshed_at is not None and now - self._refreshed_at < self.refresh_every:
            return
        self._refreshed_at = now
        with self._lock:
            instances = list(self._instances.values())
        for state in instances:
            try:
                load: SystemLoad = self.app.repository.get(system_load_id(state.instance_id))
            except AggregateNotFoundError:
                continue
            except Exception:  # routing must go on with what it knows
                log.warning("could not refresh load metrics", exc_info=True)
                return
            if load.reported is None or load.reported_at is None:
                continue
            with self._lock:
                if state.reported_at is None or load.reported_at > state.reported_at:
                    state.reported = LoadMetrics.from_dict(load.reported)
                    state.reported_at = load.reported_at

    def _state(self, url: str, service: str) -> InstanceState:
        state = self._instances.get(url)
        if state is None:
            state = InstanceState(url, service, CircuitBreaker(BreakerConfig()))
            self._instances[url] = state
        return state

    def _load(self, state: InstanceState, now: datetime) -> InstanceLoad:
        state.trim(now)
        return InstanceLoad(state.instance_id, state.effective(now),
                            state.routing_latency_ms(now),
                            circuit_open=not state.breaker.would_allow(now))

    def unavailable_for(self, service: str) -> float | None:
        """None when some instance of `service` can take work now; otherwise seconds until
        one may (the earliest end of an open circuit, else a short re-check)."""
        now = self.clock()
        self._refresh_reported(now)
        with self._lock:
            states = [s for s in self._instances.values() if s.service == service]
            if not states or choose([self._load(s, now) for s in states]) is not None:
                return None
            reopen = [s.breaker.opened_at + timedelta(seconds=s.breaker.config.open_seconds)
                      for s in states
                      if s.breaker.state == CircuitState.OPEN and s.breaker.opened_at]
        wait = (min(reopen) - now).total_seconds() if reopen else 1.0
        return max(wait, 0.2)

    # ---- observing (Observer callback of the HTTP handler)

    def observe(self, instance: str, service: str, duration_ms: float, ok: bool | None) -> None:
        now = self.clock()
        with self._lock:
            state = self._state(instance, service)
            state.in_flight = max(state.in_flight - 1, 0)
            if ok is None:
                # No request went out: nothing to learn, but a half-open trial slot taken
                # for it must be given back, or the instance would never be tried again.
                state.breaker.give_back_trial()
                return
            state.recent.append((now, float(duration_ms), ok))
            state.learn_latency(float(duration_ms), now)
            state.breaker.record(ok, now)
            transitions = state.breaker.drain_transitions()
            if CircuitState.OPEN in transitions:
                # The breaker now speaks for these failures; keeping them in the window
                # would also block the half-open trial calls for the whole window, and a
                # fast refusal must not make it look like the fastest instance later.
                state.recent.clear()
                state.forget_latency()
            due = state.last_recorded is None or now - state.last_recorded >= self.record_every
            if due:
                state.last_recorded = now
            metrics = state.effective(now)
            failure_rate = state.observed_error_rate()
        for new_state in transitions:
            log.warning("circuit %s", new_state, extra={"instance": instance, "service": service})
            self._record(instance, service, lambda load, s=new_state: load.change_circuit(
                str(s), now, round(failure_rate, 3)))
        if due:
            self._record(instance, service, lambda load: load.report(metrics, now, "observed"))
            self.rebalance_if_needed(service)

    # ---- commands

    def report_metrics(self, metrics: LoadMetrics) -> int | None:
        """Records a LoadMetrics snapshot reported by a service instance."""
        now = self.clock()
        with self._lock:
            state = self._instances.get(metrics.instance_id)
            if state is None or state.service != metrics.service_name:
                known = [s.instance_id for s in self._instances.values()
                         if s.service == metrics.service_name]
                raise UnknownInstance(metrics.instance_id, metrics.service_name, known)
            state.reported = metrics
            state.reported_at = now
        position = self._record(metrics.instance_id, metrics.service_name,
                                lambda load: load.report(metrics, now, "reported"))
        self.rebalance_if_needed(metrics.service_name)
        return position

    def rebalance_if_needed(self, service: str) -> int | None:
        loads = self.loads(service)
        if not needs_rebalancing(loads):
            return None
        return self._rebalance(service, loads, "automatic: " + _why(loads), "engine")

    def rebalance(self, actor: str = "operator") -> list[tuple[str, dict[str, float], int | None]]:
        """Manual rebalancing (seed troubleshooting): computes and records a decision for
        every service, whether or not thresholds are crossed."""
        decisions = []
        services = sorted({s.service for s in self._instances.values()})
        for service in services:
            loads = self.loads(service)
            reason = _why(loads) if needs_rebalancing(loads) else "manual rebalancing"
            position = self._rebalance(service, loads, reason, actor)
            decisions.append((service, self.target_shares(service), position))
        return decisions

    def _rebalance(self, service: str, loads: list[InstanceLoad], reason: str,
                   actor: str) -> int | None:
        shares = calculate_rebalancing_strategy(loads)
        with self._lock:
            previous = {i: self._instances[i].target_share for i in shares}
            for instance, share in shares.items():
                self._instances[instance].target_share = share
        if actor == "engine" and all(
                previous[i] is not None and abs((previous[i] or 0) - s) < 0.05
                for i, s in shares.items()):
            return None  # the same decision again: nothing new to record
        scores = {load.instance_id: round(load.load_score, 3) for load in loads}
        now = self.clock()
        for _ in range(5):
            try:
                log_ = self._rebalancing_log(now)
                log_.record(service, shares, scores, reason, actor, now)
                recordings = self.app.save(log_)
                return recordings[-1].notification.id if recordings else None
            except IntegrityError:
                continue
        return None

    def _rebalancing_log(self, now: datetime) -> RebalancingLog:
        try:
            return self.app.repository.get(REBALANCING_STREAM)  # type: ignore[no-any-return]
        except AggregateNotFoundError:
            return RebalancingLog.start(now)

    def _record(self, instance: str, service: str, change: Callable[[SystemLoad], None]
                ) -> int | None:
        for _ in range(5):
            try:
                try:
                    load: SystemLoad = self.app.repository.get(system_load_id(instance))
                except AggregateNotFoundError:
                    load = SystemLoad.register(instance, service, self.clock())
                change(load)
                recordings = self.app.save(load)
                return recordings[-1].notification.id if recordings else None
            except IntegrityError:
                continue
            except Exception:  # recording load history must never break a step call
                log.exception("could not record load event", extra={"instance": instance})
                return None
        return None

    # ---- queries

    def loads(self, service: str) -> list[InstanceLoad]:
        now = self.clock()
        with self._lock:
            return [self._load(s, now) for s in self._instances.values() if s.service == service]

    def target_shares(self, service: str) -> dict[str, float]:
        with self._lock:
            return {s.instance_id: s.target_share or 0.0 for s in self._instances.values()
                    if s.service == service}

    def circuit_state(self, instance: str) -> CircuitState:
        with self._lock:
            return self._instances[instance].breaker.current_state(self.clock())

    def snapshot(self) -> list[dict[str, Any]]:
        """Per instance: service, load score, circuit, target share, latency, errors."""
        now = self.clock()
        with self._lock:
            rows = []
            for state in self._instances.values():
                load = self._load(state, now)
                rows.append({
                    "instance_id": state.instance_id, "service": state.service,
                    "load_score": round(load.load_score, 3),
                    "circuit_state": str(state.breaker.current_state(now)),
                    "target_share": state.target_share, "in_flight": state.in_flight,
                    "recent_latency_ms": round(state.observed_latency_ms(), 3),
                    "routing_latency_ms": round(state.routing_latency_ms(now), 3),
                    "recent_error_rate": round(state.observed_error_rate(), 3),
                })
            return rows


def _why(loads: list[InstanceLoad]) -> str:
    overloaded = [load.instance_id for load in loads if load.metrics.is_overloaded]
    if overloaded:
        return f"overloaded: {', '.join(overloaded)}"
    scores = [load.load_score for load in loads]
    if len(scores) >= 2:
        return f"load spread {max(scores) - min(scores):.0f} > 30 points"
    return "within thresholds"
