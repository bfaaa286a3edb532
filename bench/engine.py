"""Figures `engine` and `lag`: sagas driven by one worker, with the projections running.

`engine`: the built-in four-step order-fulfillment saga with in-process no-op handlers,
one worker, the three projections following live. They run as deployed (docker-compose):
`wes projections run` in a process of its own; the same run is repeated with them in the
worker's process (as `wes serve` runs them) for comparison. Sagas are started first; the
clock runs from the worker's start until the work queue is empty. Reported: sagas/s, write
transactions and all database transactions per saga, and the latency the engine adds
between one step's handler returning and the next step's handler being called. The
baseline is what the database could commit if each of the engine's write transactions per
saga were a bare single-row INSERT, with as many clients as the worker has threads.

`lag`: meanwhile a probe issues a command every few milliseconds and times how long its
event takes to show in the progress read model (commit -> visible).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from application.database import Database
from application.engine.ports import StepCall
from application.event_log import WesApplicationRecorder
from application.workflows import Workflows
from bench import pg
from bench.report import Figure, percentile, ratio
from bootstrap.container import engine_over, open_workflows, projector_runner, read_model_views
from domain.enums import WorkflowStatus

SERVICES = ("inventory-service", "robotics-service", "warehouse-service", "packing-service")
NOOP_OUTPUT = {"reservationId": "r-1", "robotId": "robot-1", "pickId": "p-1", "packageId": "k-1"}
ENGINE_TARGET = 200.0
LAG_TARGET_MS = 100.0


class CountingRecorder(WesApplicationRecorder):
    """The engine's recorder, counting its write transactions (appends and leases)."""

    writes = itertools.count()

    def insert_events(self, stored_events: Sequence[StoredEvent],
                      **kwargs: Any) -> Sequence[int] | None:
        next(CountingRecorder.writes)
        return super().insert_events(stored_events, **kwargs)

    def claim(self, *args: Any, **kwargs: Any) -> Any:
        next(CountingRecorder.writes)
        return super().claim(*args, **kwargs)

    def renew(self, owner: str, workflow_ids: Sequence[UUID], *args: Any, **kwargs: Any) -> Any:
        if workflow_ids:
            next(CountingRecorder.writes)
        return super().renew(owner, workflow_ids, *args, **kwargs)

    def release(self, *args: Any, **kwargs: Any) -> Any:
        next(CountingRecorder.writes)
        return super().release(*args, **kwargs)

    def settle(self, *args: Any, **kwargs: Any) -> Any:
        next(CountingRecorder.writes)
        return super().settle(*args, **kwargs)


def _count(counter: itertools.count[int]) -> int:
    """The next value of a counter without losing it (itertools.count has no peek)."""
    return int(repr(counter)[6:-1])


class StepClock:
    """A no-op handler that notes when each workflow's steps are called."""

    def __init__(self) -> None:
        self.calls: dict[UUID, list[float]] = defaultdict(list)
        self.finished: dict[UUID, list[float]] = defaultdict(list)

    def __call__(self, call: StepCall) -> dict[str, Any]:
        self.calls[call.workflow_id].append(time.perf_counter())
        return NOOP_OUTPUT

    def gaps(self) -> list[float]:
        """Seconds between consecutive step calls of the same workflow."""
        return [b - a for times in self.calls.values() for a, b in itertools.pairwise(times)]


