"""Figure `replay`: the state of a 10,000-event workflow as of a version (audit replay).

The workflow is made of pause/resume commands saved in one append (with the snapshots the
application takes every 50 versions). Each sample asks `Workflows.state_at(version=N)` for
a random N. The baseline is reading the workflow's whole stream with plain psycopg: what
any replay from the first event would at least have to fetch.
"""

from __future__ import annotations

import random
import time

from eventsourcing.application import project_aggregate

from application.database import Database
from bench import pg
from bench.report import Figure, percentile, ratio
from bootstrap.container import open_workflows

TARGET_MS = 50.0


def measure(db: Database, *, events: int = 10_000, samples: int) -> Figure:
    app = open_workflows(db)
    try:
        workflow_id = app.start_workflow(definition="order-fulfillment", driven_by="caller",
                                         input={"orderId": "replay"}).workflow_id
        wf = app.get_workflow(workflow_id)
        now = app.clock()
        while wf.version < events:
            if wf.version % 2:
                wf.resume(now, actor="bench")
            else:
                wf.pause(now, reason="bench", actor="bench")
        app.save_workflow(wf, now)
        rng = random.Random(7)
        versions = [rng.randint(1, events) for _ in range(samples)]
        app.state_at(workflow_id, version=versions[0])  # warm up
        timings = []
        for version in versions:
            began = time.perf_counter()
            state = app.state_at(workflow_id, version=version)
            timings.append(time.perf_counter() - began)
            if state.version != version:
                raise AssertionError(f"asked for version {version}, got {state.version}")
        began = time.perf_counter()
        project_aggregate(None, app.events.get(workflow_id))
        full_fold = time.perf_counter() - began
        began = time.perf_counter()
        app.state_at(workflow_id, at=app.clock())
        by_time = time.perf_counter() - began
        raw = pg.raw_fetch_stream(db, app.recorder.events_table_name, workflow_id)
    finally:
        app.close()
    p99 = percentile(timings, 99) * 1000
    return Figure(
        "replay", p99, "ms (p99)", raw * 1000, ratio(p99, raw * 1000), f"p99 <= {TARGET_MS:.0f} ms",
        baseline_name=f"raw fetch of the whole {events}-event stream, ms",
        met=p99 <= TARGET_MS,
        details={"events": events, "samples": samples,
                 "p50_ms": round(percentile(timings, 50) * 1000, 2), "p99_ms": round(p99, 2),
                 "full_fold_without_snapshots_ms": round(full_fold * 1000, 1),
                 "state_at_time_ms": round(by_time * 1000, 1)})
