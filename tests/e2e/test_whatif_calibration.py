"""What-if against reality: real `wes worker` processes run waveless orders through the
simulated services (a known pick latency, a WIP cap); the what-if of that window must
reproduce it (calibration), and its prediction for a doubled cap must match a real run of
the same arrivals with that cap."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from uuid import UUID

import pytest

from application.whatif.service import WhatIfRequest, WhatIfSettings, run
from application.workflows import Workflows, utc_now
from domain.simulation.kpis import calibration
from domain.simulation.model import Policy
from tests.support.processes import output, spawn_wes, spawn_worker, stop
from tests.support.waiting import wait_for_status

ORDERS = 40
PICK_MS = 250
LANE = {"WES_WAVELESS_BATCH_SIZE": "5", "WES_WAVELESS_INTERVAL_MS": "400"}


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
        for wf_id in ids:
            try:
                wait_for_status(app, wf_id, "COMPLETED", timeout=40)
            except AssertionError:
                raise AssertionError("\n".join(output(p)[-1500:] for p in [*workers, projector])
                                     + str(app.get_workflow(wf_id).snapshot_state())[:1500]
                                     ) from None
    finally:
        for process in [*workers, projector]:
            stop(process)
    return start, end, ids


def whatif(app: Workflows, start, end, ids, cap: int, policies=()):
    return run(app, lambda s, e, limit: ids, WhatIfRequest(start, end, list(policies), seed=7),
               WhatIfSettings(wip_caps={"warehouse-service": cap}, ageing_ms=60_000))


class TestCalibration:
    def test_the_simulated_actual_policy_reproduces_the_recorded_window(self, app, db,
                                                                        simulator):
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
    def test_a_doubled_cap_is_predicted_as_a_real_run_then_shows(self, app, db, simulator):
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
