"""`POST /v1/whatif` over HTTP: a recorded window of waveless work replayed through other
policies; bad requests are clear problems and record nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from application.waveless import WavelessSettings
from application.workflows import Workflows, utc_now
from bootstrap.container import engine_over
from projections.waveless_signals import waveless_signals
from tests.e2e import api_support
from tests.e2e.api_support import assert_problem, build_app
from tests.support.waiting import wait_for, wait_for_status

read_models = api_support.read_models
make_client = api_support.make_client

STEPS = [{"step_id": "pick", "service": "warehouse-service", "operation": "pick"},
         {"step_id": "pack", "service": "packing-service", "operation": "pack"}]


def slow_pick(call):
    time.sleep(0.03)
    return {"picked": True}


@pytest.fixture
def recorded(app: Workflows, read_models) -> Iterator[tuple[TestClient, datetime, datetime]]:
    """The API (projectors in-process), an engine worker and the release loop; twelve
    waveless workflows and three ordinary ones, run to the end."""
    engine = engine_over(app, {"warehouse-service": slow_pick,
                                 "packing-service": lambda call: {"packed": True}})
    worker = engine.worker(concurrency=2, poll_seconds=0.05)
    releaser = engine.releaser(waveless_signals(read_models.views),
                               WavelessSettings(batch_size=4, interval_ms=200))
    app.waveless_defaults = (4, 200)
    with TestClient(build_app(app, read_models)) as client:
        worker.start()
        releaser.start()
        try:
            start = utc_now()
            ids = []
            for i in range(15):
                body = {"steps": STEPS, "type": "PICKING", "waveless": i < 12,
                        "priority": ["HIGH", "NORMAL", "LOW"][i % 3],
                        "input": {"orderId": f"W-{i}"}}
                response = client.post("/v1/workflows", json=body)
                assert response.status_code == 201, response.text
                ids.append(response.json()["id"])
            end = utc_now() + timedelta(milliseconds=10)
            for wf_id in ids:
                wait_for_status(app, wf_id, "COMPLETED", timeout=30)
            wait_for(lambda: len(client.get("/v1/workflows", params={
                "status": "COMPLETED", "limit": 50}).json()["items"]) == 15,
                     timeout=10, message="progress rows projected")
            yield client, start, end
        finally:
            engine.close()


def head(app: Workflows) -> int:
    return app.recorder.max_notification_id() or 0


def window(start: datetime, end: datetime, **extra) -> dict:
    return {"from": start.isoformat(), "to": end.isoformat(), **extra}


class TestWhatIf:
    def test_answers_actual_calibration_and_each_policy_side_by_side(self, app, recorded):
        client, start, end = recorded
        before = head(app)
        body = window(start, end, seed=3, policies=[
            {"name": "one big lane", "batch_size": 20, "interval_ms": 100,
             "cutoff_urgency_ms": 30_000},
            {"name": "pick capped at 1", "wip_caps": {"warehouse-service": 1}}])
        response = client.post("/v1/whatif", json=body)
        assert response.status_code == 200, response.text
        report = response.json()
        assert report["actual"]["completed"] == 15
        assert {"completed", "throughput_per_hour", "lead_time_p50_s", "lead_time_p95_s",
                "missed_cutoffs", "compensated", "release_wait_p50_s",
                "compensation_rate"} <= set(report["actual"])
        calibration = report["calibration"]
        assert calibration["policy"]["name"] == "actual"
        assert isinstance(calibration["within_tolerance"], bool)
        assert set(calibration["checks"]) >= {"throughput_per_hour", "lead_time_p95_s"}
        assert [r["policy"]["name"] for r in report["results"]] == ["one big lane",
                                                                     "pick capped at 1"]
        assert report["results"][0]["policy"]["cutoff_urgency_ms"] == 30_000
        capped = report["results"][1]
        assert capped["policy"]["wip_caps"] == {"warehouse-service": 1}
        assert max(p["in_flight"] for p in capped["wip"]["warehouse-service"]) == 1
        assert report["observed"]["waveless"] == 12
        assert head(app) == before  # a what-if records nothing

    def test_the_same_seed_answers_the_same(self, recorded):
        client, start, end = recorded
        body = window(start, end, seed=11, policies=[{"name": "p", "batch_size": 2}])
        first, second = (client.post("/v1/whatif", json=body).json() for _ in range(2))
        assert first["results"] == second["results"]
        assert first["calibration"]["kpis"] == second["calibration"]["kpis"]


class TestBadInput:
    def test_an_empty_window_is_a_422(self, app, recorded):
        client, start, _ = recorded
        before = head(app)
        earlier = start - timedelta(hours=2)
        response = client.post("/v1/whatif", json=window(earlier, earlier + timedelta(hours=1)))
        body = assert_problem(response, 422, "whatif")
        assert "no workflows" in body["detail"]
        assert head(app) == before

    def test_a_window_without_waveless_work_is_a_422(self, app, read_models):
        engine = engine_over(app, {"warehouse-service": lambda call: {"picked": True},
                                     "packing-service": lambda call: {"packed": True}})
        worker = engine.worker(concurrency=1, poll_seconds=0.05)
        with TestClient(build_app(app, read_models)) as client:
            worker.start()
            try:
                start = utc_now()
                response = client.post("/v1/workflows", json={
                    "steps": STEPS, "type": "PICKING", "input": {"orderId": "X"}})
                wf_id = response.json()["id"]
                wait_for_status(app, wf_id, "COMPLETED", timeout=30)
                wait_for(lambda: client.get(f"/v1/workflows/{wf_id}").status_code == 200,
                         timeout=10, message="projected")
                before = head(app)
                response = client.post("/v1/whatif", json=window(start, utc_now()))
            finally:
                engine.close()
        body = assert_problem(response, 422, "whatif")
        assert "no waveless work" in body["detail"]
        assert head(app) == before

    @pytest.mark.parametrize("policy", [
        {"name": "p", "batch_size": 0}, {"name": "p", "interval_ms": 10},
        {"name": "p", "wip_caps": {"warehouse-service": 0}}, {"name": ""},
        {"name": "p", "colour": "blue"}, {"batch_size": 3},
        {"name": "p", "cutoff_urgency_ms": -1}, {"name": "p", "cutoff_urgency_ms": "soon"},
        {"name": "p", "cutoff_urgency_ms": 1.5}])
    def test_an_invalid_policy_is_a_422(self, app, read_models, policy):
        with TestClient(build_app(app, read_models, projectors=False)) as client:
            before = head(app)
            now = datetime.now(UTC)
            response = client.post("/v1/whatif", json=window(now - timedelta(hours=1), now,
                                                             policies=[policy]))
        assert_problem(response, 422)
        assert head(app) == before

    def test_a_window_backwards_is_a_422_and_one_too_long_a_413(self, app, read_models):
        now = datetime.now(UTC)
        with TestClient(build_app(app, read_models, projectors=False)) as client:
            assert_problem(client.post("/v1/whatif", json=window(now, now - timedelta(1))),
                           422)
            assert_problem(client.post("/v1/whatif", json=window(now - timedelta(days=30),
                                                                 now)), 413)
            assert_problem(client.post("/v1/whatif", json={"from": "0", "to": "1"}), 422)

    def test_a_reader_may_not_ask(self, make_client):
        now = datetime.now(UTC)
        client = make_client("reader-key")
        response = client.post("/v1/whatif", json=window(now - timedelta(hours=1), now))
        assert_problem(response, 403)
