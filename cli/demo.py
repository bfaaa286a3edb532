"""`wes demo`: the seed's order-fulfillment saga through the engine, with live progress.

Two orders run against the simulated warehouse services: the first meets a transient
failure at pick-items, is retried after the policy's backoff and COMPLETES; the second is
rejected for good at pick-items, so assign-robot and then reserve-inventory are undone
and it ends COMPENSATED. Each workflow's timeline is then printed from its events.

The demo runs in a schema of its own (`wes_demo_<random>`, in the configured or embedded
database), dropped afterwards unless `--keep`: its work queue is its own, so a `wes serve`
or `wes worker` on the same database never takes its orders, and its orders never enter
the real queue. Its services are its own simulated ones, whatever WES_SERVICES says.
"""

from __future__ import annotations

import time
import uuid

import httpx
import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from application import database, logs
from application.settings import Settings
from application.workflows import HistoryEvent
from bootstrap.container import Container
from cli.lines import event_line, fit, width
from cli.output import fail
from domain.workflow import Workflow

SCHEMA_PREFIX = "wes_demo_"
TERMINAL = {"COMPLETED", "COMPENSATED", "CANCELLED", "COMPENSATION_FAILED"}


def demo(
    timeout: float = typer.Option(60.0, help="Seconds to wait for both workflows."),
    keep: bool = typer.Option(False, "--keep", help="Keep the demo's schema (to replay its "
                                                    "workflows) instead of dropping it."),
) -> None:
    """Run the order-fulfillment saga twice: once completing, once compensating."""
    from simulator.background import start_simulator

    schema = f"{SCHEMA_PREFIX}{uuid.uuid4().hex[:8]}"
    settings = Settings.from_env().replace(db_schema=schema, services=None)
    logs.configure("ERROR", settings.log_json)  # the demo prints its own story
    console = Console()
    console.print(f"[bold]WES Orchestrator demo[/]: starting the database (schema {schema}, "
                  "its own), the simulated services and a worker ...")
    db = database.resolve(settings.database_url, schema)
    services = start_simulator("demo")
    try:
        container = Container.build(settings, simulator_url=services.base_url, db=db)
    except BaseException:
        services.stop()
        _drop(db, keep)
        raise
    try:
        _run(container, services.base_url, console, timeout, keep, schema)
    finally:
        container.close()
        services.stop()
        _drop(db, keep)


def _drop(db: database.Database, keep: bool) -> None:
    if not keep:
        database.drop_schema(db)


def _run(container: Container, simulator_url: str, console: Console, timeout: float,
         keep: bool, schema: str) -> None:
    worker = container.worker(concurrency=2)
    worker.start()
    run = uuid.uuid4().hex[:6].upper()
    happy, unhappy = f"ORD-{run}-1", f"ORD-{run}-2"
    items = [{"sku": "SKU-12345", "quantity": 2}]
    with httpx.Client(base_url=simulator_url, timeout=5) as sim:
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
    if not console.is_terminal:
        console.line()  # a file or pipe gets the last view without its line end
    for wf in workflows:
        console.print(_timeline(wf, container.workflows.history(wf.id)), markup=False,
                      highlight=False, soft_wrap=True)
    statuses = [w.status for w in workflows]
    if statuses != ["COMPLETED", "COMPENSATED"]:
        fail(f"unexpected outcome {statuses}")
    replay = (f"Replay either with `WES_SCHEMA={schema} wes replay <id>`." if keep else
              "Its schema is dropped now (`wes demo --keep` keeps it for `wes replay`).")
    console.print(f"[green]done[/]: {happy} COMPLETED after a retry, {unhappy} "
                  f"COMPENSATED. {replay}")


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


def _timeline(wf: Workflow, history: list[HistoryEvent]) -> str:
    """The workflow's events, one line each (as `wes replay` prints them)."""
    room = width()
    head = fit([f"{wf.input.get('orderId')} -> {wf.status}", f"(workflow {wf.id})"], room)
    return "\n".join([head, *(event_line(e.version, e.timestamp, e.event_type, e.data,
                                          room=room, type_width=12) for e in history), ""])
