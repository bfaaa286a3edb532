"""Projector processes (`wes projections run`) killed with SIGKILL, and competing."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from uuid import UUID

import pytest

from application.database import Database
from application.locks import LockRole
from application.workflows import Workflows
from bootstrap.container import open_workflows, read_model_views
from projections.read_models import PROJECTION_NAMES, ProjectionViews
from projections.rebuild import rebuild
from tests.support.processes import ROOT, kill9, output, stop
from tests.support.projection_history import (
    StepClock,
    bulk_completed,
    completed_orders,
    dump,
    mixed_history,
)
from tests.support.waiting import wait_for

KILLS = 3
_HOLDERS = ("SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory'"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND classid = %s::oid AND objid = %s::oid AND objsubid = 2 AND granted")


def spawn_projector(db: Database, *command: str) -> subprocess.Popen[bytes]:
    """`wes projections run` (or another projections command) in its own process, logging
    to a temporary file."""
    log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "projections", *(command or ("run",))], cwd=ROOT,
        env={**os.environ, "DATABASE_URL": db.dsn, "WES_SCHEMA": db.schema,
             "WES_LOG_JSON": "1"},
        stdout=subprocess.DEVNULL, stderr=log)
    process.log = log  # type: ignore[attr-defined]
    return process


@pytest.fixture
def app(db: Database) -> Iterator[Workflows]:
    workflows = open_workflows(db, clock=StepClock())
    yield workflows
    workflows.close()


@pytest.fixture
def models(db: Database, app: Workflows) -> Iterator[ProjectionViews]:
    read_models = read_model_views(db, app)
    yield read_models
    read_models.close()


def holders(models: ProjectionViews, role: LockRole) -> dict[str, int]:
    """How many sessions hold each projection's lock of this role."""
    counts = {}
    with models.progress.datastore.transaction(commit=False) as curs:
        for name in PROJECTION_NAMES:
            key = models.view(name).lock_key(role)
            curs.execute(_HOLDERS, (key.class_id, key.object_id))
            row = curs.fetchone()
            counts[name] = row["n"] if row else 0
    return counts


def positions(models: ProjectionViews) -> int:
    return min(s.position for s in models.status())


def head(app: Workflows) -> int:
    return app.recorder.max_notification_id() or 0


class Writer(threading.Thread):
    """Writes workflows until stopped: mixed histories and completed orders."""

    def __init__(self, app: Workflows) -> None:
        super().__init__(daemon=True)
        self.app = app
        self.stopping = threading.Event()
        self.written: list[UUID] = []

    def run(self) -> None:
        for n in range(10_000):
            if self.stopping.is_set():
                return
            if n % 4 == 0:
                self.written.extend(mixed_history(self.app, prefix=f"M{n}").values())
            else:
                self.written.extend(completed_orders(self.app, 1, prefix=f"C{n}"))

    def stop(self) -> list[UUID]:
        self.stopping.set()
        self.join()
        return self.written


def test_killed_mid_stream_again_and_again_the_read_models_equal_a_rebuild(
        db: Database, app: Workflows, models: ProjectionViews) -> None:
    writer = Writer(app)
    writer.start()
    kills = 0
    try:
        for _ in range(KILLS):
            reached = positions(models)
            projector = spawn_projector(db)
            try:
                wait_for(lambda reached=reached: positions(models) > reached, 20,
                         message="the projector to apply events")
                threading.Event().wait(random.uniform(0.0, 0.3))
            finally:
                kill9(projector)
            kills += 1
        written = writer.stop()
        projector = spawn_projector(db)
        try:
            models.wait(head(app), timeout=30)
            live = dump(models)
            assert {s.state for s in models.status()} == {"running"}, output(projector)
        finally:
            assert stop(projector) == 0, output(projector)
    finally:
        writer.stopping.set()
    assert kills == KILLS
    assert {r[0] for r in live["wes_progress"]} == {repr(i) for i in written}
    rebuild(models)
    assert dump(models) == live


def test_two_projector_processes_one_active_the_other_takes_over(
        db: Database, app: Workflows, models: ProjectionViews) -> None:
    first = spawn_projector(db)
    second: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: {s.state for s in models.status()} == {"running"}, 20,
                 message="the first projector to become active")
        second = spawn_projector(db)
        wait_for(lambda: set(holders(models, LockRole.PRESENCE).values()) == {2}, 20,
                 message="the second projector to wait on standby")
        assert set(holders(models, LockRole.ACTIVE).values()) == {1}
        mixed_history(app, prefix="BEFORE")
        models.wait(head(app), timeout=20)

        kill9(first)
        wait_for(lambda: set(holders(models, LockRole.PRESENCE).values()) == {1}
                 and set(holders(models, LockRole.ACTIVE).values()) == {1}, 20,
                 message="the standby to take over")
        mixed_history(app, prefix="AFTER")
        models.wait(head(app), timeout=20)
        assert {s.state for s in models.status()} == {"running"}
        live = dump(models)
    finally:
        kill9(first)
        if second is not None:
            assert stop(second) == 0, output(second)
    rebuild(models)
    assert dump(models) == live


def test_a_rebuild_killed_midway_leaves_the_live_tables_and_resumes(
        db: Database, app: Workflows, models: ProjectionViews) -> None:
    mixed_history(app)
    head = bulk_completed(app, 300)
    projector = spawn_projector(db)
    try:
        models.wait(head, timeout=30)
    finally:
        assert stop(projector) == 0, output(projector)
    live = dump(models)

    rebuilding = spawn_projector(db, "rebuild", "--all", "--batch-size", "100")
    try:
        wait_for(lambda: (models.progress.pointer().building is not None
                          and (models.progress.generation_position(2, app.name) or 0) > 0),
                 20, message="the rebuild to commit a batch")
    finally:
        kill9(rebuilding)
    assert (models.progress.pointer().generation, models.progress.pointer().building) == (1, 2)
    assert dump(models) == live

    reports = rebuild(models)
    assert all(r.resumed_from is not None for r in reports), reports
    assert {r.generation for r in reports} == {2}
    assert dump(models) == live
