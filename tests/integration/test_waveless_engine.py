"""Waveless release inside the running engine: projector, release loop and worker together.

The release loop reads the read models (which workflows wait, services' load) and admits
batches; every batch is an event, so batch size and interval are checked from the events.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from uuid import UUID

import pytest

from application.waveless import WavelessSettings
from application.workflows import Workflows
from bootstrap.container import engine_over, projector_runner, read_model_views
from domain.waveless_batch import WavelessBatch
from projections.read_models import ProjectionViews
from projections.waveless_signals import waveless_signals
from tests.support.waiting import wait_for_status

STEPS = [{"step_id": "pick", "service": "warehouse-service", "operation": "pick"},
         {"step_id": "pack", "service": "packing-service", "operation": "pack"}]


@pytest.fixture
def engine(app: Workflows, db) -> Iterator[ProjectionViews]:
    read_models = read_model_views(db, app)
    runner = projector_runner(read_models)
    engine = engine_over(app, {"warehouse-service": lambda call: {"picked": True},
                                 "packing-service": lambda call: {"packed": True}})
    worker = engine.worker(concurrency=2, poll_seconds=0.05)
    releaser = engine.releaser(waveless_signals(read_models),
                               WavelessSettings(batch_size=10, interval_ms=300, adaptive=False))
    runner.start()
    worker.start()
    releaser.start()
    yield read_models
    engine.close()
    runner.stop()
    read_models.close()


def batches(app: Workflows, ids) -> list[WavelessBatch]:
    batch_ids = {app.get_workflow(i).batch_id for i in ids}
    found = [app.repository.get(UUID(b)) for b in batch_ids if b]
    return sorted(found, key=lambda b: b.created_on)


def test_the_running_engine_releases_waveless_work_in_batches_at_the_interval(app, engine):
    app.waveless_defaults = (10, 300)  # as WES_WAVELESS_INTERVAL_MS=300 would
    ids = [app.start_workflow(steps=STEPS, waveless=True, priority=p,
                              input={"orderId": f"W-{i}"}).workflow_id
           for i, p in zip(range(25), itertools.cycle(["LOW", "NORMAL", "HIGH"]), strict=False)]
    for wf_id in ids:
        wait_for_status(app, wf_id, "COMPLETED", timeout=30)
    released = batches(app, ids)
    assert sum(len(b.members) for b in released) == 25
    assert all(len(b.members) <= 10 for b in released)
    assert len(released) >= 3
    gaps = [(b.created_on - a.created_on).total_seconds()
            for a, b in itertools.pairwise(released)]
    assert all(gap >= 0.25 for gap in gaps), gaps
    # Within a batch, HIGH members come before NORMAL before LOW.
    for batch in released:
        ranks = [app.get_workflow(UUID(m)).priority.rank
                 for m in batch.members]
        assert ranks == sorted(ranks)
    # The progress read model shows the batch of each workflow.
    engine.wait(app.recorder.max_notification_id(), timeout=10)
    rows = [engine.progress.get(i) for i in ids]
    assert all(row is not None and row.batch_id for row in rows)


def test_failures_that_never_reached_an_instance_do_not_pause_release(app, engine):
    bad = [{"step_id": "pick", "service": "warehouse-service", "operation": "pick",
            "input": {"sku": "${input.missing}"}}]
    failed = [app.start_workflow(steps=bad, input={}).workflow_id for _ in range(6)]
    for wf_id in failed:
        wait_for_status(app, wf_id, "COMPENSATED", timeout=20)
    engine.wait(app.recorder.max_notification_id(), timeout=10)
    assert waveless_signals(engine).load() == (None, None)
    waiting = app.start_workflow(steps=STEPS, waveless=True, input={}).workflow_id
    wait_for_status(app, waiting, "COMPLETED", timeout=20)
