"""Figure `whatif`: a recorded day of 15,000 four-step orders simulated under its policy.

The recorded day is synthetic (arrivals over 24 hours with a morning and an afternoon
peak, three priorities, a third with cut-offs, one waveless lane; per operation 500
observed calls with skewed durations, pick failing 2 % recoverably and 0.2 % for good),
so the figure measures the simulator, not the extraction from the event store. The
simulated policy caps the pick at 4 in flight. The baseline is the same 15,000 sagas
driven straight through on their aggregates (create, release, four steps, complete) with
no clock, no release rounds and no servers: the domain code the simulation is made of.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from datetime import UTC, datetime, timedelta

from application.builtin_definitions import ORDER_FULFILLMENT
from bench.report import Figure, ratio
from domain.enums import ErrorType
from domain.simulation.model import FORWARD, Arrival, Observed, OperationModel, Outcome, Policy
from domain.simulation.run import simulate
from domain.step import StepResult
from domain.workflow import Workflow

TARGET_S = 10.0
DAY = datetime(2026, 12, 1, tzinfo=UTC)
OPERATIONS = {("inventory-service", "reserve"): 40.0, ("robotics-service", "assign"): 60.0,
              ("warehouse-service", "pick"): 900.0, ("packing-service", "pack"): 300.0}
KEYS = {("inventory-service", "reserve"): ("reservationId",),
        ("robotics-service", "assign"): ("robotId",)}


def recorded_day(orders: int, seed: int = 16) -> Observed:
    """A synthetic day of observations (see the module's docstring)."""
    rng = random.Random(seed)
    steps = tuple(ORDER_FULFILLMENT["steps"])
    times = sorted(_arrival_second(rng) for _ in range(orders))
    arrivals = []
    for i, second in enumerate(times):
        at = DAY + timedelta(seconds=second)
        cut_off = at + timedelta(minutes=rng.choice([10, 30, 60])) if i % 3 == 0 else None
        arrivals.append(Arrival(uuid.UUID(int=i + 1), at, rng.choice(["HIGH", "NORMAL", "LOW"]),
                                "ORDER_FULFILLMENT", "order-fulfillment", steps,
                                {"orderId": f"B-{i}", "items": [{"sku": "S", "quantity": 1}]},
                                cut_off, (10, 1000)))
    operations = {}
    for (service, operation), mean in OPERATIONS.items():
        calls = [Outcome(rng.lognormvariate(math.log(mean), 0.4)) for _ in range(500)]
        if operation == "pick":
            calls[:10] = [Outcome(30.0, "SERVICE_UNAVAILABLE", ErrorType.SERVICE_UNAVAILABLE,
                                  True)] * 10
            calls[10] = Outcome(20.0, "ITEM_NOT_FOUND", ErrorType.RESOURCE_NOT_FOUND, False)
        operations[(service, operation, FORWARD)] = OperationModel(calls)
    gaps = [rng.uniform(1.0, 8.0) for _ in range(200)]
    return Observed(DAY, DAY + timedelta(days=1), arrivals, operations, gaps, 16, {}, KEYS)


def _arrival_second(rng: random.Random) -> float:
    # Two peaks (10:00 and 15:00) over a flat base.
    kind = rng.random()
    if kind < 0.35:
        return min(max(rng.gauss(10 * 3600, 5400), 0.0), 86_399.0)
    if kind < 0.7:
        return min(max(rng.gauss(15 * 3600, 5400), 0.0), 86_399.0)
    return rng.uniform(0, 86_399.0)


def straight_through(observed: Observed) -> None:
    """The baseline: each saga's aggregate driven to COMPLETED with no simulation."""
    for arrival in observed.arrivals:
        wf = Workflow.create(steps=arrival.steps, now=arrival.at, input=dict(arrival.input),
                             workflow_type=arrival.workflow_type, priority=arrival.priority)
        wf.enable_waveless(arrival.at, 10, 1000)
        wf.release_in_batch(arrival.at, "b", 1)
        for step_id, step in wf.steps.items():
            wf.start_step(step_id, arrival.at)
            keys = KEYS.get((step.spec.service, step.spec.operation), ())
            wf.record_step_result(step_id, StepResult(step_id, {k: "x" for k in keys}, 1),
                                  arrival.at)
        wf.complete(arrival.at)
        wf.collect_events()


def measure(*, orders: int = 15_000) -> Figure:
    observed = recorded_day(orders)
    policy = Policy("actual", wip_caps={"warehouse-service": 4})
    began, cpu = time.perf_counter(), time.process_time()
    result = simulate(observed, policy, random.Random(1))
    seconds, cpu_seconds = round(time.perf_counter() - began, 3), time.process_time() - cpu
    began = time.perf_counter()
    straight_through(observed)
    baseline = round(time.perf_counter() - began, 3)
    return Figure(
        "whatif", seconds, "s", baseline, ratio(seconds, baseline),
        f"a day of 15,000 orders < {TARGET_S:g} s",
        baseline_name=f"the same {orders:,} sagas driven straight through on their "
                      "aggregates (no clock, release or servers)",
        met=seconds < TARGET_S if orders >= 15_000 else None,
        note=f"{orders:,} orders, {result.events:,} simulated events, CPU {cpu_seconds:.2f} s",
        details={"orders": orders, "simulated_events": result.events,
                 "cpu_seconds": round(cpu_seconds, 3), "kpis": result.kpis})
