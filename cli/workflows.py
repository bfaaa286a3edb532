"""`wes workflows ...`: list, show, start, control and watch workflows on a running server,
through its public HTTP API (like `temporal workflow ...`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer
from rich.console import Group
from rich.live import Live
from rich.text import Text

from cli.client import (
    DEFAULT_URL,
    Api,
    ApiError,
    ApiKey,
    AsJson,
    Url,
    console,
    key_values,
    print_json,
    table,
)
from cli.lines import event_line, stamp, width
from cli.output import fail

workflows_app = typer.Typer(help="Workflows on a running server (--url, WES_URL).",
                            no_args_is_help=True)

# Where `watch` stops: the workflow has ended, or waits for a person.
END_STATES = frozenset({"COMPLETED", "COMPENSATED", "CANCELLED", "COMPENSATION_FAILED",
                        "FAILED"})
WATCH_READ_TIMEOUT = 45.0  # the server pings an idle stream every 15 s
RECONNECTS = 5
EVENTS_SHOWN = 12
WIDE = 130  # columns from which `list` adds the definition, current step and full times



def _checked_id(value: str) -> str:
    """A workflow id is a UUID: anything else is refused before any request."""
    try:
        return str(UUID(value))
    except ValueError:
        raise typer.BadParameter(f"not a workflow id: {value!r}") from None


WorkflowId = Annotated[str, typer.Argument(help="The workflow's id.", show_default=False,
                                           callback=_checked_id)]
Reason = Annotated[str | None, typer.Option(help="Why (recorded in the event).")]


@workflows_app.command("list")
def list_workflows(
    status: Annotated[list[str] | None, typer.Option(
        help="Only these statuses (repeat the option).")] = None,
    priority: Annotated[list[str] | None, typer.Option(help="LOW, NORMAL, HIGH, URGENT "
                                                            "(repeatable).")] = None,
    type_: Annotated[list[str] | None, typer.Option("--type", help="Workflow type "
                                                                   "(repeatable).")] = None,
    definition: Annotated[str | None, typer.Option(help="Definition name.")] = None,
    correlation_id: Annotated[str | None, typer.Option(help="Correlation id.")] = None,
    created_after: Annotated[str | None, typer.Option(help="ISO time, inclusive.")] = None,
    created_before: Annotated[str | None, typer.Option(help="ISO time, exclusive.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Rows per page.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="Continue from a page's next_cursor."
                                               )] = None,
    every: Annotated[bool, typer.Option("--all", help="Follow next_cursor to the last "
                                                      "page.")] = False,
    url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False,
) -> None:
    """List workflows (newest first), with the API's filters."""
    params: dict[str, Any] = {
        "status": _upper(status), "priority": _upper(priority), "type": _upper(type_),
        "definition": definition,
        "correlation_id": correlation_id, "created_after": created_after,
        "created_before": created_before, "limit": limit, "cursor": cursor}
    items: list[dict[str, Any]] = []
    with Api(url, api_key) as api:
        while True:
            page = api.get("/v1/workflows", params)
            items += page["items"]
            next_cursor = page.get("next_cursor")
            if not every or not next_cursor:
                break
            params["cursor"] = next_cursor
    if as_json:
        print_json({"items": items, "next_cursor": next_cursor})
        return
    out = console()
    wide = out.width >= WIDE
    columns = ["id", "status", "priority", "steps", "created"] + (
        ["definition", "current step"] if wide else [])
    out.print(table(None, columns, [
        (w["id"], w["status"], w["priority"], f"{w['steps_done']}/{w['steps_total']}",
         stamp(w["created_at"]) if wide else _short_time(w["created_at"]),
         *([w["definition"], w["current_step"]] if wide else []))
        for w in items], no_wrap=columns))
    if not items:
        out.print("no workflows match")
    if next_cursor:
        typer.echo(f"more: --cursor {next_cursor} (or --all)", err=True)


def _upper(values: list[str] | None) -> list[str] | None:
    """Enum filters as the API spells them (`--status completed` works too)."""
    return [v.upper() for v in values] if values else None


def _short_time(value: str) -> str:
    """`12-01 21:49:07` (UTC): the full time is in --json and on wider terminals."""
    return stamp(value)[5:19].replace("T", " ")


def _history(api: Api, path: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 500}
    while True:
        page = api.get(f"{path}/history", params)
        events += page["items"]
        if not page.get("next_cursor"):
            return events
        params["cursor"] = page["next_cursor"]


