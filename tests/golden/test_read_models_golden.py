"""Every read-model row projected from the recorded golden history is the row the code
before the read models folded the aggregate's own state produced (see tests/golden/history.py;
regenerate with `python -m tests.golden.history --regen` only for a deliberate change)."""

from __future__ import annotations

import functools
import json
from typing import Any
from uuid import UUID

import pytest

from application.database import Database
from domain.workflow import Workflow
from projections import base
from projections.aggregates import WorkflowCache
from tests.golden.history import HISTORY_FILE, ROWS_FILE, projected_fixture

# The load model's private copy of each workflow's step states, recorded in the golden rows
# by the code before: the load model now folds the Workflow aggregate instead.
RETIRED = ("wes_load_workflows",)
TABLES = ("wes_progress", "wes_load", "wes_load_instances", "wes_load_outcomes", "wes_audit")


@pytest.fixture(scope="module")
def golden() -> dict[str, list[Any]]:
    rows = json.loads(ROWS_FILE.read_text())
    assert set(rows) == {*TABLES, *RETIRED}  # every read-model table is compared
    return rows


@pytest.fixture(scope="module")
def projected(server: Database, golden: dict[str, list[Any]]) -> dict[str, list[Any]]:
    events = json.loads(HISTORY_FILE.read_text())
    with projected_fixture(server, events, TABLES) as found:
        return found


@pytest.mark.parametrize("table", TABLES)
def test_projecting_the_recorded_history_gives_the_golden_rows(
        table: str, projected: dict[str, list[Any]], golden: dict[str, list[Any]]) -> None:
    assert len(projected[table]) == len(golden[table])
    for found, expected in zip(projected[table], golden[table], strict=True):
        assert found == expected


def test_workflows_reconstructed_from_the_event_store_give_the_same_rows(
        server: Database, golden: dict[str, list[Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    # A cache of one workflow: nearly every batch reconstructs its workflows from the
    # event store, as after a restart or an eviction.
    reconstructed: list[UUID] = []
    real = WorkflowCache._reconstruct

    def counted(cache: WorkflowCache, workflow_id: UUID, version: int) -> Workflow | None:
        reconstructed.append(workflow_id)
        return real(cache, workflow_id, version)

    monkeypatch.setattr(base, "WorkflowCache", functools.partial(WorkflowCache, maxsize=1))
    monkeypatch.setattr(WorkflowCache, "_reconstruct", counted)
    events = json.loads(HISTORY_FILE.read_text())
    with projected_fixture(server, events, TABLES, chunk=5) as found:
        assert found == {table: golden[table] for table in TABLES}
    assert reconstructed  # the path under test was taken
