"""Every read-model row projected from the recorded golden history is the row the code
before the read models folded the aggregate's own state produced (see tests/golden/history.py;
regenerate with `python -m tests.golden.history --regen` only for a deliberate change)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from application.database import Database
from tests.golden.history import HISTORY_FILE, ROWS_FILE, projected_fixture


@pytest.fixture(scope="module")
def golden() -> dict[str, list[Any]]:
    return json.loads(ROWS_FILE.read_text())


@pytest.fixture(scope="module")
def projected(server: Database, golden: dict[str, list[Any]]) -> dict[str, list[Any]]:
    events = json.loads(HISTORY_FILE.read_text())
    with projected_fixture(server, events, tuple(golden)) as found:
        return found


@pytest.mark.parametrize("table", ["wes_progress", "wes_load", "wes_load_instances",
                                   "wes_load_outcomes", "wes_load_workflows", "wes_audit"])
def test_projecting_the_recorded_history_gives_the_golden_rows(
        table: str, projected: dict[str, list[Any]], golden: dict[str, list[Any]]) -> None:
    assert len(projected[table]) == len(golden[table])
    for found, expected in zip(projected[table], golden[table], strict=True):
        assert found == expected