@workflows_app.command()
def show(workflow_id: WorkflowId, url: Url = DEFAULT_URL, api_key: ApiKey = None,
         as_json: AsJson = False) -> None:
    """A workflow's progress: status, steps, retries, last error."""
    with Api(url, api_key) as api:
        row = api.get(f"/v1/workflows/{workflow_id}")
    if as_json:
        print_json(row)
        return
    _print_row(row)


def _print_row(row: dict[str, Any]) -> None:
    out = console()
    error = row.get("last_error") or {}
    out.print(key_values(f"workflow {row['id']}", [
        ("status", row["status"] + (" (late)" if row.get("late") else "")),
        ("definition", f"{row['definition']} v{row['definition_version']} ({row['type']})"),
        ("priority", row["priority"]),
        ("progress", f"{row['steps_done']}/{row['steps_total']} steps, "
                     f"{row['progress_percent']:.0f}%"),
        ("current step", row.get("current_step")),
        ("retries", f"{row['retries']} step retries, workflow retried {row['retry_count']}x"),
        ("last error", " ".join(str(error.get(k)) for k in ("code", "message") if
                                error.get(k)) or None),
        ("compensation", None if row.get("compensation_progress") is None
         else f"{row['compensation_progress']:.0f}%"),
        ("waiting", row.get("waiting_reason")),
        ("correlation id", row["correlation_id"]),
        ("triggered by", row["triggered_by"]),
        ("created", stamp(row["created_at"])),
        ("updated", stamp(row["updated_at"])),
        ("finished", stamp(row["finished_at"]) if row.get("finished_at") else None),
    ]))
    out.print(table(None, ["step", "service", "status", "attempts"],
                    [(s["step_id"], s["service"], s["status"], s["attempts"])
                     for s in row.get("steps", [])]))


@workflows_app.command()
def start(
    definition: Annotated[str, typer.Argument(help="A registered definition's name.",
                                              show_default=False)],
    input_: Annotated[str, typer.Option("--input", help="The input as JSON, or @FILE.")
                      ] = "{}",
    version: Annotated[int | None, typer.Option(min=1, help="Definition version (default: "
                                                            "the latest).")] = None,
    priority: Annotated[str, typer.Option(help="LOW, NORMAL, HIGH or URGENT.")] = "NORMAL",
    correlation_id: Annotated[str | None, typer.Option(help="Correlation id (default: "
                                                            "one is made).")] = None,
    waveless: Annotated[bool, typer.Option("--waveless", help="Wait for a waveless batch "
                                                              "to release it.")] = False,
    idempotency_key: Annotated[str | None, typer.Option(
        help="The same key always answers with the same workflow.")] = None,
    url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False,
) -> None:
    """Start a workflow; prints its id (with --json: {"id", "position"})."""
    body = {"definition": definition, "version": version, "input": _json_input(input_),
            "priority": priority.upper(), "correlation_id": correlation_id,
            "triggered_by": "cli", "waveless": waveless}
    with Api(url, api_key) as api:
        started = api.post("/v1/workflows", {k: v for k, v in body.items() if v is not None},
                           headers={"Idempotency-Key": idempotency_key} if idempotency_key
                           else None)
    if as_json:
        print_json({"id": started["id"], "position": started["position"]})
    else:
        typer.echo(started["id"])


