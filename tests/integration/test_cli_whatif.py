"""`wes whatif` on the database: a recorded window of waveless work, a table or JSON, and
one-line errors for bad input."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest

from application.waveless import WavelessSettings
from application.workflows import utc_now
from bootstrap.container import engine_over, open_workflows, projector_runner, read_model_views
from projections.waveless_signals import waveless_signals
from tests.integration.test_cli import wes
from tests.support.waiting import wait_for, wait_for_status

STEPS = [{"step_id": "pick", "service": "warehouse-service", "operation": "pick"},
         {"step_id": "pack", "service": "packing-service", "operation": "pack"}]


def pick(call):
    time.sleep(0.02)
    return {"picked": True}


@pytest.fixture(scope="module")
def window(server):
    """Ten waveless workflows run through the engine in a schema of this module's own."""
    import uuid

    from application import database

    db = server.with_schema(f"t_{uuid.uuid4().hex[:12]}")
    database.ensure_database(db)
    app = open_workflows(db)
    models = read_model_views(db, app)
    runner = projector_runner(models)
    engine = engine_over(app, {"warehouse-service": pick,
                                 "packing-service": lambda call: {"packed": True}})
    worker = engine.worker(concurrency=2, poll_seconds=0.05)
    releaser = engine.releaser(waveless_signals(models), WavelessSettings(batch_size=3,
                                                                          interval_ms=200))
    app.waveless_defaults = (3, 200)
    runner.start()
    worker.start()
    releaser.start()
    try:
        start = utc_now()
        ids = [app.start_workflow(steps=STEPS, workflow_type="PICKING", waveless=True,
                                  input={"orderId": f"C-{i}"}).workflow_id for i in range(10)]
        end = utc_now() + timedelta(milliseconds=10)
        for wf_id in ids:
            wait_for_status(app, wf_id, "COMPLETED", timeout=30)
        wait_for(lambda: all((r := models.progress.get(i)) is not None
                             and r.status == "COMPLETED" for i in ids),
                 timeout=10, message="projected")
        yield db, start, end
    finally:
        engine.close()
        runner.stop()
        models.close()
        app.close()


class TestWhatIfCommand:
    def test_prints_json_with_the_actual_kpis_calibration_and_each_policy(self, window,
                                                                         tmp_path):
        db, start, end = window
        (tmp_path / "big.json").write_text(json.dumps({"batch_size": 10}))
        (tmp_path / "capped.json").write_text(json.dumps(
            [{"name": "capped", "wip_caps": {"warehouse-service": 1},
              "cutoff_urgency_ms": 30_000}]))
        result = wes(db, "whatif", "--from", start.isoformat(), "--to", end.isoformat(),
                     "--policy", str(tmp_path / "big.json"),
                     "--policy", str(tmp_path / "capped.json"), "--json", "--seed", "4")
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["actual"]["completed"] == 10
        assert [r["policy"]["name"] for r in report["results"]] == ["big", "capped"]
        assert report["results"][1]["policy"]["cutoff_urgency_ms"] == 30_000
        assert "within_tolerance" in report["calibration"]

    def test_prints_a_table_and_says_how_calibration_went(self, window):
        db, start, end = window
        result = wes(db, "whatif", "--from", start.isoformat(), "--to", end.isoformat())
        assert result.returncode == 0, result.stderr
        assert "lead_time_p95_s" in result.stdout and "actual (simulated)" in result.stdout
        assert "calibration:" in result.stdout or "calibration OFF" in result.stdout

    @pytest.mark.parametrize(("args", "reason"), [
        (["--from", "yesterday", "--to", "2026-01-01T00:00:00"], "not an ISO time"),
        (["--from", "2020-01-01T00:00:00", "--to", "2020-01-01T01:00:00"], "no workflows"),
        (["--from", "2020-01-02T00:00:00", "--to", "2020-01-01T00:00:00"], "after from"),
        (["--policy", "{missing}"], "cannot read policy file"),
        (["--policy", "{bad}"], "invalid policy"),
        (["--policy", "{unknown}"], "unknown fields"),
        (["--policy", "{urgency}"], "cutoff_urgency_ms"),
    ])
    def test_bad_input_exits_non_zero_with_a_one_line_reason(self, window, tmp_path, args,
                                                            reason):
        db, start, end = window
        (tmp_path / "bad.json").write_text(json.dumps({"batch_size": 0}))
        (tmp_path / "unknown.json").write_text(json.dumps({"colour": "blue"}))
        (tmp_path / "urgency.json").write_text(json.dumps({"cutoff_urgency_ms": -5}))
        files = {"missing": str(tmp_path / "nope.json"), "bad": str(tmp_path / "bad.json"),
                 "unknown": str(tmp_path / "unknown.json"),
                 "urgency": str(tmp_path / "urgency.json")}
        args = [a.format(**files) for a in args]
        if "--from" not in args:
            args = ["--from", start.isoformat(), "--to", end.isoformat(), *args]
        result = wes(db, "whatif", *args)
        assert result.returncode != 0
        assert reason in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
