"""A real `wes serve` and the system's headless Chromium for the console's browser tests
(and the screenshot script): requests and console errors of every page are recorded."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from application.database import Database
from tests.support.processes import Served, serving_process

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LOCAL_HOSTS = {"127.0.0.1"}
STEPS = ("reserve-inventory", "assign-robot", "pick-items", "pack-items")
# What each step of order-fulfillment answers, as far as later steps' inputs refer to it.
OUTPUTS = {"reserve-inventory": {"reservationId": "res-1"}, "assign-robot": {"robotId": "robot-1"},
           "pick-items": {"pickId": "pick-1"}, "pack-items": {"packageId": "pkg-1"}}


class Server(Served):
    """A `wes serve` process on a port of its own, with clients on its API."""

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=15)


@contextmanager
def serve(db: Database, *args: str, **env: str) -> Iterator[Server]:
    """`wes serve` on the test's database and schema; stopped afterwards."""
    environ = {**os.environ, "DATABASE_URL": db.dsn, "WES_SCHEMA": db.schema,
               "WES_WORKER_POLL_SECONDS": "0.2", **env}
    for name in ("WES_SERVICES", "WES_API_KEYS"):
        if name not in env:
            environ.pop(name, None)
    with serving_process(Server, environ, *args) as running:
        yield running


def start_order(client: httpx.Client, order_id: str, **extra: Any) -> str:
    started = client.post("/v1/workflows", json={
        "definition": "order-fulfillment", "priority": "HIGH",
        "input": {"orderId": order_id, "items": [{"sku": "SKU-1", "quantity": 2}]}, **extra})
    assert started.status_code == 201, started.text
    return str(started.json()["id"])


def inject_fault(client: httpx.Client, kind: str, order_id: str, operation: str = "pick",
                 service: str = "warehouse-service", **extra: Any) -> None:
    answer = client.post("/sim/faults", json={"service": service, "operation": operation,
                                              "kind": kind, "count": 1,
                                              "match": {"orderId": order_id}, **extra})
    assert answer.status_code in (200, 201), answer.text


def wait_for_status(client: httpx.Client, workflow_id: str, *statuses: str,
                    timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        row = client.get(f"/v1/workflows/{workflow_id}")
        if row.status_code == 200 and row.json()["status"] in statuses:
            return dict(row.json())
        if time.monotonic() > deadline:
            raise AssertionError(f"{workflow_id} did not reach {statuses}: {row.text}")
        time.sleep(0.2)


def drive_step(client: httpx.Client, workflow_id: str, step_id: str) -> int:
    """Runs one step of a caller-driven workflow through the manual step API."""
    assert client.post(f"/v1/workflows/{workflow_id}/steps/{step_id}/start").status_code == 200
    done = client.post(f"/v1/workflows/{workflow_id}/steps/{step_id}/result",
                       json={"output": OUTPUTS[step_id], "execution_time_ms": 3})
    assert done.status_code == 200, done.text
    return int(done.json()["position"])


def event_types(client: httpx.Client, workflow_id: str) -> list[str]:
    history = client.get(f"/v1/workflows/{workflow_id}/history")
    assert history.status_code == 200, history.text
    return [e["event_type"] for e in history.json()["items"]]


def window_of(client: httpx.Client, ids: list[str]) -> tuple[str, str]:
    """The narrowest [from, to) holding the workflows' creation times, as ISO strings."""
    created = sorted(datetime.fromisoformat(client.get(f"/v1/workflows/{i}").json()["created_at"])
                     for i in ids)
    return ((created[0] - timedelta(milliseconds=2)).isoformat(),
            (created[-1] + timedelta(milliseconds=2)).isoformat())


def pick_window(page: Any, start: str, end: str) -> None:
    """Types the window into the page's datetime-local fields, in the browser's local time."""
    for name, iso in (("from", start), ("to", end)):
        value = page.evaluate("""([iso]) => {
            const d = new Date(iso);
            return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 23);
        }""", [iso])
        page.fill(f'[data-testid="whatif-form"] input[name="{name}"]', value)


@dataclass
class Watch:
    """What a page did: every request's URL, console errors and uncaught exceptions."""

    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("console", lambda m: self.errors.append(f"console: {m.text}")
                if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

    def foreign(self) -> list[str]:
        """Requests to any host but 127.0.0.1 (a data: URL goes to no host; a blob: URL
        names the origin that made it)."""
        return [u for u in self.requests if not u.startswith("data:")
                and urlsplit(u.removeprefix("blob:")).hostname not in LOCAL_HOSTS]


@contextmanager
def chromium() -> Iterator[Any]:
    """The system's Chromium, headless, driven by Playwright (no browser download)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
