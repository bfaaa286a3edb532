"""The what-if simulation, pure: its clock, its server model, its use of the engine's rules,
and determinism (same seed, same result)."""

from __future__ import annotations

import random
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from application.builtin_definitions import ORDER_FULFILLMENT
from application.whatif.history import _handoffs
from domain.enums import ErrorType
from domain.exceptions import InvalidValue
from domain.simulation.clock import VirtualClock
from domain.simulation.kpis import Record, calibration, kpis, wip_series
from domain.simulation.model import FORWARD, Arrival, Observed, OperationModel, Outcome, Policy
from domain.simulation.run import Simulation, SimulationLimit, simulate

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
STEPS = tuple(ORDER_FULFILLMENT["steps"])
OPS = [("inventory-service", "reserve"), ("robotics-service", "assign"),
       ("warehouse-service", "pick"), ("packing-service", "pack")]
KEYS = {("inventory-service", "reserve"): ("reservationId",),
        ("robotics-service", "assign"): ("robotId",)}


def observed(n: int = 20, *, pick_ms: float = 800.0, every_s: float = 0.0,
             lane: tuple[int, int] | None = (10, 1000), failures: list[Outcome] | None = None,
             engine: int = 8, cut_off_s: float | None = None) -> Observed:
    arrivals = [Arrival(uuid.UUID(int=i + 1), T0 + timedelta(seconds=i * every_s), "NORMAL",
                        "ORDER_FULFILLMENT", "order-fulfillment", STEPS,
                        {"orderId": f"O-{i}", "items": [{"sku": "S", "quantity": 1}]},
                        T0 + timedelta(seconds=cut_off_s) if cut_off_s else None, lane)
                for i in range(n)]
    operations = {(s, o, FORWARD): OperationModel([Outcome(10.0)]) for s, o in OPS}
    operations[("warehouse-service", "pick", FORWARD)] = OperationModel(
        [Outcome(pick_ms), *(failures or [])])
    return Observed(T0, T0 + timedelta(hours=1), arrivals, operations, [2.0], engine,
                    {}, KEYS)


class TestVirtualClock:
    def test_runs_callbacks_in_time_order_and_ties_in_scheduling_order(self):
        clock = VirtualClock(T0)
        seen = []
        clock.at(2.0, seen.append, "c")
        clock.at(1.0, seen.append, "a")
        clock.at(1.0, seen.append, "b")
        assert clock.run() is True
        assert seen == ["a", "b", "c"]
        assert clock.now == T0 + timedelta(seconds=2)

    def test_never_schedules_into_the_past(self):
        clock = VirtualClock(T0)
        times = []
        clock.at(5.0, lambda: clock.at(1.0, lambda: times.append(clock.t)))
        clock.run()
        assert times == [5.0]

    def test_stops_at_its_event_bound(self):
        clock = VirtualClock(T0)

        def again() -> None:
            clock.after(1.0, again)

        clock.at(0.0, again)
        assert clock.run(max_events=10) is False
        assert clock.events_run == 10


class TestServerModel:
    def test_a_cap_of_one_serialises_every_pick(self):
        result = simulate(observed(10), Policy("cap1", wip_caps={"warehouse-service": 1}),
                          random.Random(1))
        peaks = [p["in_flight"] for p in result.wip["warehouse-service"]]
        assert max(peaks) == 1
        # Ten 800 ms picks one after another: the last completes after 8 s.
        assert result.kpis["completed"] == 10
        assert result.kpis["lead_time_p95_s"] > 7.5

    def test_without_a_cap_the_engine_threads_bound_the_picks(self):
        result = simulate(observed(10, engine=4), Policy("free"), random.Random(1))
        assert max(p["in_flight"] for p in result.wip["warehouse-service"]) == 4

    def test_halving_the_cap_halves_the_throughput_of_a_pick_bound_flow(self):
        slow = simulate(observed(40), Policy("c2", wip_caps={"warehouse-service": 2}),
                        random.Random(3)).kpis
        fast = simulate(observed(40), Policy("c4", wip_caps={"warehouse-service": 4}),
                        random.Random(3)).kpis
        assert fast["throughput_per_hour"] == pytest.approx(2 * slow["throughput_per_hour"],
                                                            rel=0.15)


