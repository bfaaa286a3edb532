"""A real `wes serve` and the system's headless Chromium for the console's browser tests
(and the screenshot script): requests and console errors of every page are recorded."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import httpx

from application.database import Database
from cli.background import free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LOCAL_HOSTS = {"127.0.0.1"}
STEPS = ("reserve-inventory", "assign-robot", "pick-items", "pack-items")
# What each step of order-fulfillment answers, as far as later steps' inputs refer to it.
OUTPUTS = {"reserve-inventory": {"reservationId": "res-1"}, "assign-robot": {"robotId": "robot-1"},
           "pick-items": {"pickId": "pick-1"}, "pack-items": {"packageId": "pkg-1"}}


@dataclass
class Server:
    """A `wes serve` process on a port of its own."""

    process: subprocess.Popen[bytes]
    log: IO[bytes]
    url: str

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=15)


@contextmanager
def serve(db: Database, *args: str, **env: str) -> Iterator[Server]:
    """`wes serve` on the test's database and schema; killed afterwards."""
    port = free_port()
    environ = {**os.environ, "DATABASE_URL": db.dsn, "WES_SCHEMA": db.schema,
               "WES_WORKER_POLL_SECONDS": "0.2", **env}
    for name in ("WES_SERVICES", "WES_API_KEYS"):
        if name not in env:
            environ.pop(name, None)
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "--port", str(port), *args],
            cwd=ROOT, env=environ, stdout=log, stderr=subprocess.STDOUT)
        server = Server(process, log, f"http://127.0.0.1:{port}")
        try:
            _wait_until_up(server)
            yield server
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _wait_until_up(server: Server, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if server.process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"wes serve did not start:\n{server.output()}")
        time.sleep(0.1)


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
