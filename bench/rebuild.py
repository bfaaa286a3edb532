"""Figure `rebuild`: rebuilding every read model from a long history, vs COPY.

The history is made of completed order-fulfillment sagas (eleven events each), built in
memory and appended in large batches. `projections.rebuild.rebuild` then rebuilds the
progress, load and audit read models in one pass; events/s is compared with one COPY of
as many event-like rows into an indexed table, in the same run. Peak memory (resident set
growth during the rebuild) is taken at a quarter of the history and at all of it: it
should not grow with the history.
"""

from __future__ import annotations

import threading
from pathlib import Path

from application.builtin_definitions import BUILTIN_DEFINITIONS
from application.database import Database
from application.workflows import Workflows
from bench import pg
from bench.report import Figure, ratio
from domain.step import StepResult
from domain.workflow import Workflow

EVENTS_PER_SAGA = 11
SAGAS_PER_APPEND = 400
TARGET_RATIO = 0.5


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class PeakMemory:
    """Samples this process's resident set size while a block runs; `growth_mb` after."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.growth_mb = 0.0

    def __enter__(self) -> PeakMemory:
        self._start = _rss_mb()
        self._peak = self._start
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._done.wait(self.interval):
            self._peak = max(self._peak, _rss_mb())

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self._peak = max(self._peak, _rss_mb())
        self.growth_mb = self._peak - self._start


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
                                        "items": [{"sku": "A", "qty": 1}]})
            wf.start(now)
            for step in steps:
                wf.start_step(step["step_id"], now)
                wf.record_step_result(step["step_id"], StepResult(step["step_id"], output, 1),
                                      now, attempt=1)
            wf.complete(now)
            batch.append(wf)
        app.save(*batch)


def measure(db: Database, *, events: int) -> Figure:
    from projections.read_models import ReadModels
    from projections.rebuild import rebuild

    app = Workflows(env=db.env())
    read_models = ReadModels(db.env(), app)
    try:
        app.ensure_builtin_definitions()
        total = events // EVENTS_PER_SAGA
        quarter = total // 4
        append_history(app, quarter)
        with PeakMemory() as small:
            rebuild(read_models)
        append_history(app, total - quarter, offset=quarter)
        history = app.recorder.max_notification_id() or 0
        with PeakMemory() as large:
            reports = rebuild(read_models)
    finally:
        read_models.close()
        app.close()
    rebuilt = reports[0].events
    seconds = max(r.seconds for r in reports)
    rate = rebuilt / seconds
    copy = pg.raw_copy(db, rebuilt)
    r = ratio(rate, copy)
    return Figure(
        "rebuild", rate, "events/s", copy, r, f"ratio >= {TARGET_RATIO}, flat memory",
        baseline_name=f"COPY of {rebuilt:,} event-like rows, rows/s",
        met=r is not None and r >= TARGET_RATIO and large.growth_mb <= 2 * small.growth_mb + 16,
        details={"events": rebuilt, "history_positions": history, "seconds": round(seconds, 2),
                 "read_models": [r.name for r in reports],
                 f"peak_memory_growth_mb_at_{quarter * EVENTS_PER_SAGA}_events":
                     round(small.growth_mb, 1),
                 f"peak_memory_growth_mb_at_{rebuilt}_events": round(large.growth_mb, 1)})
