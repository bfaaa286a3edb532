"""The built-in order-fulfillment saga takes the seed's own input and completes with each
shape, through the engine against the simulated services over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from application.engine.registry import ServiceRegistry
from application.engine.worker import Worker
from application.workflows import Workflows
from bootstrap.container import engine_over
from simulator.client import SimulatorClient
from tests.support.waiting import wait_for_status

SHAPES: dict[str, dict[str, Any]] = {
    "orderId alone (seed inputParameters)": {"orderId": "ORD-12345"},
    "sku and quantity": {"orderId": "ORD-2", "sku": "SKU-12345", "quantity": 10},
    "items": {"orderId": "ORD-3", "items": [{"sku": "SKU-1", "quantity": 2},
                                            {"sku": "SKU-2", "quantity": 1}]},
}
LINES = {
    "orderId alone (seed inputParameters)": None,
    "sku and quantity": [{"sku": "SKU-12345", "quantity": 10}],
    "items": SHAPES["items"]["items"],
}


@pytest.fixture
def engine(app: Workflows, service_registry: ServiceRegistry) -> Iterator[Worker]:
    engine = engine_over(app, registry=service_registry)
    worker = engine.worker(concurrency=2, lease_seconds=2.0, poll_seconds=0.05)
    worker.start()
    yield worker
    engine.close()


class TestSeedInput:
    @pytest.mark.parametrize("shape", SHAPES)
    def test_each_accepted_shape_completes(self, app: Workflows, engine: Worker,
                                           simulator: SimulatorClient, shape: str) -> None:
        started = app.start_workflow(definition="order-fulfillment", input=SHAPES[shape])
        wf = wait_for_status(app, started.workflow_id, "COMPLETED", timeout=30)
        assert wf.definition_version == 2
        assert [wf.step(s).status.value for s in wf.steps] == ["COMPLETED"] * 4
        calls = simulator.calls(order_id=SHAPES[shape]["orderId"])
        assert [(c["service"], c["operation"]) for c in calls] == [
            ("inventory-service", "reserve"), ("robotics-service", "assign"),
            ("warehouse-service", "pick"), ("packing-service", "pack")]
        sent = [c["input"].get("items") for c in calls if c["operation"] != "assign"]
        assert sent == [LINES[shape]] * 3

    def test_compensation_undoes_the_lines_it_was_given(
            self, app: Workflows, engine: Worker, simulator: SimulatorClient) -> None:
        simulator.add_fault("warehouse-service", "unrecoverable", "pick")
        started = app.start_workflow(definition="order-fulfillment",
                                     input=SHAPES["sku and quantity"])
        wf = wait_for_status(app, started.workflow_id, "COMPENSATED", timeout=30)
        assert wf.compensated_steps == ["assign-robot", "reserve-inventory"]
        release = simulator.calls(operation="release", order_id="ORD-2")
        assert [c["input"]["reservationId"] for c in release] == \
            [wf.step("reserve-inventory").output["reservationId"]]