def _json_input(raw: str) -> Any:
    text = raw
    if raw.startswith("@"):
        try:
            text = Path(raw[1:]).read_text()
        except OSError as e:
            fail(f"--input {raw}: {e.strerror}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        fail(f"--input is not JSON: {e}")
    if not isinstance(value, dict):
        fail("--input must be a JSON object")
    return value


def _command(workflow_id: str, action: str, body: dict[str, Any], url: str,
             api_key: str | None, as_json: bool, done: str) -> None:
    with Api(url, api_key) as api:
        answer = api.post(f"/v1/workflows/{workflow_id}/{action}",
                          {k: v for k, v in body.items() if v is not None})
    if as_json:
        print_json({"id": workflow_id, **answer})
    else:
        typer.echo(f"{done} {workflow_id} (position {answer.get('position')})")


@workflows_app.command()
def pause(workflow_id: WorkflowId, reason: Reason = None, url: Url = DEFAULT_URL,
          api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """Pause: no new step starts until it is resumed."""
    _command(workflow_id, "pause", {"reason": reason}, url, api_key, as_json, "paused")


@workflows_app.command()
def resume(workflow_id: WorkflowId, url: Url = DEFAULT_URL, api_key: ApiKey = None,
           as_json: AsJson = False) -> None:
    """Resume a paused workflow where it stopped."""
    _command(workflow_id, "resume", {}, url, api_key, as_json, "resumed")


@workflows_app.command()
def cancel(
    workflow_id: WorkflowId, reason: Reason = None,
    compensate: Annotated[bool, typer.Option("--compensate", help="Also undo the completed "
                                                                  "steps.")] = False,
    url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False,
) -> None:
    """Cancel: no further steps (with --compensate, the completed ones are undone)."""
    _command(workflow_id, "cancel", {"reason": reason, "compensate": compensate}, url,
             api_key, as_json, "cancelled")


@workflows_app.command()
def retry(workflow_id: WorkflowId, url: Url = DEFAULT_URL, api_key: ApiKey = None,
          as_json: AsJson = False) -> None:
    """Run a FAILED, COMPENSATED or CANCELLED workflow again from its unfinished steps."""
    _command(workflow_id, "retry", {}, url, api_key, as_json, "retried")


@workflows_app.command()
def watch(
    workflow_id: WorkflowId,
    timeout: Annotated[float, typer.Option(min=0, help="Give up after this many seconds "
                                                       "(0: never).")] = 0,
    url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False,
) -> None:
    """Follow a workflow live until it ends or needs a person (exit 0 only if COMPLETED)."""
    watcher = _Watcher(workflow_id, timeout)
    with Api(url, api_key) as api:
        if as_json:
            watcher.run(api, lambda: None)
        else:
            out = console()
            with Live(console=out, auto_refresh=False, transient=False) as live:
                watcher.run(api, lambda: live.update(watcher.view(), refresh=True))
            if not out.is_terminal:
                out.line()  # a file or pipe gets the last view without its line end
    row = watcher.row
    assert row is not None
    if as_json:
        print_json(row)
    if watcher.timed_out:
        fail(f"workflow {workflow_id} is still {row['status']} after {timeout:g} s")
    if row["status"] != "COMPLETED":
        fail(f"workflow {workflow_id} ended {row['status']}")


class _Watcher:
    """Follows one workflow: its history so far, then its events from the live stream
    (resumed right after the last one seen), re-reading its row after each with
    `min_position`, so the row always includes that event."""

    def __init__(self, workflow_id: str, timeout: float) -> None:
        self.workflow_id = workflow_id
        self.deadline = time.monotonic() + timeout if timeout else None
        self.row: dict[str, Any] | None = None
        self.events: list[dict[str, Any]] = []
        self.timed_out = False

    def run(self, api: Api, show: Any) -> None:
        path = f"/v1/workflows/{self.workflow_id}"
        self.events = _history(api, path)
        last = max((int(e["position"]) for e in self.events), default=0)
        self.row = api.get(path, {"min_position": last})
        show()
        broken = 0
        while not (self._ended() or self._late()):
            try:
                with api.stream("/v1/events/stream", {"workflow_id": self.workflow_id},
                                self._read_timeout(), headers={"Last-Event-ID": str(last)}
                                ) as lines:
                    broken = 0
                    for line in lines:
                        if line.startswith("data:"):
                            event = json.loads(line[5:])
                            last = int(event["position"])
                            self.events.append(event)
                            self.row = api.get(path, {"min_position": last})
                            show()
                        if self._ended() or self._late():
                            return
            except ApiError:
                # A dropped stream, a read model still behind: resume after `last`.
                broken += 1
                if broken > RECONNECTS:
                    raise
                time.sleep(min(2.0, 0.2 * 2 ** broken))

    def _read_timeout(self) -> float:
        if self.deadline is None:
            return WATCH_READ_TIMEOUT
        return max(0.5, min(WATCH_READ_TIMEOUT, self.deadline - time.monotonic()))

    def _late(self) -> bool:
        self.timed_out = self.deadline is not None and time.monotonic() >= self.deadline
        return self.timed_out

    def _ended(self) -> bool:
        if self.row is None or self.row["status"] not in END_STATES:
            return False
        if self.row["status"] == "CANCELLED":
            # Cancelled with compensation: the undo starts once the step in flight is done.
            cancels = [e for e in self.events if e["event_type"] == "Cancelled"]
            return not (cancels and cancels[-1]["data"].get("compensate"))
        return True

    def view(self) -> Group:
        row = self.row
        assert row is not None
        room = width()
        done = row["steps_done"] / row["steps_total"] if row["steps_total"] else 0.0
        bar = "#" * round(done * 20)
        head = Text(f"{row['id']}  {row['status']}\n[{bar:<20}] {row['steps_done']}/"
                    f"{row['steps_total']} steps  current {row.get('current_step') or '-'}  "
                    f"retries {row['retries']}")
        lines = [event_line(e["version"], e["timestamp"], e["event_type"], e.get("data") or {},
                            room=room, type_width=12)
                 for e in self.events[-EVENTS_SHOWN:]]
        return Group(head, *(Text(line) for line in lines))
