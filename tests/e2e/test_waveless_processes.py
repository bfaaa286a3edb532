"""Waveless release across real processes: two `wes worker` processes (each a candidate
releaser) and a `wes projections run` process feeding them the read models."""

from __future__ import annotations

import itertools
from uuid import UUID

from application.workflows import Workflows
from domain.waveless_batch import WavelessBatch
from tests.support.processes import output, spawn_wes, spawn_worker, stop
from tests.support.waiting import event_types, wait_for_status

ITEMS = [{"sku": "SKU-1", "quantity": 1}]


def test_workers_release_waveless_orders_in_batches_at_the_interval_exactly_once(
        app: Workflows, db, simulator):
    settings = {"WES_WAVELESS_BATCH_SIZE": "5", "WES_WAVELESS_INTERVAL_MS": "400"}
    # The process that enables waveless records its settings with each workflow.
    app.waveless_defaults = (5, 400)
    projector = spawn_wes(db, simulator.base_url, "projections", "run")
    workers = [spawn_worker(db, simulator.base_url, concurrency=4, **settings)
               for _ in range(2)]
    try:
        ids = [app.start_workflow(definition="order-fulfillment", waveless=True,
                                  priority=priority,
                                  input={"orderId": f"WV-{i}", "items": ITEMS}).workflow_id
               for i, priority in zip(range(18), itertools.cycle(["LOW", "HIGH", "NORMAL"]),
                                      strict=False)]
        for wf_id in ids:
            try:
                wait_for_status(app, wf_id, "COMPLETED", timeout=60)
            except AssertionError:
                raise AssertionError(output(workers[0])[-2000:]) from None
    finally:
        for process in [*workers, projector]:
            stop(process)
    for wf_id in ids:
        types = event_types(app, wf_id)
        assert types.count("ReleasedInBatch") == 1 and types.count("Started") == 1
    batch_ids = {app.get_workflow(i).batch_id for i in ids}
    batches: list[WavelessBatch] = sorted((app.repository.get(UUID(b)) for b in batch_ids),
                                          key=lambda b: b.created_on)
    assert sum(len(b.members) for b in batches) == 18
    # Each batch respects the size it was cut with: 5 configured, doubled while the
    # services are lightly loaded (score < 50), never more.
    assert all(len(b.members) <= b.batch_size <= 10 for b in batches)
    assert len(batches) >= 2
    # Adaptive interval: 400 ms configured, x2 with fewer than 10 waiting (800 ms).
    gaps = [(b.created_on - a.created_on).total_seconds() for a, b in itertools.pairwise(batches)]
    assert all(gap >= 0.35 for gap in gaps), gaps
