"""The `wes` command line: replay, worker queue repair, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from application.workflows import Workflows
from domain.step import StepResult
from tests.support.processes import ROOT

ITEMS = [{"sku": "SKU-1", "quantity": 1}]


def wes(db, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": db.dsn, "WES_SCHEMA": db.schema, "COLUMNS": "200"}
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


class TestReplay:
    def test_prints_the_history_and_the_state_at_a_version(self, db, workflow_id):
        result = wes(db, "replay", str(workflow_id), "--version", "3")
        assert result.returncode == 0, result.stderr
        assert "StepExecuted (after)" in result.stdout
        assert "state as of version 3" in result.stdout
        assert '"EXECUTING"' in result.stdout and "R-9" in result.stdout.split("state as of")[0]

    def test_prints_the_state_now_by_default(self, db, workflow_id):
        result = wes(db, "replay", str(workflow_id))
        assert result.returncode == 0, result.stderr
        assert "state as of version 4" in result.stdout

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
