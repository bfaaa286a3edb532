"""`wes whatif`: how other release policies would have served a recorded window."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from application.errors import ApplicationError
from application.settings import Settings
from application.whatif.service import WhatIfError, WhatIfRequest
from bootstrap.container import whatif_report
from cli.output import fail
from domain.exceptions import DomainError
from domain.simulation.model import Policy

POLICY_FIELDS = {"name", "batch_size", "interval_ms", "wip_caps", "ageing_ms", "adaptive",
                 "cutoff_urgency_ms"}
ROWS = ("completed", "throughput_per_hour", "lead_time_p50_s", "lead_time_p95_s",
        "missed_cutoffs", "compensated", "compensation_rate", "release_wait_p50_s",
        "release_wait_p95_s")


def whatif(
    start: str = typer.Option(..., "--from", help="Window start (ISO time; UTC without a zone)."),
    end: str = typer.Option(..., "--to", help="Window end, exclusive (ISO time)."),
    policy: list[Path] = typer.Option(  # noqa: B008 - typer declares options this way
        [], "--policy", help="A JSON file with a policy (or a list of them); repeatable."),
    seed: int = typer.Option(0, help="Seeds the simulation's random draws."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
    url: str = typer.Option(None, help="Ask a running server (POST /v1/whatif) instead of "
                                       "reading the database."),
    api_key: str = typer.Option(None, envvar="WES_API_KEY", help="The server's API key."),
) -> None:
    """Replay the workflows created in [--from, --to) through each --policy, beside what
    actually happened and the simulated actual policy (its calibration)."""
    try:
        window = (_time(start, "--from"), _time(end, "--to"))
        policies = [p for path in policy for p in _policies(path)]
    except ValueError as e:
        fail(str(e))
        return
    report = (_remote(url, api_key, window, policies, seed) if url
              else _local(window, policies, seed))
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    _print(report)


def _time(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} is not an ISO time: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _policies(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise ValueError(f"cannot read policy file {path}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"policy file {path} is not JSON: {e}") from None
    items = data if isinstance(data, list) else [data]
    for item in items:
        if not isinstance(item, dict):
            raise ValueError(f"policy file {path}: a policy must be a JSON object")
        unknown = set(item) - POLICY_FIELDS
        if unknown:
            raise ValueError(f"policy file {path}: unknown fields {sorted(unknown)}")
        item.setdefault("name", path.stem)
    return items


def _local(window: tuple[datetime, datetime], policies: list[dict[str, Any]],
           seed: int) -> dict[str, Any]:
    try:
        request = WhatIfRequest(window[0], window[1], [Policy(**p) for p in policies], seed)
    except (DomainError, TypeError) as e:
        fail(f"invalid policy: {e}")
    try:
        return whatif_report(Settings.from_env(), request)
    except (WhatIfError, ApplicationError, DomainError) as e:
        fail(str(e))


def _remote(url: str, api_key: str | None, window: tuple[datetime, datetime],
            policies: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    body = {"from": window[0].isoformat(), "to": window[1].isoformat(), "policies": policies,
            "seed": seed}
    try:
        response = httpx.post(url.rstrip("/") + "/v1/whatif", json=body, headers=headers,
                              timeout=300)
    except httpx.HTTPError as e:
        fail(f"cannot reach {url}: {e}")
        raise
    if response.status_code != 200:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        fail(f"{response.status_code}: {detail}")
    report: dict[str, Any] = response.json()
    return report


def _print(report: dict[str, Any]) -> None:
    console = Console()
    calibration = report["calibration"]
    columns = [("actual (events)", report["actual"]),
               ("actual (simulated)", calibration["kpis"]),
               *((r["policy"]["name"], r["kpis"]) for r in report["results"])]
    table = Table(title=f"what-if {report['from']} .. {report['to']} "
                        f"({report['observed']['workflows']} workflows, seed {report['seed']})")
    table.add_column("KPI")
    for name, _ in columns:
        table.add_column(name, justify="right")
    for row in ROWS:
        table.add_row(row, *(f"{kpis.get(row, 0):,.3f}".rstrip("0").rstrip(".")
                             for _, kpis in columns))
    console.print(table)
    tolerance = calibration["tolerance"]
    allowance = (f"±{tolerance['relative']:.0%}, at least {tolerance['absolute_seconds']:g} s "
                 f"or {tolerance['absolute_count']:g} workflows")
    if calibration["within_tolerance"]:
        console.print(f"calibration: within tolerance ({allowance})")
        return
    off = [f"{name} simulated {c['simulated']:g} vs {c['actual']:g} (allowed ±{c['allowed']:g})"
           for name, c in calibration["checks"].items() if not c["ok"]]
    console.print(f"[bold red]calibration OFF[/bold red] ({allowance}): " + "; ".join(off)
                  + " — treat the predictions with care")
