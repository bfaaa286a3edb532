"""The balancer's latency estimate: a decaying peak EWMA per instance (issue 14)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from application.load_balancing import LATENCY_DECAY_SECONDS, InstanceState
from domain.circuit_breaker import CircuitBreaker

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def state() -> InstanceState:
    return InstanceState("http://inv-01", "inventory-service", CircuitBreaker())


class TestLatencyEstimate:
    def test_an_instance_never_called_has_no_latency_held_against_it(self):
        assert state().routing_latency_ms(T0) == 0.0

    def test_a_slower_answer_counts_at_once(self):
        s = state()
        s.learn_latency(10, T0)
        s.learn_latency(300, T0 + timedelta(milliseconds=5))
        assert s.routing_latency_ms(T0 + timedelta(milliseconds=5)) == pytest.approx(300)

    def test_faster_answers_bring_it_down_gradually(self):
        s = state()
        s.learn_latency(300, T0)
        at = T0
        readings = []
        for _ in range(20):
            at += timedelta(milliseconds=50)
            s.learn_latency(10, at)
            readings.append(s.routing_latency_ms(at))
        assert readings == sorted(readings, reverse=True)
        assert 10 < readings[0] < 300 and readings[-1] < 50

    def test_the_estimate_fades_while_the_instance_gets_no_calls(self):
        s = state()
        s.learn_latency(250, T0)
        later = T0 + timedelta(seconds=LATENCY_DECAY_SECONDS)
        assert s.routing_latency_ms(later) == pytest.approx(250 / 2.718281828, rel=1e-3)
        assert s.routing_latency_ms(T0 + timedelta(seconds=5 * LATENCY_DECAY_SECONDS)) < 2

    def test_forgetting_clears_it(self):
        s = state()
        s.learn_latency(250, T0)
        s.forget_latency()
        assert s.routing_latency_ms(T0) == 0.0
