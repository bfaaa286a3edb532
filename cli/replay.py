"""`wes replay`: a workflow's history and its state as of a version or a time.

Fits the terminal: one line per event with its full timestamp, and only whole words (what
does not fit is `…`, and all of it is in `--json`)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

import typer

from application.errors import ApplicationError
from application.settings import Settings
from application.workflows import HistoryEvent
from bootstrap.container import event_store
from cli.lines import event_line, fit, stamp, width
from cli.output import fail
from domain.exceptions import DomainError
from domain.workflow import Workflow

AFTER_MARK = "+"
# Event types are aligned up to this width; longer ones push their line's details right,
# which leaves the common lines (StepStarted, StepExecuted, StepFailed) room for an error
# code and a step id on 80 columns.
TYPE_WIDTH = 12


def replay(
    workflow_id: str = typer.Argument(..., help="The workflow's id."),
    version: int = typer.Option(None, help="State after this many events."),
    at: str = typer.Option(None, help="State as of this ISO time."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout: "
                                                       "{history, state}."),
) -> None:
    """Print the history, then the state as of --version / --at (default: now).

    Reads the event store directly (DATABASE_URL), so it needs no running server."""
    try:
        wf_id = UUID(workflow_id)
    except ValueError:
        fail(f"not a workflow id: {workflow_id!r}")
        return
    when = None
    if at is not None:
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            fail(f"--at is not an ISO time: {at!r}")
    app = event_store(Settings.from_env())
    try:
        history = app.history(wf_id)
        state = app.state_at(wf_id, version=version, at=when)
    except (ApplicationError, DomainError) as e:
        fail(str(e))
        return
    finally:
        app.close()
    if as_json:
        typer.echo(json.dumps({
            "workflow_id": str(wf_id),
            "history": [{"version": e.version, "position": e.position,
                         "event_type": e.event_type, "timestamp": e.timestamp.isoformat(),
                         "data": e.data} for e in history],
            "state": {"version": state.version, **state.snapshot_state()},
        }, default=str, indent=2))
        return
    for line in render(wf_id, history, state, width()):
        typer.echo(line)


def render(wf_id: UUID, history: list[HistoryEvent], state: Workflow, room: int) -> list[str]:
    """The lines of the history and of the state, none longer than `room`."""
    type_width = min(TYPE_WIDTH, max(len(e.event_type) for e in history))
    version_width = len(str(history[-1].version))
    lines = [fit(["history", "of", str(wf_id), f"({len(history)} events,", "UTC;",
                  f"{AFTER_MARK} = after", f"v{state.version})"], room)]
    for event in history:
        mark = AFTER_MARK if event.version > state.version else " "
        lines.append(event_line(event.version, event.timestamp, event.event_type, event.data,
                                room=room, type_width=type_width, version_width=version_width,
                                mark=mark))
    lines.append("")
    lines += _state_lines(state, room)
    return lines


def _state_lines(state: Workflow, room: int) -> list[str]:
    data = state.snapshot_state()
    lines = [fit([f"state as of version {state.version}:", data["status"],
                  f"{data['definition_id']}@v{data['definition_version']}", data["priority"],
                  f"retries={data['retry_count']}/{data['max_retries']}"], room)]
    for key in ("created_at", "started_at", "finished_at"):
        if data.get(key):
            lines.append(fit([f"  {key.replace('_at', '')}:", stamp(data[key])], room))
    steps = data["steps"]
    name_width = max((len(s["spec"]["step_id"]) for s in steps), default=0)
    for s in steps:
        words = [f"attempts={s['attempts']}"]
        if s.get("duration_ms") is not None:
            words.append(f"{s['duration_ms']}ms")
        if s.get("last_error"):
            words.append(str(s["last_error"].get("code")))
        words += _json_words(s.get("output"))
        head = f"  {s['spec']['step_id']:<{name_width}} {s['status']:<11} "
        lines.append((head + fit(words, room - len(head))).rstrip())
    for error in data["errors"]:
        lines.append(fit(["  error:", str(error.get("step_id") or "-"), str(error.get("code")),
                          *str(error.get("message") or "").split()], room))
    for key in ("paused_reason", "cancel_reason"):
        if data.get(key):
            lines.append(fit([f"  {key.replace('_', ' ')}:", *str(data[key]).split()], room))
    return lines


def _json_words(value: Any) -> list[str]:
    """A step's output as words of compact JSON (empty when there is none)."""
    if not value:
        return []
    return json.dumps(value, default=str, separators=(", ", ": ")).split()
