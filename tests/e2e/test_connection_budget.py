"""The connection budget: many processes on one PostgreSQL of the test's own, at the defaults.

Worker processes, a projector and an API run against a cluster made for the test, with
`max_connections` as given; every process names its connections, so `pg_stat_activity`
counts them per process kind while idle and under load. All workflows must complete, every
process must live, and the server must never have refused a connection.
"""

from __future__ import annotations

import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

import httpx
import psycopg
import pytest

from application import database
from application.database import Database
from application.workflows import Workflows
from bootstrap.container import open_workflows
from simulator.client import SimulatorClient
from tests.support import clusters
from tests.support.processes import output, spawn_wes, spawn_worker, stop

pytestmark = pytest.mark.skipif(clusters.unavailable_reason() is not None,
                                reason=clusters.unavailable_reason() or "")

ITEMS = [{"sku": "SKU-12345", "quantity": 1}]
KIND = re.compile(r"^wes-([a-z]+)-")


@dataclass
class Fleet:
    """The processes of one run, and the connections seen per process kind."""

    db: Database
    cluster: clusters.Cluster
    app: Workflows
    processes: dict[str, object] = field(default_factory=dict)
    peak: Counter[str] = field(default_factory=Counter)
    admin: psycopg.Connection | None = None  # opened first: sampling needs no new slot

    def _names(self) -> list[tuple[object, ...]]:
        if self.admin is None:
            self.admin = psycopg.connect(self.cluster.url, autocommit=True)
        return self.admin.execute(
            "SELECT application_name FROM pg_stat_activity WHERE backend_type = "
            "'client backend' AND pid <> pg_backend_pid()").fetchall()

    def connections(self) -> Counter[str]:
        """Connections to the server now, per process kind (from application_name)."""
        rows = self._names()
        kinds: Counter[str] = Counter()
        for (name,) in rows:
            match = KIND.match(str(name or ""))
            kinds[match.group(1) if match else f"other:{name}"] += 1
        return kinds

    def per_process(self) -> Counter[str]:
        return Counter(re.sub(r"-lock$", "", str(name)) for (name,) in self._names()
                       if str(name).startswith("wes-worker-"))

    def sample(self) -> Counter[str]:
        now = self.connections()
        for kind, count in now.items():
            self.peak[kind] = max(self.peak[kind], count)
        return now

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            assert process.poll() is None, f"{name} died:\n{output(process)}"  # type: ignore[attr-defined]


def run_fleet(cluster: clusters.Cluster, simulator: SimulatorClient, workers: int,
              workflows: int) -> Fleet:
    db = cluster.database("wes").with_schema("public")
    database.ensure_database(db)
    app = open_workflows(db)
    fleet = Fleet(db, cluster, app)
    fleet.sample()
    try:
        port = clusters.free_port()
        fleet.processes["projector"] = spawn_wes(db, simulator.base_url, "projections", "run")
        fleet.processes["api"] = spawn_wes(
            db, simulator.base_url, "serve", "--port", str(port), "--no-worker",
            "--no-projections", "--no-simulated-services")
        _wait_api(f"http://127.0.0.1:{port}", fleet)
        for i in range(workers):
            fleet.processes[f"worker{i}"] = spawn_worker(db, simulator.base_url, concurrency=4)
        _wait_workers(fleet, workers)
        time.sleep(3)  # every process past its start-up
        idle = fleet.sample()
        ids = [_start(app, f"ORD-B{n}") for n in range(workflows)]
        statuses = _wait_terminal(app, ids, fleet, timeout=240)
        busy = dict(fleet.peak)
        # A read-model query and a read-your-writes wait through the API, at the end.
        position = app.recorder.max_notification_id()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            got = client.get(f"/v1/workflows/{ids[-1]}", params={"min_position": position})
        assert got.status_code == 200, got.text
        assert got.json()["status"] == "COMPLETED"
        fleet.check_alive()
        print(f"\nconnections idle: {dict(idle)}; peak under load: {busy}; "
              f"per worker now: {sorted(fleet.per_process().values())}", file=sys.stderr)
        assert statuses == Counter({"COMPLETED": workflows}), statuses
        return fleet
    finally:
        print(f"\npeak connections per kind: {dict(fleet.peak)}", file=sys.stderr)
        for process in fleet.processes.values():
            stop(process)  # type: ignore[arg-type]
        app.close()
        if fleet.admin is not None:
            fleet.admin.close()


def _start(app: Workflows, order: str) -> UUID:
    return app.start_workflow(definition="order-fulfillment",
                              input={"orderId": order, "items": ITEMS}).workflow_id


def _wait_workers(fleet: Fleet, count: int, timeout: float = 300.0) -> None:
    """Until every worker process has connected (start-up is slow on a loaded machine)."""
    deadline = time.monotonic() + timeout
    while len(fleet.per_process()) < count:
        fleet.check_alive()
        assert time.monotonic() < deadline, f"workers not up: {fleet.per_process()}"
        time.sleep(0.5)