class LagProbe:
    """Commands a probe workflow every `interval` seconds, and times each command from its
    commit until the progress read model has applied its position."""

    def __init__(self, app: Workflows, progress: Any, interval: float = 0.02) -> None:
        self.app = app
        self.progress = progress
        self.interval = interval
        self.lags: list[float] = []
        self._pending: list[tuple[int, float]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.workflow_id = app.start_workflow(definition="order-fulfillment", driven_by="caller",
                                              input={"orderId": "lag-probe"}).workflow_id
        self._paused = False

    def start(self) -> None:
        self._stopping.clear()
        self._threads = [threading.Thread(target=self._command, daemon=True),
                         threading.Thread(target=self._watch, daemon=True)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> list[float]:
        """Stops probing, waits (bounded) for the probes in flight; returns their lags."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(30)
        lags, self.lags = self.lags, []
        return lags

    def _command(self) -> None:
        while not self._stopping.wait(self.interval):
            if self._paused:
                position = self.app.resume(self.workflow_id, actor="bench")
            else:
                position = self.app.pause(self.workflow_id, reason="probe", actor="bench")
            self._paused = not self._paused
            with self._lock:
                self._pending.append((position or 0, time.perf_counter()))

    def _watch(self) -> None:
        deadline = None
        while True:
            applied = self.progress.max_tracking_id(self.app.name) or 0
            now = time.perf_counter()
            with self._lock:
                self.lags += [now - at for position, at in self._pending if position <= applied]
                self._pending = [p for p in self._pending if p[0] > applied]
                idle = not self._pending
            if self._stopping.is_set():
                deadline = deadline or now + 20
                if idle or now > deadline:
                    return
            time.sleep(0.002)


def _wait_until_done(app: Workflows, stall_seconds: float) -> None:
    """Until the work queue is empty; raises if it stops shrinking for `stall_seconds`."""
    left = app.store.work_queue.size()
    moved = time.monotonic()
    while left > 0:
        time.sleep(0.02)
        now_left = app.store.work_queue.size()
        if now_left != left:
            left, moved = now_left, time.monotonic()
        elif time.monotonic() - moved > stall_seconds:
            raise RuntimeError(f"the engine made no progress for {stall_seconds:.0f} s "
                               f"({left} workflows left)")


def _xact_commits(db: Database) -> int:
    with db.connect(autocommit=True) as conn:
        row = conn.execute("SELECT xact_commit FROM pg_stat_database"
                           " WHERE datname = current_database()").fetchone()
    return int(row[0]) if row else 0


@dataclass
class _Run:
    """What one engine run measured."""

    rate: float
    done: int
    elapsed: float
    writes_per_saga: float
    commits_per_saga: float
    gaps: list[float]
    lags: list[float] | None  # None: no projections
    idle_lags: list[float]
    ids: list[UUID]


class _ProjectorProcess:
    """`wes projections run` in a process of its own, as deployed."""

    def __init__(self, db: Database, read_db: Database | None = None) -> None:
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
        env = {**os.environ, "DATABASE_URL": pg.database_url(db), "WES_SCHEMA": db.schema}
        if read_db is not None:
            env["WES_READ_MODEL_DATABASE_URL"] = pg.database_url(read_db)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "projections", "run"],
            env=env, stdout=subprocess.DEVNULL, stderr=self._log)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()

    def check(self) -> None:
        if self.process.poll() is not None:
            self._log.seek(0)
            raise RuntimeError("wes projections run exited: "
                               + self._log.read().decode(errors="replace")[-2000:])


def _run(db: Database, *, sagas: int, concurrency: int, seconds: float,
         projections: str, local: bool = True, read_db: Database | None = None) -> _Run:
    """One run; `projections` is "process" (own process), "thread" (this one) or "off";
    `local`: the no-op handlers run as local activities, else on the remote-call path that
    every warehouse-service step takes (its start saved before the call); the read models
    on `read_db`'s server when given (WES_READ_MODEL_DATABASE_URL)."""
    app = open_workflows(db, env={"APPLICATION_RECORDER_TOPIC": get_topic(CountingRecorder),
                                  "POSTGRES_POOL_SIZE": str(concurrency + 8)})
    clock = StepClock()
    # In-process handlers as local activities (the engine's path for them), or on the
    # remote-call path, as an HTTP step is driven (without the HTTP).
    engine = engine_over(app, dict.fromkeys(SERVICES, clock), local=local)
    runner: Any = None
    process: _ProjectorProcess | None = None
    probe = read_models = None
    idle_lags: list[float] = []
    lags: list[float] = []
    ids: list[UUID] = []
    try:
        if projections != "off":
            read_models = read_model_views(db, app, read_db=read_db)
            if projections == "process":
                process = _ProjectorProcess(db, read_db)
            else:
                runner = projector_runner(read_models)
                runner.start()
            probe = LagProbe(app, read_models.progress)
            _caught_up(read_models, app, process, timeout=60)
            probe.start()
            time.sleep(min(seconds, 1.0))
            idle_lags = probe.stop()
        ids = [app.start_workflow(definition="order-fulfillment",
                                  input={"orderId": f"order-{i}", "items": [{"sku": "A", "quantity": 1}]}
                                  ).workflow_id for i in range(sagas)]
        if read_models is not None:
            _caught_up(read_models, app, process, timeout=120)
        worker = engine.worker(concurrency=concurrency, poll_seconds=0.05)
        time.sleep(1.2)  # let idle backends flush their statistics
        commits_before, writes_before = _xact_commits(db), _count(CountingRecorder.writes)
        began = time.perf_counter()
        worker.start()
        if probe is not None:
            probe.start()
        _wait_until_done(app, stall_seconds=30.0)
        elapsed = time.perf_counter() - began
        writes = _count(CountingRecorder.writes) - writes_before
        worker.stop()
        if probe is not None:
            lags = probe.stop()
        time.sleep(1.2)
        commits = _xact_commits(db) - commits_before
        done = sum(app.get_workflow(i).status == WorkflowStatus.COMPLETED for i in ids)
    finally:
        if runner is not None:
            runner.stop()
        if process is not None:
            process.stop()
        if read_models is not None:
            read_models.close()
        engine.close()
        app.close()
    return _Run(done / elapsed, done, elapsed, writes / max(done, 1), commits / max(done, 1),
                clock.gaps(), lags if probe is not None else None, idle_lags, ids)


def _caught_up(read_models: Any, app: Workflows, process: _ProjectorProcess | None,
               timeout: float) -> None:
    deadline = time.monotonic() + timeout
    head = app.recorder.max_notification_id() or 0
    while True:
        if process is not None:
            process.check()
        try:
            read_models.wait(head, timeout=min(1.0, max(deadline - time.monotonic(), 0.0)))
            return
        except TimeoutError:
            if time.monotonic() >= deadline:
                raise


def measure(db: Database, *, sagas: int, concurrency: int = 4, seconds: float,
            projections: bool = True) -> tuple[Figure, Figure, list[UUID]]:
    """The `engine` and `lag` figures (projections in their own process, as deployed; the
    same run with them in the worker's process is a detail), and the ids of the sagas (for
    the `api` figure)."""
    run = _run(db, sagas=sagas, concurrency=concurrency, seconds=seconds,
               projections="process" if projections else "off")
    shared = (_run(db, sagas=sagas, concurrency=concurrency, seconds=seconds,
                   projections="thread") if projections else None)
    # The two call paths alone (no projector or probe transactions in the database's
    # commit count), so that reads and writes per saga can be told apart.
    paths = {name: _run(db, sagas=sagas, concurrency=concurrency, seconds=seconds,
                        projections="off", local=name == "local")
             for name in ("local", "remote")}
    raw = pg.raw_commits(db, concurrency, seconds)
    baseline = raw / run.writes_per_saga if run.writes_per_saga else None
    details: dict[str, Any] = {
        "sagas": sagas, "completed": run.done, "seconds": round(run.elapsed, 2),
        "worker_threads": concurrency,
        "projections": "own process" if projections else "not running",
        "write_transactions_per_saga": round(run.writes_per_saga, 2),
        "db_transactions_per_saga": round(run.commits_per_saga, 2),
        "raw_commits_per_s": round(raw),
        "step_latency_p50_ms": round(percentile(run.gaps, 50) * 1000, 2),
        "step_latency_p99_ms": round(percentile(run.gaps, 99) * 1000, 2)}
    for name, path in paths.items():
        details |= {
            f"{name}_call_path_sagas_per_s": round(path.rate, 1),
            f"{name}_call_path_write_transactions_per_saga": round(path.writes_per_saga, 2),
            f"{name}_call_path_read_transactions_per_saga":
                round(path.commits_per_saga - path.writes_per_saga, 2),
            f"{name}_call_path_step_latency_p50_ms": round(percentile(path.gaps, 50) * 1000, 2)}
    if shared is not None:
        details |= {
            "projections_in_worker_process_sagas_per_s": round(shared.rate, 1),
            "projections_in_worker_process_step_latency_p50_ms":
                round(percentile(shared.gaps, 50) * 1000, 2),
            "projections_in_worker_process_lag_p99_ms":
                round(percentile(shared.lags, 99) * 1000, 2) if shared.lags else None}
    engine = Figure(
        "engine", run.rate, "sagas/s", baseline, ratio(run.rate, baseline),
        f"value >= {ENGINE_TARGET:.0f}",
        baseline_name=f"raw {concurrency}-client commits/s / engine write transactions per saga",
        met=run.rate >= ENGINE_TARGET and run.done == sagas, details=details)
    lags, idle_lags = run.lags, run.idle_lags
    if lags is None:
        lag = Figure.unavailable("lag", "ms", f"p99 <= {LAG_TARGET_MS:.0f} ms",
                                 "projections were not running")
    else:
        p99 = percentile(lags, 99) * 1000 if lags else None
        idle = percentile(idle_lags, 99) * 1000 if idle_lags else None
        lag = Figure(
            "lag", p99, "ms (p99)", idle, ratio(p99, idle), f"p99 <= {LAG_TARGET_MS:.0f} ms",
            baseline_name="p99 lag with the engine idle (same probe, same run)",
            met=p99 is not None and p99 <= LAG_TARGET_MS,
            details={"samples": len(lags), "idle_samples": len(idle_lags),
                     "p50_ms": round(percentile(lags, 50) * 1000, 2) if lags else None,
                     "p99_ms": p99 and round(p99, 2),
                     "max_ms": round(max(lags) * 1000, 2) if lags else None,
                     "idle_p50_ms": round(percentile(idle_lags, 50) * 1000, 2)
                     if idle_lags else None,
                     "under": "the engine run of the `engine` figure (projections in their "
                              "own process)"})
    return engine, lag, run.ids