class TestEngineOverheads:
    """The recorded times between calls are spent once, where the engine spent them."""

    def test_the_release_loop_keeps_the_phase_of_the_windows_first_batch(self):
        # The loop ran before the window: its first batch in it came 0.3 s after the
        # start, not after a whole idle interval (2 x 400 ms) counted from the start.
        seen = replace(observed(5, lane=(5, 400)), first_release_s=0.3)
        result = simulate(seen, Policy("p"), random.Random(1))
        assert result.kpis["release_wait_p50_s"] == pytest.approx(0.3)

    def test_a_released_workflows_first_call_waits_for_a_release_gap_only(self):
        # A worker claims released work after 100 ms; between its calls, 2 ms. Lead time:
        # release at 0.3 s + 100 ms + four 10 ms calls, each followed by a 2 ms gap.
        seen = replace(observed(1, lane=(5, 400), pick_ms=10.0), first_release_s=0.3,
                       release_dispatch_ms=[100.0])
        result = simulate(seen, Policy("p"), random.Random(1))
        assert result.kpis["lead_time_p50_s"] == pytest.approx(0.3 + 0.1 + 0.04 + 0.008)

    def test_a_freed_slot_is_handed_to_one_waiter_at_a_time(self):
        # Half the hand-offs take 10 ms, half 190 ms: 100 ms on average between a pick's
        # end and the next one's start. Packs end during hand-offs; were each of their
        # completions to hand the same slot to one more waiter, the quickest draw of
        # several would take it and the picks would follow each other sooner.
        seen = replace(observed(60, pick_ms=100.0), handoff_ms={"warehouse-service":
                                                               [10.0, 190.0]})
        sim = Simulation(seen, Policy("cap1", wip_caps={"warehouse-service": 1}),
                         random.Random(5), recorded_caps={"warehouse-service": 1})
        sim.run()
        picks = sorted(sim.spans["warehouse-service"])
        gaps = [b[0] - a[1] for a, b in pairwise(picks)]
        assert sum(gaps) / len(gaps) == pytest.approx(0.1, rel=0.2)

    def test_a_hand_off_is_measured_from_the_slot_the_call_took(self):
        # Cap 2: two calls end at 1.00 s and 1.02 s; two waiting calls start at 1.03 s and
        # 1.05 s. Each took the slot freed first: 30 ms each, not 10 ms (after 1.02 s).
        calls = [(0.0, 0.0, 1.0), (0.0, 0.0, 1.02), (0.0, 1.03, 2.0), (0.0, 1.05, 2.1)]
        assert _handoffs(calls, 2) == pytest.approx([30.0, 30.0])
        # A call that was not waiting (ready after the slot freed) measures no hand-off.
        assert _handoffs([(0.0, 0.0, 1.0), (1.5, 1.6, 2.0)], 1) == []


class TestEngineRules:
    def test_recoverable_failures_are_retried_with_the_steps_backoff(self):
        failing = [Outcome(5.0, "SERVICE_UNAVAILABLE", ErrorType.SERVICE_UNAVAILABLE, True)]
        # Half the picks fail recoverably; the default policy retries after 1 s, 2 s, 4 s.
        result = simulate(observed(30, failures=failing), Policy("p"), random.Random(7))
        assert result.kpis["completed"] + result.kpis["compensated"] == 30
        assert result.kpis["lead_time_p95_s"] >= 1.0

    def test_unrecoverable_failures_compensate(self):
        rejected = [Outcome(5.0, "ITEM_NOT_FOUND", ErrorType.VALIDATION_ERROR, False)] * 3
        result = simulate(observed(20, failures=rejected), Policy("p"), random.Random(2))
        assert result.kpis["compensated"] > 0
        assert result.kpis["completed"] + result.kpis["compensated"] == 20
        # The undo calls (unassign, release) were simulated on their services.
        assert max(p["in_flight"] for p in result.wip["robotics-service"]) >= 1

    def test_release_holds_waveless_work_until_its_lanes_batch(self):
        result = simulate(observed(25, lane=(5, 1000)), Policy("p", adaptive=False),
                          random.Random(1))
        # Five batches of five, one a second: the last waits four seconds or more.
        assert result.kpis["release_wait_p95_s"] >= 3.5

    def test_a_policys_batch_size_replaces_the_recorded_lanes(self):
        small = simulate(observed(25, lane=(5, 1000)), Policy("p", adaptive=False),
                         random.Random(1)).kpis
        large = simulate(observed(25, lane=(5, 1000)),
                         Policy("p", batch_size=25, adaptive=False), random.Random(1)).kpis
        assert large["release_wait_p95_s"] < small["release_wait_p95_s"]

    def test_release_pauses_while_a_service_fails_half_its_calls(self):
        # Most picks fail (recoverably): the observed error rate pauses release, as the
        # release loop pauses on the load read model's error rate.
        failing = [Outcome(5.0, "SERVICE_UNAVAILABLE", ErrorType.SERVICE_UNAVAILABLE, True)] * 4
        paused = simulate(observed(40, every_s=0.5, failures=failing), Policy("p"),
                          random.Random(9)).kpis
        healthy = simulate(observed(40, every_s=0.5), Policy("p"), random.Random(9)).kpis
        # Failures and their retries come after release: only the pause can delay it.
        assert paused["release_wait_p95_s"] > healthy["release_wait_p95_s"] + 1.0

    def test_cut_offs_missed_are_counted(self):
        result = simulate(observed(10, cut_off_s=3.0),
                          Policy("p", wip_caps={"warehouse-service": 1}), random.Random(1))
        assert result.kpis["missed_cutoffs"] >= 5


