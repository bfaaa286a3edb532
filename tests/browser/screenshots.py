"""Screenshots of every console page for the docs: `python -m tests.browser.screenshots`.

Starts `wes serve` on a database of its own (on DATABASE_URL's server, or the embedded one;
dropped afterwards), runs a small warehouse day through it — orders that complete, one
retried, one compensated, one whose compensation fails, one paused, waveless orders — replays
the fast waveless lane's window on the What-if page, and writes one PNG per page to
docs/console/ (or `--out DIR`).
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from application import database
from tests.browser.support import (
    Server,
    chromium,
    drive_step,
    inject_fault,
    pick_window,
    serve,
    start_order,
    wait_for_status,
    window_of,
)
from tests.support.processes import ROOT

SERVICES = ("inventory-service", "robotics-service", "warehouse-service", "packing-service")


def seed(server: Server) -> dict[str, str]:
    """A small day of work; answers the ids the detail screenshots show."""
    with server.client() as client:
        inject_fault(client, "recoverable", "ORD-1002")
        inject_fault(client, "unrecoverable", "ORD-1003")
        inject_fault(client, "unrecoverable", "ORD-1004")
        client.post("/sim/faults", json={"service": "robotics-service", "operation": "unassign",
                                         "kind": "unrecoverable", "count": None,
                                         "match": {"orderId": "ORD-1004"}})
        ids = {"retried": start_order(client, "ORD-1002"),
               "compensated": start_order(client, "ORD-1003"),
               "compensation_failed": start_order(client, "ORD-1004")}
        for n in range(10):
            start_order(client, f"ORD-2{n:03d}", priority=("HIGH", "NORMAL", "LOW")[n % 3])
        paused = start_order(client, "ORD-1005", driven_by="caller")
        drive_step(client, paused, "reserve-inventory")
        client.post(f"/v1/workflows/{paused}/pause", json={"reason": "customer called"})
        # A lane of 2 a minute: the first batch leaves, the others wait for the next one.
        for n in range(6):
            start_order(client, f"ORD-3{n:03d}", waveless=True, priority=("HIGH", "NORMAL")[n % 2],
                        waveless_batch_size=2, waveless_interval_ms=60_000)
        # A fast lane whose window the What-if page replays.
        fast = [start_order(client, f"ORD-4{n:03d}", waveless=True, priority=("HIGH", "NORMAL")[n % 2],
                            waveless_batch_size=4, waveless_interval_ms=500) for n in range(12)]
        wait_for_status(client, ids["retried"], "COMPLETED")
        for wid in fast:
            wait_for_status(client, wid, "COMPLETED")
        ids["whatif_from"], ids["whatif_to"] = window_of(client, fast)
        wait_for_status(client, ids["compensated"], "COMPENSATED")
        wait_for_status(client, ids["compensation_failed"], "COMPENSATION_FAILED")
        load = client.get("/v1/load").json()["items"]
        for i, row in enumerate(r for r in load if r["instance"].startswith("http")):
            client.post("/v1/load/metrics", json={
                "instance_id": row["instance"], "service_name": row["service"],
                "cpu_percent": 35 + 12 * i, "memory_percent": 40 + 5 * i, "active_requests": 3 + i,
                "queue_depth": i, "avg_response_time_ms": 20 + 7 * i, "error_rate": 0.01 * i})
        client.post("/v1/load/rebalance")
        time.sleep(2)
    return ids


def shoot(server: Server, ids: dict[str, str], out: Path) -> list[Path]:
    shots = [("workflows", "workflows", False), ("workflow-retried", f"workflow/{ids['retried']}", False),
             ("workflow-compensated", f"workflow/{ids['compensated']}", True),
             ("incidents", "incidents", True), ("load", "load", True), ("waveless", "waveless", True),
             ("projections", "projections", False), ("throughput", "throughput", True),
             ("whatif", "whatif", True)]
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with chromium() as browser:
        page: Any = browser.new_page(viewport={"width": 1360, "height": 860})
        for name, route, full in shots:
            page.goto(f"{server.url}/ui/#/{route}")
            page.locator(f'[data-testid="page-{route.split("/")[0]}"]').wait_for()
            if name == "whatif":
                pick_window(page, ids["whatif_from"], ids["whatif_to"])
                page.fill('input[name="p1.batch_size"]', "12")
                page.fill('input[name="p1.name"]', "one batch of 12")
                page.click('[data-action="run"]')
                page.locator('[data-testid="kpi-table"]').wait_for(timeout=60_000)
            page.wait_for_timeout(2500)
            path = out / f"{name}.png"
            page.screenshot(path=str(path), full_page=full)
            written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "console")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL")
    base = database.parse_url(url) if url else database.start_embedded()
    db = base.with_database(f"wes_console_shots_{uuid.uuid4().hex[:8]}")
    database.ensure_database(db)
    try:
        with serve(db) as server:
            for path in shoot(server, seed(server), args.out):
                print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    except httpx.HTTPError as e:
        raise SystemExit(f"screenshots: {e}") from None
    finally:
        database.drop_database(db)


if __name__ == "__main__":
    main()
