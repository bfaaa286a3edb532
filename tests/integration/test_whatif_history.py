"""What the what-if learns from the events: each operation's calls with durations and
failures by kind, compensation calls, arrivals, and what actually happened."""

from __future__ import annotations

import random
import time

from application.engine.ports import StepCall
from application.engine.python_handler import PythonHandler
from application.whatif.history import extract
from application.whatif.store import stored_events
from application.workflows import Workflows, utc_now
from bootstrap.container import engine_over
from domain.simulation.model import FORWARD, UNDO, Policy
from domain.simulation.run import simulate
from tests.support.waiting import wait_for_status


def register(python: PythonHandler) -> None:
    """The saga's forward and undo operations, by operation."""

    def pick(call: StepCall):
        time.sleep(0.01)
        if call.input["orderId"] == "H-BAD":
            raise ValueError("no such item")  # unrecoverable
        if call.attempt == 1 and call.input["orderId"].endswith(("0", "5")):
            raise ConnectionError("aisle offline")  # recoverable: retried after 1 s
        return {"picked": True}

    python.register("inventory-service", lambda c: {"reservationId": "R"}, "reserve")
    python.register("inventory-service", lambda c: {"released": True}, "release")
    python.register("robotics-service", lambda c: {"robotId": "X"}, "assign")
    python.register("robotics-service", lambda c: {"unassigned": True}, "unassign")
    python.register("warehouse-service", pick, "pick")
    python.register("warehouse-service", lambda c: {"returned": True}, "return-to-stock")
    python.register("packing-service", lambda c: {"packed": True}, "pack")
    python.register("packing-service", lambda c: {"unpacked": True}, "unpack")


def test_extracts_calls_failures_compensations_and_what_happened(app: Workflows):
    engine = engine_over(app)
    register(engine.python)
    worker = engine.worker(concurrency=3, poll_seconds=0.05)
    worker.start()
    try:
        start = utc_now()
        ids = [app.start_workflow(definition="order-fulfillment",
                                  input={"orderId": f"H-{i}", "items": [{"sku": "S",
                                                                        "quantity": 1}]}
                                  ).workflow_id for i in range(10)]
        ids.append(app.start_workflow(definition="order-fulfillment", priority="HIGH",
                                      input={"orderId": "H-BAD", "items": [{"sku": "S", "quantity": 1}]}
                                      ).workflow_id)
        end = utc_now()
        for wf_id in ids:
            wait_for_status(app, wf_id, "COMPLETED", "COMPENSATED", timeout=30)
    finally:
        engine.close()
    recorded = extract(stored_events(app, ids), start, end)
    observed = recorded.observed
    assert len(observed.arrivals) == 11 and recorded.waveless == 0
    assert {a.priority for a in observed.arrivals} == {"NORMAL", "HIGH"}
    pick = observed.operations[("warehouse-service", "pick", FORWARD)].summary()
    assert pick["calls"] == 13  # 10 + 2 retried + the rejected one
    assert pick["failure_rate"] == {"NETWORK_ERROR": round(2 / 13, 4),
                                    "VALIDATION_ERROR (unrecoverable)": round(1 / 13, 4)}
    assert observed.operations[("robotics-service", "unassign", UNDO)].summary()["calls"] == 1
    assert observed.operations[("inventory-service", "release", UNDO)].summary()["calls"] == 1
    assert observed.output_keys[("robotics-service", "assign")] == ("robotId",)
    assert observed.engine_concurrency >= 1 and observed.dispatch_ms
    statuses = sorted(r.status for r in recorded.records)
    assert statuses == ["COMPENSATED"] + ["COMPLETED"] * 10
    # The simulation of it runs the same rules: retries and a compensation.
    result = simulate(observed, Policy("actual"), random.Random(5))
    assert result.kpis["completed"] + result.kpis["compensated"] == 11
