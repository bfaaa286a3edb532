"""Structured logs: the configured handler and what each line carries."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from application import logs


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_lines_go_to_the_stderr_of_the_moment_they_are_logged(
        restore_root: None, monkeypatch: pytest.MonkeyPatch) -> None:
    logs.configure("INFO")
    replaced = io.StringIO()
    # A thread started earlier keeps logging after stderr is replaced and the old one closed.
    monkeypatch.setattr(sys, "stderr", replaced)
    logging.getLogger("wes.test").info("after the swap")
    assert "after the swap" in replaced.getvalue()


def test_a_json_line_carries_the_workflow_and_correlation_ids(
        restore_root: None, monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    logs.configure("INFO", json_output=True)
    with logs.workflow_context(workflow_id="wf-1", correlation_id="corr-1"):
        logging.getLogger("wes.test").info("step started", extra={"step": "pick"})
    line = json.loads(out.getvalue().strip())
    assert line["message"] == "step started"
    assert (line["workflow_id"], line["correlation_id"], line["step"]) == ("wf-1", "corr-1", "pick")
