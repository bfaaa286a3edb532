"""WIP caps hold for every step across real `wes worker` processes, and survive a SIGKILL.

Each pick takes a known time (a latency fault); the intervals from each pick's
StepStarted to its outcome (the engine holds the slot for longer than that) never overlap
more than the cap, and neither do the calls the service received.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from uuid import UUID

from application.workflows import Workflows
from simulator.client import SimulatorClient
from tests.support.processes import kill9, output, spawn_worker, stop
from tests.support.waiting import wait_for, wait_for_status

ITEMS = [{"sku": "SKU-1", "quantity": 1}]
PICK_MS = 300


def start(app: Workflows, order: str, **kwargs) -> UUID:
    return app.start_workflow(definition="order-fulfillment",
                              input={"orderId": order, "items": ITEMS}, **kwargs).workflow_id


def most_at_once(intervals: list[tuple[datetime, datetime]]) -> int:
    """The largest number of intervals open at one instant."""
    edges = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals],
                   key=lambda e: (e[0], e[1]))
    best = now = 0
    for _, change in edges:
        now += change
        best = max(best, now)
    return best


def pick_intervals(app: Workflows, ids: list[UUID]) -> list[tuple[datetime, datetime]]:
    """(start saved, outcome saved) of every pick attempt."""
    found = []
    for wf_id in ids:
        started = None
        for e in app.history(wf_id):
            if e.data.get("step_id") != "pick-items":
                continue
            if e.event_type == "StepStarted":
                started = e.timestamp
            elif e.event_type in ("StepExecuted", "StepFailed") and started is not None:
                found.append((started, e.timestamp))
                started = None
    return found


def call_intervals(simulator: SimulatorClient, latency_ms: int) -> list[tuple[datetime, datetime]]:
    """When each pick call was in the service: it is logged as it answers, after the delay."""
    calls = simulator.calls(operation="pick")
    ends = [datetime.fromisoformat(c["at"]) for c in calls]
    return [(end - timedelta(milliseconds=latency_ms), end) for end in ends]


class TestWipCapsAcrossWorkerProcesses:
    def test_a_cap_of_one_holds_every_pick_of_every_worker(self, app, db, simulator):
        simulator.add_fault("warehouse-service", "latency", "pick", latency_ms=PICK_MS)
        caps = {"WES_WIP_CAPS": json.dumps({"warehouse-service": 1})}
        workers = [spawn_worker(db, simulator.base_url, concurrency=4, **caps)
                   for _ in range(2)]
        try:
            ids = [start(app, f"CAP-{i}") for i in range(10)]
            for wf_id in ids:
                try:
                    wait_for_status(app, wf_id, "COMPLETED", timeout=60)
                except AssertionError:
                    raise AssertionError(output(workers[0])) from None
        finally:
            for process in workers:
                stop(process)
        picks = pick_intervals(app, ids)
        assert len(picks) == 10
        assert most_at_once(picks) == 1
        assert most_at_once(call_intervals(simulator, PICK_MS)) == 1
        # Waiting for a slot spends no retry: one attempt per pick.
        assert all(app.get_workflow(i).step("pick-items").attempts == 1 for i in ids)

    def test_without_a_cap_the_same_picks_overlap(self, app, db, simulator):
        # The control: the workers' concurrency alone lets picks run together.
        simulator.add_fault("warehouse-service", "latency", "pick", latency_ms=PICK_MS)
        workers = [spawn_worker(db, simulator.base_url, concurrency=4) for _ in range(2)]
        try:
            ids = [start(app, f"NOCAP-{i}") for i in range(10)]
            for wf_id in ids:
                wait_for_status(app, wf_id, "COMPLETED", timeout=60)
        finally:
            for process in workers:
                stop(process)
        assert most_at_once(pick_intervals(app, ids)) > 1

    def test_a_killed_workers_slot_comes_back_when_its_lease_expires(self, app, db, simulator):
        # The first pick hangs for 9 s; its worker is killed in the middle of it.
        simulator.add_fault("warehouse-service", "latency", "pick", latency_ms=9_000,
                            count=1, match={"orderId": "CAP-VICTIM"})
        caps = {"WES_WIP_CAPS": json.dumps({"warehouse-service": 1})}
        victim = spawn_worker(db, simulator.base_url, concurrency=2, **caps)
        first = start(app, "CAP-VICTIM")
        wait_for(lambda: app.get_workflow(first).step("pick-items").status == "EXECUTING",
                 timeout=20, message="the hanging pick is in flight")
        kill9(victim)
        killed_at = time.monotonic()
        survivor = spawn_worker(db, simulator.base_url, concurrency=2, **caps)
        try:
            others = [start(app, f"CAP-AFTER-{i}") for i in range(3)]
            for wf_id in others:
                wait_for_status(app, wf_id, "COMPLETED", timeout=60)
            # Within the lease (1.5 s) plus a re-check, not after the 9 s call.
            assert time.monotonic() - killed_at < 8
        finally:
            stop(survivor)
            simulator.wait_idle()
        picks = pick_intervals(app, others)
        assert most_at_once(picks) == 1
