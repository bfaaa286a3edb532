"""WIP slots in PostgreSQL: a cap holds across gates (processes), a lease that is not
renewed gives its slot back, and freeing a slot hands a held step back to the queue."""

from __future__ import annotations

import time

from application.wip import WipGate
from application.workflows import Workflows
from bootstrap.container import engine_over
from tests.support.waiting import wait_for_status

STEPS = [{"step_id": "pick", "service": "warehouse-service", "operation": "pick"}]


class TestSlots:
    def test_a_cap_holds_across_gates_and_a_freed_slot_can_be_taken_again(self, app):
        one, other = (WipGate(app.store, {"warehouse-service": 2}) for _ in range(2))
        first = one.acquire("warehouse-service", "a", "w1")
        second = other.acquire("warehouse-service", "b", "w2")
        assert first and second and first.number != second.number
        assert one.acquire("warehouse-service", "c", "w1") is None
        assert other.in_flight() == {"warehouse-service": 2}
        one.release(first)
        assert other.acquire("warehouse-service", "c", "w2") is not None

    def test_an_unrenewed_lease_gives_its_slot_back(self, app):
        dying = WipGate(app.store, {"warehouse-service": 1}, lease_seconds=0.3)
        survivor = WipGate(app.store, {"warehouse-service": 1}, lease_seconds=0.3)
        assert dying.acquire("warehouse-service", "a", "killed") is not None
        assert survivor.acquire("warehouse-service", "b", "alive") is None
        time.sleep(0.5)  # nobody renews "killed"'s lease
        assert survivor.acquire("warehouse-service", "b", "alive") is not None

    def test_a_renewed_lease_keeps_its_slot(self, app):
        holder = WipGate(app.store, {"warehouse-service": 1}, lease_seconds=0.3)
        other = WipGate(app.store, {"warehouse-service": 1}, lease_seconds=0.3)
        assert holder.acquire("warehouse-service", "a", "w1") is not None
        for _ in range(4):
            time.sleep(0.15)
            holder.renew("w1")
        assert other.acquire("warehouse-service", "b", "w2") is None

    def test_a_gate_with_a_smaller_cap_keeps_to_its_own(self, app):
        wide = WipGate(app.store, {"warehouse-service": 3})
        narrow = WipGate(app.store, {"warehouse-service": 1})
        assert wide.acquire("warehouse-service", "a", "w1") is not None
        assert narrow.acquire("warehouse-service", "b", "w2") is None
        assert wide.acquire("warehouse-service", "b", "w1") is not None


class TestWorkersWithACap:
    def test_a_capped_step_waits_without_a_retry_and_is_handed_the_slot_when_it_frees(
            self, app: Workflows):
        running: list[int] = []
        peak: list[int] = [0]

        def pick(call):
            running.append(1)
            peak[0] = max(peak[0], len(running))
            time.sleep(0.15)
            running.pop()
            return {"picked": True}

        # Registered as a local activity: a capped service's steps still take a slot.
        engine = engine_over(app, {"warehouse-service": pick}, local=True)
        gate = WipGate(app.store, {"warehouse-service": 1}, lease_seconds=2)
        workers = [engine.worker(concurrency=3, poll_seconds=0.05, wip=gate) for _ in range(2)]
        for worker in workers:
            worker.start()
        try:
            ids = [app.start_workflow(steps=STEPS, workflow_type="PICKING",
                                      input={"orderId": f"G-{i}"}).workflow_id
                   for i in range(8)]
            for wf_id in ids:
                wait_for_status(app, wf_id, "COMPLETED", timeout=30)
        finally:
            engine.close()
        assert peak[0] == 1
        assert all(app.get_workflow(i).step("pick").attempts == 1 for i in ids)
        # The start of each pick was saved before its call, slot held: never two at once.
        spans = sorted((e.timestamp, 1) for i in ids for e in app.history(i)
                       if e.event_type == "StepStarted")
        spans += [(e.timestamp, -1) for i in ids for e in app.history(i)
                  if e.event_type == "StepExecuted"]
        level = most = 0
        for _, change in sorted(spans, key=lambda s: (s[0], s[1])):
            level += change
            most = max(most, level)
        assert most == 1


class TestHandBack:
    def test_freeing_a_slot_hands_the_held_item_back_to_the_queue_at_once(self, app):
        gate = WipGate(app.store, {"warehouse-service": 1}, recheck_seconds=60)
        wf_id = app.start_workflow(steps=STEPS, workflow_type="PICKING",
                                   input={"orderId": "H-1"}).workflow_id
        slot = gate.acquire("warehouse-service", "other", "w0")
        assert slot is not None
        [claim] = app.store.work_queue.claim("w1", app.clock(), 1, 5.0)
        gate.hold(claim.workflow_id, "warehouse-service", "w1")
        assert app.store.work_queue.claim("w2", app.clock(), 1, 5.0) == []  # held for the re-check
        gate.release(slot)
        assert [c.workflow_id for c in app.store.work_queue.claim("w2", app.clock(), 1, 5.0)] == [wf_id]
