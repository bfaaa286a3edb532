"""The `wes` command line: replay, worker queue repair, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC

import pytest

from application.workflows import Workflows
from cli.lines import stamp
from domain.step import StepResult
from domain.workflow_error import WorkflowError
from tests.support.processes import ROOT

ITEMS = [{"sku": "SKU-1", "quantity": 1}]


def wes(db, *args: str, columns: int = 200) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": db.dsn, "WES_SCHEMA": db.schema,
           "COLUMNS": str(columns)}
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def workflow_id(app: Workflows):
    wf_id = app.start_workflow(definition="order-fulfillment", driven_by="caller",
                               input={"orderId": "ORD-CLI", "items": ITEMS}).workflow_id
    app.start_step(wf_id, "reserve-inventory")
    app.execute_step(wf_id, "reserve-inventory",
                     StepResult.success("reserve-inventory", {"reservationId": "R-9"}, 7))
    return wf_id


def _error(code: str, recoverable: bool) -> WorkflowError:
    return WorkflowError.create(
        step_id="pick-items", service="warehouse-service", code=code,
        message="the warehouse could not pick the items of this order from their bins",
        error_type="SERVICE_UNAVAILABLE" if recoverable else "BUSINESS_RULE_VIOLATION",
        recoverable=recoverable)


@pytest.fixture
def compensated_id(app: Workflows):
    """A saga that retried pick-items, then failed for good and undid its two steps."""
    wf_id = app.start_workflow(definition="order-fulfillment", driven_by="caller",
                               input={"orderId": "ORD-COMP", "items": ITEMS}).workflow_id
    for step, output in (("reserve-inventory", {"reservationId": "R-1"}),
                         ("assign-robot", {"robotId": "ROBOT-7"})):
        app.start_step(wf_id, step)
        app.execute_step(wf_id, step, StepResult.success(step, output, 12))
    app.start_step(wf_id, "pick-items")
    app.handle_step_failure(wf_id, "pick-items", _error("WAREHOUSE_UNAVAILABLE",
                                                        True))
    app.start_step(wf_id, "pick-items")
    app.handle_step_failure(wf_id, "pick-items", _error("PICK_LOCATION_UNAVAILABLE",
                                                        False))
    for step in ("assign-robot", "reserve-inventory"):
        app.mark_step_compensated(wf_id, step, {"undone": True})
    app.complete_compensation(wf_id)
    return wf_id


class TestReplay:
    def test_prints_the_history_and_the_state_at_a_version(self, db, workflow_id):
        result = wes(db, "replay", str(workflow_id), "--version", "3")
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        executed = next(line for line in lines if "StepExecuted" in line)
        assert executed.startswith("+"), executed  # after the version replayed
        assert "state as of version 3: EXECUTING" in result.stdout
        state = result.stdout.split("state as of")[1]
        assert "R-9" not in state  # the output came later

    def test_prints_the_state_now_by_default(self, db, workflow_id):
        result = wes(db, "replay", str(workflow_id))
        assert result.returncode == 0, result.stderr
        assert "state as of version 4" in result.stdout
        assert "R-9" in result.stdout.split("state as of")[1]

    def test_fits_an_80_column_terminal_one_line_per_event(self, db, app, compensated_id):
        history = app.history(compensated_id)
        result = wes(db, "replay", str(compensated_id), columns=80)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert all(len(line) <= 80 for line in lines), [x for x in lines if len(x) > 80]
        event_lines = [line for line in lines if line[:4].strip().isdigit()]
        assert len(event_lines) == len(history) >= 17
        for line, event in zip(event_lines, history, strict=True):
            assert line.split()[:3] == [str(event.version), stamp(event.timestamp),
                                        event.event_type], line
        assert "T" in stamp(history[0].timestamp) and stamp(history[0].timestamp).endswith("Z")
        # Error codes are whole words or left out, never cut.
        codes = {"WAREHOUSE_UNAVAILABLE", "PICK_LOCATION_UNAVAILABLE"}
        words = {w for line in lines for w in line.split()}
        assert not {w for w in words if w.startswith(("WAREHOUSE_", "PICK_LOC"))} - codes
        failures = [line for line in event_lines if " StepFailed " in line]
        assert [line.split()[4] for line in failures] == [
            "WAREHOUSE_UNAVAILABLE", "PICK_LOCATION_UNAVAILABLE"]
        assert len(lines) < 2 * len(history) + 12
        assert "state as of version" in result.stdout and "COMPENSATED" in result.stdout

    def test_timestamps_are_full_utc_milliseconds(self, app, compensated_id):
        event = app.history(compensated_id)[0]
        expected = event.timestamp.astimezone(UTC).isoformat(timespec="milliseconds")
        assert stamp(event.timestamp) == expected.replace("+00:00", "Z")

    def test_json_is_one_document_with_history_and_state(self, db, app, compensated_id):
        result = wes(db, "replay", str(compensated_id), "--json", "--version", "5")
        assert result.returncode == 0, result.stderr
        doc = json.loads(result.stdout)
        assert [e["version"] for e in doc["history"]] == [
            e.version for e in app.history(compensated_id)]
        assert doc["state"]["version"] == 5 and doc["state"]["status"] == "EXECUTING"
        failed = [e for e in doc["history"] if e["event_type"] == "StepFailed"]
        assert failed[-1]["data"]["error"]["code"] == "PICK_LOCATION_UNAVAILABLE"

    @pytest.mark.parametrize(("args", "reason"), [
        (["not-a-uuid"], "not a workflow id"),
        (["00000000-0000-0000-0000-000000000000"], "not found"),
        (["{id}", "--version", "99"], "only 4 events"),
        (["{id}", "--at", "yesterday"], "not an ISO time"),
    ])
    def test_bad_input_exits_non_zero_with_a_one_line_reason(self, db, workflow_id, args,
                                                            reason):
        result = wes(db, "replay", *[a.format(id=workflow_id) for a in args])
        assert result.returncode != 0
        assert reason in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