def _wait_api(url: str, fleet: Fleet, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        fleet.check_alive()
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"API did not start:\n{output(fleet.processes['api'])}"  # type: ignore[arg-type]
        time.sleep(0.3)


def _wait_terminal(app: Workflows, ids: list[UUID], fleet: Fleet,
                   timeout: float) -> Counter[str]:
    deadline = time.monotonic() + timeout
    while True:
        fleet.sample()
        fleet.check_alive()
        statuses = Counter(str(app.get_workflow(i).status) for i in ids)
        if sum(statuses[s] for s in ("COMPLETED", "COMPENSATED", "FAILED",
                                     "COMPENSATION_FAILED", "CANCELLED")) == len(ids):
            return statuses
        assert time.monotonic() < deadline, f"not done in time: {statuses}"
        time.sleep(0.5)


def refused(cluster: clusters.Cluster) -> list[str]:
    """The server's log lines that refused a client."""
    log = Path(f"/var/log/postgresql/postgresql-{clusters.VERSION}-{cluster.name}.log")
    return [line for line in log.read_text(errors="replace").splitlines()
            if "too many clients" in line or "remaining connection slots" in line]


@pytest.fixture
def small_server() -> Iterator[clusters.Cluster]:
    # Room for 5 workers, an API and a projector at the defaults, and this test's own
    # connections: processes that opened their old pools (5 per datastore at start, up to
    # 15) would not fit.
    with clusters.primary(max_connections=45) as cluster:
        yield cluster


@pytest.fixture
def hundred() -> Iterator[clusters.Cluster]:
    with clusters.primary(max_connections=100) as cluster:
        yield cluster


class TestConnectionBudget:
    def test_five_workers_an_api_and_a_projector_share_a_small_server(
            self, small_server, simulator, monkeypatch):
        monkeypatch.setenv("PGAPPNAME", "wes-test-0")  # this test's own connections
        fleet = run_fleet(small_server, simulator, workers=5, workflows=20)
        assert refused(small_server) == []
        assert set(fleet.peak) == {"worker", "api", "projector", "test"}, fleet.peak

    @pytest.mark.slow
    def test_twenty_workers_an_api_and_a_projector_fit_in_a_hundred_connections(
            self, hundred, simulator, monkeypatch):
        monkeypatch.setenv("PGAPPNAME", "wes-test-0")
        fleet = run_fleet(hundred, simulator, workers=20, workflows=60)
        assert refused(hundred) == []
        assert fleet.peak["worker"] <= 20 * 4, fleet.peak


class TestNamedConnections:
    def test_every_connection_names_its_process_kind(self, small_server, simulator):
        db = small_server.database("wes")
        database.ensure_database(db)
        worker = spawn_worker(db, simulator.base_url, concurrency=2)
        try:
            def names() -> set[str]:
                rows = small_server.execute(
                    "SELECT application_name FROM pg_stat_activity WHERE backend_type = "
                    "'client backend' AND pid <> pg_backend_pid()")
                return {str(n) for (n,) in rows}

            deadline = time.monotonic() + 60
            while not any(n.startswith("wes-worker-") for n in names()):
                assert worker.poll() is None, output(worker)
                assert time.monotonic() < deadline, names()
                time.sleep(0.2)
            assert all(re.match(r"^wes-worker-[0-9a-f]{6}", n) for n in names()), names()
        finally:
            stop(worker)


class TestFullServer:
    def test_a_worker_that_finds_the_server_full_waits_and_says_so_in_one_line(
            self, simulator):
        with clusters.primary(max_connections=8) as cluster:
            db = cluster.database("wes")
            database.ensure_database(db)
            # Take every slot but the superusers' reserve (3 by default).
            held = []
            while True:
                try:
                    held.append(psycopg.connect(cluster.url, connect_timeout=2))
                except psycopg.OperationalError:
                    break
            worker = spawn_worker(db, simulator.base_url, concurrency=2,
                                  WES_LOG_JSON="0")
            try:
                deadline = time.monotonic() + 60
                while "no database connection" not in output(worker):
                    assert worker.poll() is None, output(worker)
                    assert time.monotonic() < deadline, output(worker)
                    time.sleep(0.3)
                assert "Traceback" not in output(worker)
                for conn in held:
                    conn.close()
                app = open_workflows(db)
                try:
                    wf_id = _start(app, "ORD-FULL")
                    deadline = time.monotonic() + 90
                    while str(app.get_workflow(wf_id).status) != "COMPLETED":
                        assert worker.poll() is None, output(worker)
                        assert time.monotonic() < deadline, output(worker)
                        time.sleep(0.3)
                finally:
                    app.close()
            finally:
                stop(worker)
                for conn in held:
                    conn.close()
