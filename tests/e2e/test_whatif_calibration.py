"""What-if against reality: real `wes worker` processes run waveless orders through the
simulated services (a known pick latency, a WIP cap); the what-if of that window must
reproduce it (calibration), and its prediction for a doubled cap must match a real run of
the same arrivals with that cap."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from uuid import UUID

import httpx
import pytest

from application.whatif.service import WhatIfRequest, WhatIfSettings, run
from application.workflows import Workflows, utc_now
from cli.background import free_port
from domain.simulation.kpis import calibration
from domain.simulation.model import Policy
from simulator.client import SimulatorClient
from tests.support.processes import output, spawn_wes, spawn_worker, stop
from tests.support.waiting import wait_for, wait_for_status

ORDERS = 40
PICK_MS = 250
LANE = {"WES_WAVELESS_BATCH_SIZE": "5", "WES_WAVELESS_INTERVAL_MS": "400"}


@pytest.fixture
def services(db) -> Iterator[SimulatorClient]:
    """The simulated services in a process of their own, so that this test process's
    polling does not slow their answers down."""
    port = free_port()
    process = spawn_wes(db, "http://unused", "services", "--port", str(port))
    client = SimulatorClient(f"http://127.0.0.1:{port}")
    try:
        wait_for(lambda: _answers(client), timeout=30, message="the services to answer")
        yield client
    finally:
        client.close()
        stop(process)


def _answers(client: SimulatorClient) -> bool:
    try:
        client.in_flight()
    except httpx.HTTPError:
        return False
    return True


def wait_all(app: Workflows, ids: list[UUID], timeout: float) -> None:
    """Every workflow COMPLETED, looked at every quarter of a second."""
    deadline = time.monotonic() + timeout
    left = list(ids)
    while left:
        left = [i for i in left if app.get_workflow(i).status != "COMPLETED"]
        if left and time.monotonic() > deadline:
            raise AssertionError(f"{len(left)} workflows not COMPLETED after {timeout} s")
        time.sleep(0.25)


def run_for_real(app: Workflows, db, simulator, cap: int, tag: str):
    """Starts ORDERS waveless orders, one every 100 ms, with the pick capped at `cap`, and
    waits for all of them; returns the window and the ids."""
    env = {**LANE, "WES_WIP_CAPS": json.dumps({"warehouse-service": cap})}
    projector = spawn_wes(db, simulator.base_url, "projections", "run")
    workers = [spawn_worker(db, simulator.base_url, concurrency=4, **env) for _ in range(2)]
    app.waveless_defaults = (5, 400)
    try:
        # Warm up: the processes are up, the projector follows and one worker releases.
        warm = app.start_workflow(definition="order-fulfillment", waveless=True,
                                  input={"orderId": f"{tag}-warm", "items": [{"sku": "S",
                                                                              "quantity": 1}]})
        wait_for_status(app, warm.workflow_id, "COMPLETED", timeout=60)
        start = utc_now()
        ids: list[UUID] = []
        for i in range(ORDERS):
            ids.append(app.start_workflow(
                definition="order-fulfillment", waveless=True,
                input={"orderId": f"{tag}-{i}", "items": [{"sku": "S", "quantity": 1}]},
            ).workflow_id)
            time.sleep(0.1)
        end = utc_now() + timedelta(milliseconds=50)
        try:
            wait_all(app, ids, timeout=90)
        except AssertionError as e:
            raise AssertionError(f"{e}\n" + "\n".join(output(p)[-1500:]
                                                       for p in [*workers, projector])) from None
    finally:
        for process in [*workers, projector]:
            stop(process)
    return start, end, ids


def whatif(app: Workflows, start, end, ids, cap: int, policies=()):
    return run(app, lambda s, e, limit: ids, WhatIfRequest(start, end, list(policies), seed=7),
               WhatIfSettings(wip_caps={"warehouse-service": cap}, ageing_ms=60_000))


# Timing-sensitive on a shared two-core machine: in one of five full runs the simulated
# lead-time p50 missed the recorded one by 0.81 s against 0.79 s allowed (20 %). Run with
# `pytest -m slow`; the pure calibration and determinism tests stay in the default run.
@pytest.mark.slow
class TestCalibration:
    def test_the_simulated_actual_policy_reproduces_the_recorded_window(self, app, db,
                                                                        services):
        simulator = services
        simulator.add_fault("warehouse-service", "latency", "pick", latency_ms=PICK_MS)
        start, end, ids = run_for_real(app, db, simulator, cap=1, tag="CAL")
        report = whatif(app, start, end, ids, cap=1)
        checks = report["calibration"]["checks"]
        assert report["actual"]["completed"] == ORDERS, report["actual"]
        # The cap bound the run: picks one at a time, in reality and in the simulation.
        assert max(p["in_flight"] for p in report["actual_wip"]["warehouse-service"]) == 1
        assert max(p["in_flight"] for p in report["calibration"]["wip"]["warehouse-service"]) == 1
        assert report["calibration"]["within_tolerance"], json.dumps(checks, indent=1)


@pytest.mark.slow
class TestPrediction:
    def test_a_doubled_cap_is_predicted_as_a_real_run_then_shows(self, app, db, services):
        simulator = services
        simulator.add_fault("warehouse-service", "latency", "pick", latency_ms=PICK_MS)
        start, end, ids = run_for_real(app, db, simulator, cap=1, tag="P1")
        report = whatif(app, start, end, ids, cap=1,
                        policies=[Policy("cap 2", wip_caps={"warehouse-service": 2})])
        assert report["calibration"]["within_tolerance"], report["calibration"]["checks"]
        predicted = report["results"][0]["kpis"]
        start2, end2, ids2 = run_for_real(app, db, simulator, cap=2, tag="P2")
        reality = whatif(app, start2, end2, ids2, cap=2)["actual"]
        agreement = calibration(reality, predicted)
        assert agreement["within_tolerance"], json.dumps(agreement["checks"], indent=1)
        # And the prediction is not the calibration again: the cap mattered.
        assert predicted["lead_time_p95_s"] < report["calibration"]["kpis"]["lead_time_p95_s"]
