"""`wes demo`: the seed's order-fulfillment saga through the engine, with live progress.

Two orders run against the simulated warehouse services: the first meets a transient
failure at pick-items, is retried after the policy's backoff and COMPLETES; the second is
rejected for good at pick-items, so assign-robot and then reserve-inventory are undone
and it ends COMPENSATED. Each workflow's timeline is then printed from its events.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from application import logs
from application.container import Container
from application.settings import Settings
from application.workflows import HistoryEvent
from domain.workflow import Workflow

TERMINAL = {"COMPLETED", "COMPENSATED", "CANCELLED", "COMPENSATION_FAILED"}


def demo(timeout: float = typer.Option(60.0, help="Seconds to wait for both workflows.")) -> None:
    """Run the order-fulfillment saga twice: once completing, once compensating."""
    from cli.main import fail
    from simulator.background import start_simulator

    settings = Settings.from_env()
    logs.configure("ERROR", settings.log_json)  # the demo prints its own story
    console = Console()
    console.print("[bold]WES Orchestrator demo[/]: starting the database, the simulated "
                  "services and a worker ...")
    services = start_simulator("demo")
    container = Container.build(settings, simulator_url=services.base_url)
    worker = container.worker(concurrency=2)
    worker.start()
    try:
        run = uuid.uuid4().hex[:6].upper()
        happy, unhappy = f"ORD-{run}-1", f"ORD-{run}-2"
        items = [{"sku": "SKU-12345", "quantity": 2}]
        with httpx.Client(base_url=services.base_url, timeout=5) as sim:
            sim.post("/faults", json={"service": "warehouse-service", "operation": "pick",
                                      "kind": "recoverable", "count": 1,
                                      "match": {"orderId": happy}}).raise_for_status()
            sim.post("/faults", json={"service": "warehouse-service", "operation": "pick",
                                      "kind": "unrecoverable", "match": {"orderId": unhappy}}
                     ).raise_for_status()
        ids = [
            container.workflows.start_workflow(
                definition="order-fulfillment", input={"orderId": order, "items": items},
                priority="HIGH", correlation_id=f"ord-{order}", triggered_by="demo",
            ).workflow_id
            for order in (happy, unhappy)
        ]
        deadline = time.monotonic() + timeout
        with Live(console=console, refresh_per_second=8) as live:
            while True:
                workflows = [container.workflows.get_workflow(i) for i in ids]
                live.update(_progress(workflows))
                if all(w.status in TERMINAL for w in workflows):
                    break
                if time.monotonic() > deadline:
                    fail("the demo workflows did not finish in time")
                time.sleep(0.1)
        for wf in workflows:
            console.print(_timeline(wf, container.workflows.history(wf.id)))
        statuses = [w.status for w in workflows]
        if statuses != ["COMPLETED", "COMPENSATED"]:
            fail(f"unexpected outcome {statuses}")
        console.print(f"[green]done[/]: {happy} COMPLETED after a retry, {unhappy} "
                      f"COMPENSATED. Replay either with `wes replay <id>`.")
    finally:
        container.close()
        services.stop()


def _progress(workflows: list[Workflow]) -> Group:
    table = Table(title="live progress")
    for column in ("order", "status", "current step", "progress", "retries", "compensated"):
        table.add_column(column)
    for wf in workflows:
        retries = sum(s.retries for s in wf.steps.values())
        bar = "#" * int(wf.progress_percentage / 10)
        table.add_row(str(wf.input.get("orderId")), str(wf.status), wf.current_step_id or "-",
                      f"{bar:<10} {wf.progress_percentage:5.1f}%", str(retries),
                      ", ".join(wf.compensated_steps) or "-")
    return Group(table)


def _timeline(wf: Workflow, history: list[HistoryEvent]) -> Table:
    table = Table(title=f"{wf.input.get('orderId')} -> {wf.status}  (workflow {wf.id})")
    for column in ("#", "+ms", "event", "step", "details"):
        table.add_column(column)
    start = history[0].timestamp
    for event in history:
        data: dict[str, Any] = event.data
        details = ""
        if event.event_type == "StepFailed":
            details = f"{data['error']['code']}: {data['error']['message']}"
        elif event.event_type == "StepRetryScheduled":
            details = f"retry {data['retry_number']} in {data['delay_ms']} ms"
        elif event.event_type == "CompensationStarted":
            details = f"undo in order: {', '.join(data['step_ids'])}"
        elif event.event_type == "StepExecuted":
            details = f"{data['execution_time_ms']} ms"
        ms = int((event.timestamp - start).total_seconds() * 1000)
        table.add_row(str(event.version), str(ms), event.event_type,
                      str(data.get("step_id") or ""), details)
    return table
