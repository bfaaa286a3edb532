"""The idempotency key of a step call and the actor of the engine's events, from the domain."""

from __future__ import annotations

import dataclasses
from uuid import UUID

import pytest
from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder, Mapper, UUIDAsHex

from domain.exceptions import StepNotFound
from domain.workflow import Workflow
from tests.unit.sagas import (
    ASSIGN,
    NOW,
    PICK,
    RESERVE,
    completed_through,
    executing_workflow,
    ms,
    order_fulfillment_steps,
    recoverable,
    replay,
    saved,
    unrecoverable,
)


def failed_for_good_at(wf: Workflow, step_id: str) -> None:
    """Starts the step and fails it unrecoverably: the saga fails and compensates."""
    wf.start_step(step_id, NOW + ms(10_000))
    wf.handle_step_failure(step_id, unrecoverable(step_id), NOW + ms(10_100))


def compensate_all(wf: Workflow) -> None:
    for step_id in list(wf.pending_compensation()):
        wf.start_step_compensation(step_id, NOW + ms(11_000))
        wf.mark_step_compensated(step_id, NOW + ms(11_100))
    wf.complete_compensation(NOW + ms(11_200))


class TestIdempotencyKey:
    def test_names_the_workflow_and_the_step(self) -> None:
        wf = executing_workflow()
        assert wf.idempotency_key(RESERVE) == f"{wf.id}:{RESERVE}"

    def test_is_the_same_for_every_attempt_of_one_execution(self) -> None:
        wf = executing_workflow()
        keys = []
        for attempt in range(3):
            wf.start_step(RESERVE, NOW + ms(attempt * 5000))
            keys.append(wf.idempotency_key(RESERVE))
            wf.handle_step_failure(RESERVE, recoverable(RESERVE), NOW + ms(attempt * 5000 + 10))
        assert wf.step(RESERVE).attempts == 3
        assert keys == [f"{wf.id}:{RESERVE}"] * 3

    def test_a_compensation_has_a_key_of_its_own(self) -> None:
        wf = completed_through(RESERVE, ASSIGN)
        failed_for_good_at(wf, PICK)
        assert wf.idempotency_key(ASSIGN, compensation=True) == f"{wf.id}:{ASSIGN}:compensate"

    def test_a_workflow_retry_starts_a_new_run_for_the_steps_it_runs_again(self) -> None:
        wf = completed_through(RESERVE)
        failed_for_good_at(wf, ASSIGN)
        compensate_all(wf)
        before = (wf.idempotency_key(RESERVE), wf.idempotency_key(ASSIGN),
                  wf.idempotency_key(RESERVE, compensation=True))
        wf.retry(NOW + ms(20_000))
        after = (wf.idempotency_key(RESERVE), wf.idempotency_key(ASSIGN),
                 wf.idempotency_key(RESERVE, compensation=True))
        assert before == (f"{wf.id}:{RESERVE}", f"{wf.id}:{ASSIGN}",
                          f"{wf.id}:{RESERVE}:compensate")
        assert after == (f"{wf.id}:{RESERVE}:1", f"{wf.id}:{ASSIGN}:1",
                         f"{wf.id}:{RESERVE}:1:compensate")

    def test_is_derived_from_the_history_alone(self) -> None:
        wf = Workflow.create(steps=order_fulfillment_steps(), now=NOW,
                             input={"orderId": "ORD-1"})
        wf.start(NOW)
        failed_for_good_at(wf, RESERVE)
        wf.retry(NOW + ms(20_000))
        replayed = replay(wf.collect_events())
        from_snapshot = Workflow.from_snapshot_state(wf.id, wf.version, wf.snapshot_state())
        assert replayed.idempotency_key(RESERVE) == f"{wf.id}:{RESERVE}:1"
        assert from_snapshot.idempotency_key(RESERVE) == f"{wf.id}:{RESERVE}:1"

    def test_an_unknown_step_is_refused(self) -> None:
        with pytest.raises(StepNotFound):
            executing_workflow().idempotency_key("no-such-step")


class TestActor:
    def test_events_recorded_for_an_actor_name_it_through_the_whole_failure_path(self) -> None:
        wf = completed_through(RESERVE)
        wf.start_step(ASSIGN, NOW + ms(5000), actor="engine:w1")
        wf.handle_step_failure(ASSIGN, unrecoverable(ASSIGN), NOW + ms(5100), actor="engine:w1")
        events = wf.collect_events()
        assert [(type(e).__name__, e.actor) for e in events] == [
            ("StepStarted", "engine:w1"), ("StepFailed", "engine:w1"), ("Failed", "engine:w1"),
            ("CompensationStarted", "engine:w1")]

    def test_an_event_recorded_without_one_says_none(self) -> None:
        wf = executing_workflow()
        wf.start_step(RESERVE, NOW)
        [started] = wf.collect_events()
        assert started.actor is None

    def test_an_event_stored_before_events_had_an_actor_reads_as_none(self) -> None:
        transcoder = JSONTranscoder()
        for transcoding in (UUIDAsHex(), DatetimeAsISO()):
            transcoder.register(transcoding)
        mapper: Mapper[UUID] = Mapper(transcoder)
        wf = saved(executing_workflow())
        wf.start_step(RESERVE, NOW, actor="engine:w1")
        [started] = wf.collect_events()
        stored = mapper.to_stored_event(started)
        state = transcoder.decode(stored.state)
        del state["actor"]
        event = mapper.to_domain_event(dataclasses.replace(stored,
                                                           state=transcoder.encode(state)))
        assert isinstance(event, Workflow.StepStarted)
        assert event.actor is None
        assert event.step_id == RESERVE
