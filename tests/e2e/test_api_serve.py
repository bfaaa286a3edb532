"""`wes serve` as a newcomer runs it: one command, then the seed's saga over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from application.database import Database
from cli.background import free_port
from tests.support.processes import Served, wait_until_up

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def served(db: Database) -> Iterator[Served]:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": db.dsn, "WES_SCHEMA": db.schema}
    env.pop("WES_SERVICES", None)
    env.pop("WES_API_KEYS", None)
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "--port", str(port)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        running = Served(process, log, port)
        try:
            wait_until_up(running)
            yield running
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


class TestWesServe:
    def test_runs_the_order_fulfillment_saga_out_of_the_box(self, served: Served) -> None:
        with httpx.Client(base_url=served.url, timeout=10) as client:
            assert client.get("/docs").status_code == 200
            started = client.post("/v1/workflows", json={
                "definition": "order-fulfillment", "priority": "HIGH",
                "input": {"orderId": "ORD-NEW", "items": [{"sku": "SKU-1", "quantity": 2}]}})
            assert started.status_code == 201, started.text
            wid = started.json()["id"]
            deadline = time.monotonic() + 30
            while True:
                row = client.get(f"/v1/workflows/{wid}",
                                 params={"min_position": started.json()["position"]}).json()
                if row["status"] == "COMPLETED":
                    break
                assert time.monotonic() < deadline, (row, served.output())
                time.sleep(0.1)
            assert (row["steps_done"], row["progress_percent"]) == (4, 100.0)
            trail = client.get(f"/v1/workflows/{wid}/audit", params={"limit": 500}).json()
            assert trail["items"][-1]["event_type"] == "Completed"
            calls = client.get("/sim/calls").json()["items"]
            assert [c["operation"] for c in calls if c["order_id"] == "ORD-NEW"] == [
                "reserve", "assign", "pick", "pack"]
        served.process.send_signal(signal.SIGINT)
        assert served.process.wait(20) == 0, served.output()
        assert "no API keys configured" in served.output()
