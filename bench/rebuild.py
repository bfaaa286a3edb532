"""Figure `rebuild`: rebuilding every read model from a long history, vs COPY.

The history is made of completed order-fulfillment sagas (eleven events each), built in
memory and appended in large batches. `projections.rebuild.rebuild` then rebuilds the
progress, load and audit read models in one pass, in a process of its own; events/s is
compared with one COPY of as many event-like rows into an indexed table, in the same run.
Peak memory (resident set growth from just before the rebuild to its peak) is taken at a
quarter of the history and at all of it: it should not grow with the history.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from application import database
from application.builtin_definitions import BUILTIN_DEFINITIONS
from application.database import Database
from application.workflows import Workflows
from bench import pg
from bench.pg import database_url
from bench.report import Figure, ratio
from bootstrap.container import open_workflows, read_model_views
from domain.step import StepResult
from domain.workflow import Workflow

EVENTS_PER_SAGA = 11
SAGAS_PER_APPEND = 400
TARGET_RATIO = 0.5


def append_history(app: Workflows, sagas: int, offset: int = 0) -> None:
    """Appends `sagas` completed four-step sagas (in batches of SAGAS_PER_APPEND)."""
    steps = BUILTIN_DEFINITIONS[0]["steps"]
    output = {"reservationId": "r-1", "robotId": "robot-1", "pickId": "p-1", "packageId": "k-1"}
    for first in range(0, sagas, SAGAS_PER_APPEND):
        batch = []
        now = app.clock()
        for i in range(first, min(first + SAGAS_PER_APPEND, sagas)):
            wf = Workflow.create(steps=steps, now=now, definition_id="order-fulfillment",
                                 name="order-fulfillment",
                                 input={"orderId": f"history-{offset + i}",
                                        "items": [{"sku": "A", "quantity": 1}]})
            wf.start(now)
            for step in steps:
                wf.start_step(step["step_id"], now)
                wf.record_step_result(step["step_id"], StepResult(step["step_id"], output, 1),
                                      now, attempt=1)
            wf.complete(now)
            batch.append(wf)
        app.save(*batch)


def rebuild_in_child(db: Database) -> dict[str, float]:
    """Rebuilds every read model in a fresh process (so its peak memory is its own):
    events, seconds, and the resident set growth from before the rebuild to its peak."""
    env = {**os.environ, "DATABASE_URL": database_url(db)}
    out = subprocess.run([sys.executable, "-m", "bench.rebuild", db.schema], env=env,
                         capture_output=True, text=True, timeout=3600, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"the rebuild process failed: {out.stderr.strip()[-500:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _child(schema: str) -> None:
    """`python -m bench.rebuild SCHEMA`: one rebuild, reported as a JSON line."""
    from projections.rebuild import rebuild

    db = database.parse_url(os.environ["DATABASE_URL"]).with_schema(schema)
    app = open_workflows(db, builtin_definitions=False)
    read_models = read_model_views(db, app)
    try:
        before = _rss_mb()
        reports = rebuild(read_models)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    finally:
        read_models.close()
        app.close()
    print(json.dumps({"events": reports[0].events,
                      "seconds": max(report.seconds for report in reports),
                      "peak_growth_mb": peak - before,
                      "read_models": [report.name for report in reports]}))


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(db: Database, *, events: int) -> Figure:
    app = open_workflows(db)
    try:
        total = events // EVENTS_PER_SAGA
        quarter = total // 4
        append_history(app, quarter)
        small = rebuild_in_child(db)
        append_history(app, total - quarter, offset=quarter)
        history = app.recorder.max_notification_id() or 0
    finally:
        app.close()
    large = rebuild_in_child(db)
    rebuilt = int(large["events"])
    rate = rebuilt / large["seconds"]
    copy = pg.raw_copy(db, rebuilt)
    r = ratio(rate, copy)
    flat = large["peak_growth_mb"] <= 1.5 * small["peak_growth_mb"] + 16
    return Figure(
        "rebuild", rate, "events/s", copy, r, f"ratio >= {TARGET_RATIO}, flat memory",
        baseline_name=f"COPY of {rebuilt:,} event-like rows, rows/s",
        met=r is not None and r >= TARGET_RATIO and flat,
        details={"events": rebuilt, "history_positions": history,
                 "seconds": round(large["seconds"], 2), "read_models": large["read_models"],
                 f"peak_memory_growth_mb_at_{int(small['events'])}_events":
                     round(small["peak_growth_mb"], 1),
                 f"peak_memory_growth_mb_at_{rebuilt}_events": round(large["peak_growth_mb"], 1),
                 "memory_flat": flat})


if __name__ == "__main__":
    _child(sys.argv[1])
