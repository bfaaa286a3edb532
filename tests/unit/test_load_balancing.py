"""Seed section 7 and its troubleshooting: load score, health, rebalancing, selection,
circuit breaker (numbers from SEED-FACTS)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from random import Random

import pytest

from domain.circuit_breaker import BreakerConfig, CircuitBreaker, CircuitState
from domain.exceptions import InvalidValue
from domain.load import (
    HealthStatus,
    InstanceLoad,
    LoadMetrics,
    calculate_rebalancing_strategy,
    needs_rebalancing,
    select_instance,
    select_service_for_workflow,
)

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def metrics(instance: str = "inv-01", cpu: float = 10, mem: float = 10, queue: int = 0,
            errors: float = 0.0, active: int = 0) -> LoadMetrics:
    return LoadMetrics.snapshot(instance, "inventory-service", cpu, mem, active, queue, 250, errors)


def load(instance: str, latency: float = 0.0, circuit_open: bool = False, **kw) -> InstanceLoad:
    return InstanceLoad(instance, metrics(instance, **kw), latency, circuit_open)


class TestSection7LoadMetrics:
    def test_the_guides_inventory_snapshot_scores_as_the_formula_says(self):
        m = LoadMetrics.snapshot("inv-01", "inventory-service", 75.0, 60.0, 50, 100, 250, 0.05)
        # 75*0.3 + 60*0.3 + (100/1000*100)*0.2 + 0.05*100*0.2
        assert m.load_score == pytest.approx(22.5 + 18 + 2 + 1)
        assert m.health == HealthStatus.HEALTHY
        assert m.can_accept_work

    def test_queue_term_is_capped_at_100(self):
        assert metrics(cpu=0, mem=0, queue=50_000).load_score == pytest.approx(20.0)

    def test_health_is_degraded_by_errors_when_the_score_is_below_thresholds(self):
        m = metrics(cpu=100, mem=100, errors=1.0)  # 30 + 30 + 20 = 80
        assert m.load_score == pytest.approx(80.0)
        assert m.health == HealthStatus.DEGRADED

    def test_health_thresholds(self):
        assert metrics(cpu=100, mem=100, queue=1000, errors=0.75).health == HealthStatus.CRITICAL
        assert metrics(cpu=100, mem=100, queue=1000, errors=0.3).health == HealthStatus.WARNING
        assert metrics(cpu=50, mem=50).health == HealthStatus.HEALTHY

    def test_an_instance_at_85_or_with_half_its_calls_failing_takes_no_new_work(self):
        assert not metrics(cpu=100, mem=100, queue=1000, errors=0.3).can_accept_work
        assert not metrics(errors=0.5).can_accept_work
        assert metrics(errors=0.49).can_accept_work

    @pytest.mark.parametrize(("field", "value"), [
        ("cpu_percent", -1), ("cpu_percent", 101), ("memory_percent", 100.5),
        ("error_rate", 1.5), ("error_rate", -0.1), ("queue_depth", -3),
        ("active_requests", -1), ("avg_response_time_ms", -5), ("cpu_percent", float("nan")),
    ])
    def test_out_of_range_metrics_are_rejected(self, field, value):
        fields = dict(instance_id="inv-01", service_name="inventory-service", cpu_percent=10,
                      memory_percent=10, active_requests=0, queue_depth=0,
                      avg_response_time_ms=1, error_rate=0)
        fields[field] = value
        with pytest.raises(InvalidValue, match=field):
            LoadMetrics(**fields)


class TestSection7Rebalancing:
    def test_an_overloaded_instance_needs_rebalancing(self):
        assert needs_rebalancing([load("a", cpu=100, mem=100, queue=1000, errors=0.75)])

    def test_a_spread_above_30_points_needs_rebalancing(self):
        assert needs_rebalancing([load("a", cpu=100, mem=40), load("b", cpu=0, mem=0)])
        assert not needs_rebalancing([load("a", cpu=50, mem=40), load("b", cpu=0, mem=0)])

    def test_a_single_healthy_instance_needs_no_rebalancing(self):
        assert not needs_rebalancing([load("a", cpu=60, mem=60)])

    def test_target_shares_follow_headroom_and_sum_to_one(self):
        shares = calculate_rebalancing_strategy([load("a", cpu=100, mem=50),
                                                 load("b", cpu=0, mem=0)])
        assert sum(shares.values()) == pytest.approx(1.0)
        assert shares["b"] > shares["a"] > 0

    def test_instances_that_cannot_accept_work_get_no_share(self):
        shares = calculate_rebalancing_strategy([load("a", errors=0.9), load("b"),
                                                 load("c", circuit_open=True)])
        assert shares == {"a": 0.0, "b": 1.0, "c": 0.0}


class TestSection7Selection:
    def test_selects_the_least_loaded_instance_that_can_accept_work(self):
        assert select_instance([load("a", cpu=80), load("b", cpu=20)]) == "b"

    def test_never_selects_an_open_circuit_or_overloaded_instance(self):
        assert select_instance([load("a", circuit_open=True),
                                load("b", cpu=100, mem=100, queue=1000, errors=0.3)]) is None

    def test_equal_scores_prefer_the_faster_instance(self):
        assert select_instance([load("slow", latency=900), load("fast", latency=20)]) == "fast"

    def test_equal_instances_share_the_work_evenly(self):
        rng = Random(7)
        for n in (2, 3, 5):
            loads = [load(f"inv-{i}", latency=10 + i) for i in range(n)]  # noise, not a signal
            picks = Counter(select_instance(loads, rng) for _ in range(3000))
            for i in range(n):
                assert picks[f"inv-{i}"] / 3000 == pytest.approx(1 / n, rel=0.1), picks

    def test_the_instance_with_fewer_outstanding_requests_wins_among_equals(self):
        loads = [load("busy", latency=10, active=3), load("idle", latency=12)]
        rng = Random(1)
        assert {select_instance(loads, rng) for _ in range(50)} == {"idle"}

    def test_a_clearly_slower_instance_loses_even_with_fewer_requests_in_flight(self):
        loads = [load("fast", latency=20, active=1), load("slow", latency=400)]
        rng = Random(2)
        assert {select_instance(loads, rng) for _ in range(50)} == {"fast"}

    def test_an_instance_with_no_known_latency_gets_its_share(self):
        loads = [load("known", latency=15), load("unknown", latency=0.0)]
        rng = Random(3)
        picks = Counter(select_instance(loads, rng) for _ in range(1000))
        assert picks["unknown"] == pytest.approx(500, rel=0.15), picks

    def test_a_less_loaded_band_is_preferred_over_random_choice(self):
        loads = [load("a", cpu=80), load("b", cpu=20), load("c", cpu=81)]
        rng = Random(4)
        assert {select_instance(loads, rng) for _ in range(50)} == {"b"}

    def test_select_service_for_workflow_returns_the_key_as_the_guide_does(self):
        loads = {"inventory-service": load("inv-01", cpu=70),
                 "robotics-service": load("robot-01", cpu=10)}
        assert select_service_for_workflow(loads) == "robotics-service"


class TestCircuitBreaker:
    def test_opens_at_half_failures_once_five_calls_were_seen(self):
        breaker = CircuitBreaker()
        for ok in (True, False, True, False):
            breaker.record(ok, T0)
        assert breaker.state == CircuitState.CLOSED  # only 4 calls: not judged yet
        breaker.record(False, T0)
        assert breaker.state == CircuitState.OPEN
        assert not breaker.allow(T0 + timedelta(seconds=29))

    def test_half_opens_after_30_seconds_and_closes_after_three_good_trials(self):
        breaker = CircuitBreaker()
        for _ in range(5):
            breaker.record(False, T0)
        later = T0 + timedelta(seconds=30)
        assert breaker.current_state(later) == CircuitState.HALF_OPEN
        assert [breaker.allow(later) for _ in range(4)] == [True, True, True, False]
        for _ in range(3):
            breaker.record(True, later)
        assert breaker.state == CircuitState.CLOSED

    def test_a_failed_trial_opens_it_again(self):
        breaker = CircuitBreaker()
        for _ in range(5):
            breaker.record(False, T0)
        later = T0 + timedelta(seconds=31)
        breaker.allow(later)
        breaker.record(False, later)
        assert breaker.state == CircuitState.OPEN
        assert not breaker.allow(later + timedelta(seconds=29))

    def test_only_the_last_ten_calls_count(self):
        breaker = CircuitBreaker()
        for _ in range(10):
            breaker.record(True, T0)
        for _ in range(4):
            breaker.record(False, T0)
        assert breaker.state == CircuitState.CLOSED  # 4 of the last 10 failed
        breaker.record(False, T0)
        assert breaker.state == CircuitState.OPEN  # 5 of the last 10

    @pytest.mark.parametrize("kwargs", [{"window": 0}, {"minimum_calls": 11},
                                        {"failure_rate_threshold": 0}, {"open_seconds": 0},
                                        {"half_open_calls": 0}])
    def test_invalid_configuration_is_rejected(self, kwargs):
        with pytest.raises(InvalidValue):
            BreakerConfig(**kwargs)
