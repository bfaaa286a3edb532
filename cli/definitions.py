"""`wes definitions ...`: the versioned workflow definitions of a running server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.client import DEFAULT_URL, Api, ApiKey, AsJson, Url, console, print_json, table
from cli.output import fail

definitions_app = typer.Typer(help="Workflow definitions on a running server (--url, "
                                   "WES_URL).", no_args_is_help=True)

Name = Annotated[str, typer.Argument(help="The definition's name.", show_default=False)]


@definitions_app.command("list")
def list_definitions(url: Url = DEFAULT_URL, api_key: ApiKey = None,
                     as_json: AsJson = False) -> None:
    """Every registered version of every definition."""
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 500}
    with Api(url, api_key) as api:
        while True:
            page = api.get("/v1/definitions", params)
            items += page["items"]
            if not page.get("next_cursor"):
                break
            params["cursor"] = page["next_cursor"]
    if as_json:
        print_json({"items": items})
        return
    console().print(table(None, ["name", "version", "type", "steps", "description"], [
        (d["name"], d["version"], d["type"], len(d["steps"]), d.get("description"))
        for d in items], no_wrap=["name"]))


@definitions_app.command()
def show(name: Name,
         version: Annotated[int | None, typer.Option(min=1, help="Default: the latest.")
                            ] = None,
         url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """A definition version and its steps."""
    with Api(url, api_key) as api:
        found = api.get(f"/v1/definitions/{name}", {"version": version})
    if as_json:
        print_json(found)
        return
    out = console()
    out.print(f"[bold]{found['name']}[/] v{found['version']} ({found['type']}); versions "
              f"{', '.join(str(v) for v in found.get('versions', []))}")
    if found.get("description"):
        out.print(found["description"])
    out.print(table(None, ["step", "service", "operation", "timeout", "retry", "undo"], [
        (s["step_id"], s["service"], s["operation"], f"{s['timeout_ms'] / 1000:g}s",
         _policy(s["retry_policy"]), (s.get("compensation") or {}).get("operation"))
        for s in found["steps"]], no_wrap=["step", "service", "operation"]))


def _policy(policy: str | dict[str, Any]) -> str:
    """`3x 1s*2` (retries, first delay, growth) for a policy object; a name as it is."""
    if isinstance(policy, str):
        return policy
    growth = f"*{policy.get('multiplier'):g}" if policy.get("exponential", True) else ""
    return f"{policy.get('max_retries')}x {policy.get('initial_delay_ms', 0) / 1000:g}s{growth}"


@definitions_app.command()
def register(
    file: Annotated[Path, typer.Argument(help="A JSON file: {name, version, type, steps}.",
                                         show_default=False)],
    url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False,
) -> None:
    """Register a definition version from a JSON file (needs an admin key when the server
    has keys)."""
    try:
        body = json.loads(file.read_text())
    except OSError as e:
        fail(f"{file}: {e.strerror}")
        return
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        fail(f"{file} is not JSON: {e}")
        return
    with Api(url, api_key) as api:
        answer = api.post("/v1/definitions", body)
    if as_json:
        print_json(answer)
        return
    state = "registered" if answer.get("created") else "already registered (same content)"
    typer.echo(f"{answer['name']} v{answer['version']} {state}")
