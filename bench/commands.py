"""Figure `commands`: concurrent workflow commands (load + decide + append) per second.

Eight clients each toggle pause/resume on workflows of their own (caller-driven, so no
worker touches them): every command loads the workflow from its events (and snapshot),
decides, and appends its event with the work-queue row. The baseline is raw single-row
INSERT commits with the same number of clients, measured alternately with the commands in
the same run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from uuid import UUID

from application.database import Database
from application.workflows import Workflows
from bench import pg
from bench.report import Figure, median, percentile, ratio
from bootstrap.container import open_workflows

WORKFLOWS_PER_CLIENT = 10


def run_commands(app: Workflows, ids: list[list[UUID]], paused: dict[UUID, bool],
                 seconds: float) -> tuple[float, list[float]]:
    """Commands per second over `seconds`, and each command's latency (seconds).
    `paused` says which workflows are paused (each belongs to one client)."""
    clients = len(ids)
    latencies: list[list[float]] = [[] for _ in range(clients)]

    def client(i: int, ready: Callable[[], None], running: Callable[[], bool]) -> int:
        mine = ids[i]
        ready()
        n = 0
        while running():
            workflow_id = mine[n % len(mine)]
            began = time.perf_counter()
            if paused[workflow_id]:
                app.resume(workflow_id, actor="bench")
            else:
                app.pause(workflow_id, reason="bench", actor="bench")
            paused[workflow_id] = not paused[workflow_id]
            latencies[i].append(time.perf_counter() - began)
            n += 1
        return n

    rate = pg.run_clients(clients, seconds, client)
    return rate, [x for xs in latencies for x in xs]


def measure(db: Database, *, clients: int = 8, seconds: float, rounds: int) -> Figure:
    app = open_workflows(db, env={"POSTGRES_POOL_SIZE": str(clients + 2)})
    try:
        ids = [[app.start_workflow(definition="order-fulfillment", driven_by="caller",
                                   input={"orderId": f"bench-{i}-{j}"}).workflow_id
                for j in range(WORKFLOWS_PER_CLIENT)] for i in range(clients)]
        paused = {workflow_id: False for mine in ids for workflow_id in mine}
        run_commands(app, ids, paused, min(seconds, 0.5))  # warm up: connections, prepared statements
        rates, raw, latencies = [], [], []
        for _ in range(rounds):
            raw.append(pg.raw_commits(db, clients, seconds))
            rate, lat = run_commands(app, ids, paused, seconds)
            rates.append(rate)
            latencies += lat
        one_client, _ = run_commands(app, ids[:1], paused, seconds)
        raw_one = pg.raw_commits(db, 1, seconds)
    finally:
        app.close()
    value, baseline = median(rates), median(raw)
    r = ratio(value, baseline)
    return Figure(
        "commands", value, "commands/s", baseline, r, "ratio >= 0.6",
        baseline_name=f"raw single-row INSERT commits/s, {clients} clients",
        met=r is not None and r >= 0.6,
        details={"clients": clients, "rounds": rounds, "seconds_per_round": seconds,
                 "rounds_commands_per_s": [round(x) for x in rates],
                 "rounds_raw_commits_per_s": [round(x) for x in raw],
                 "latency_p50_ms": round(percentile(latencies, 50) * 1000, 2),
                 "latency_p99_ms": round(percentile(latencies, 99) * 1000, 2),
                 "one_client_commands_per_s": round(one_client),
                 "one_client_raw_commits_per_s": round(raw_one),
                 "one_client_ratio": round(one_client / raw_one, 3) if raw_one else None})