class TestCutoffUrgency:
    """A policy's `cutoff_urgency_ms` goes to the same `plan_batch` as the release loop's."""

    def window(self) -> Observed:
        # Ten HIGH orders with a far cut-off, then ten NORMAL ones due in 4 s, all at once;
        # release (two a second) is the bottleneck.
        base = observed(20, lane=(2, 1000))
        arrivals = [replace(a, priority="HIGH" if i < 10 else "NORMAL",
                            cut_off=T0 + (timedelta(hours=1) if i < 10 else timedelta(seconds=4)))
                    for i, a in enumerate(base.arrivals)]
        return replace(base, arrivals=arrivals)

    def test_releasing_urgent_normal_orders_first_saves_their_cut_offs(self):
        before = simulate(self.window(), Policy("priority", adaptive=False),
                          random.Random(1)).kpis
        after = simulate(self.window(), Policy("urgency", adaptive=False,
                                               cutoff_urgency_ms=10_000), random.Random(1)).kpis
        assert before["missed_cutoffs"] == 10  # every NORMAL order waits behind the HIGH ones
        assert after["missed_cutoffs"] <= 2
        assert after["completed"] == before["completed"] == 20

    def test_zero_is_off_and_keeps_todays_order(self):
        off = simulate(self.window(), Policy("off", adaptive=False, cutoff_urgency_ms=0),
                       random.Random(1)).kpis
        default = simulate(self.window(), Policy("default", adaptive=False),
                           random.Random(1)).kpis
        assert off == default

    def test_a_policy_leaving_it_open_takes_the_actual_one(self):
        actual = Policy("actual", cutoff_urgency_ms=60_000)
        assert Policy("p").over(actual).cutoff_urgency_ms == 60_000
        assert Policy("p", cutoff_urgency_ms=0).over(actual).cutoff_urgency_ms == 0
        assert Policy("p", cutoff_urgency_ms=5).to_dict()["cutoff_urgency_ms"] == 5


class TestDeterminism:
    def test_the_same_seed_gives_the_same_result(self):
        failing = [Outcome(5.0, "SERVICE_UNAVAILABLE", ErrorType.SERVICE_UNAVAILABLE, True),
                   Outcome(300.0), Outcome(1200.0)]
        runs = [simulate(observed(50, every_s=0.1, failures=failing), Policy("p"),
                         random.Random(42)) for _ in range(2)]
        assert runs[0].kpis == runs[1].kpis and runs[0].wip == runs[1].wip

    def test_another_seed_draws_differently(self):
        failing = [Outcome(5.0, "SERVICE_UNAVAILABLE", ErrorType.SERVICE_UNAVAILABLE, True),
                   Outcome(300.0), Outcome(1200.0)]
        a, b = (simulate(observed(50, every_s=0.1, failures=failing), Policy("p"),
                         random.Random(seed)).kpis for seed in (1, 2))
        assert a != b

    def test_a_run_past_its_event_bound_stops_with_a_limit(self):
        with pytest.raises(SimulationLimit):
            simulate(observed(20), Policy("p"), random.Random(1), max_events=50)


class TestKpis:
    def test_throughput_lead_times_and_cut_offs(self):
        records = [Record(T0, T0, T0 + timedelta(seconds=10 * (i + 1)), "COMPLETED",
                          T0 + timedelta(seconds=25)) for i in range(4)]
        records.append(Record(T0, T0, T0 + timedelta(seconds=5), "COMPENSATED"))
        k = kpis(records, T0)
        assert k["completed"] == 4 and k["compensated"] == 1
        assert k["throughput_per_hour"] == pytest.approx(4 / (40 / 3600))
        assert k["lead_time_p50_s"] == 25.0
        assert k["missed_cutoffs"] == 2
        assert k["compensation_rate"] == 0.2

    def test_wip_series_takes_each_buckets_peak(self):
        series = wip_series({"s": [(0.0, 2.0), (1.0, 3.0), (5.0, 6.0)]}, 10.0, points=10)
        assert [p["in_flight"] for p in series["s"]] == [1, 2, 1, 0, 0, 1, 0, 0, 0, 0]

    def test_calibration_says_when_a_kpi_is_off(self):
        actual = {"completed": 100, "throughput_per_hour": 1000.0, "lead_time_p50_s": 10.0,
                  "lead_time_p95_s": 20.0, "missed_cutoffs": 0, "compensated": 0}
        assert calibration(actual, actual)["within_tolerance"] is True
        off = calibration(actual, {**actual, "lead_time_p95_s": 30.0})
        assert off["within_tolerance"] is False
        assert off["checks"]["lead_time_p95_s"]["ok"] is False


class TestPolicy:
    @pytest.mark.parametrize("fields", [{"batch_size": 0}, {"interval_ms": 10},
                                        {"wip_caps": {"warehouse-service": 0}},
                                        {"ageing_ms": -1}, {"name": ""},
                                        {"cutoff_urgency_ms": -1},
                                        {"cutoff_urgency_ms": 1.5}])
    def test_an_invalid_policy_is_refused(self, fields):
        with pytest.raises(InvalidValue):
            Policy(**{"name": "p", **fields})
