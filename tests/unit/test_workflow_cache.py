"""The projections' aggregate cache: what it keeps between batches, and the value it
remembers beside each aggregate."""

from __future__ import annotations

from typing import Any

import pytest
from eventsourcing.domain import OriginatorVersionError

from domain.workflow import Workflow
from projections.aggregates import WorkflowCache
from tests.unit.sagas import NOW, ORDER_ID, ORDER_STEP_IDS, order_fulfillment_steps, run_step


def _stream(*, complete: bool) -> list[Any]:
    """A workflow's events as the store holds them: all four steps and its completion, or
    the first step only (still in flight)."""
    wf = Workflow.create(steps=order_fulfillment_steps(), now=NOW, input={"orderId": ORDER_ID},
                         definition_id="order-fulfillment")
    wf.start(NOW)
    for step_id in ORDER_STEP_IDS if complete else ORDER_STEP_IDS[:1]:
        run_step(wf, step_id)
    if complete:
        wf.complete(NOW)
    return list(wf.collect_events())


class TestEviction:
    def test_a_completed_workflow_leaves_the_cache_when_the_batch_is_done(self):
        cache = WorkflowCache(maxsize=100)
        done, running = _stream(complete=True), _stream(complete=False)
        for event in [*done, *running]:
            cache.fold(event)
        assert len(cache) == 2  # both stay until the batch's rows are written
        cache.trim()
        assert len(cache) == 1
        assert cache.get(running[0].originator_id).version == len(running)
        with pytest.raises(KeyError):
            cache.get(done[0].originator_id)

    def test_beyond_its_size_the_least_recently_used_workflow_goes(self):
        cache = WorkflowCache(maxsize=1)
        first, second = _stream(complete=False), _stream(complete=False)
        for event in [*first, *second]:
            cache.fold(event)
        cache.trim()
        assert len(cache) == 1
        assert cache.get(second[0].originator_id).version == len(second)


class TestDerivedValue:
    def test_the_value_before_an_event_is_the_one_computed_after_the_previous(self):
        cache = WorkflowCache()
        stream = _stream(complete=False)
        calls: list[int] = []

        def version(wf: Workflow) -> int:
            calls.append(wf.version)
            return wf.version

        pairs = [cache.fold_derived(event, version) for event in stream]
        assert pairs == [(None, 1)] + [(v, v + 1) for v in range(1, len(stream))]
        assert calls == list(range(1, len(stream) + 1))  # once per event

    def test_a_forgotten_value_is_computed_from_the_aggregate_in_the_cache(self):
        cache = WorkflowCache()
        stream = _stream(complete=False)
        for event in stream[:2]:
            cache.fold_derived(event, lambda wf: wf.version)
        cache.clear()
        for event in stream[:2]:  # as `prepare` reconstructs it: without the value
            cache.fold(event)
        assert cache.fold_derived(stream[2], lambda wf: wf.version * 10) == (20, 30)

    def test_an_event_out_of_turn_changes_nothing(self):
        cache = WorkflowCache()
        stream = _stream(complete=False)
        cache.fold(stream[0])
        with pytest.raises(OriginatorVersionError):
            cache.fold(stream[2])
        assert cache.get(stream[0].originator_id).version == 1
