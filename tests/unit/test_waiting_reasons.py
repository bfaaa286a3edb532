"""Waiting reasons are typed by their kind (a WaitingReason is still the text a workflow
records): a plan says whether caps alone held work back without reading the wording."""

from __future__ import annotations

import copy
import pickle
import uuid
from datetime import UTC, datetime

from domain.enums import WorkflowPriority
from domain.waveless import Candidate, WaitingReason, WaitKind, plan_batch
from tests.unit.sagas import NOW, pending_workflow

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def candidate(priority: str = "NORMAL", service: str | None = None,
              cut_off: datetime | None = None) -> Candidate:
    return Candidate(uuid.uuid4(), WorkflowPriority(priority), T0, service, cut_off)


class TestReasonsKeepTheirWording:
    def test_each_reason_reads_as_it_always_did_and_says_its_kind(self):
        cases = [
            (WaitingReason.cap_reached("warehouse-service"), WaitKind.CAP_REACHED,
             "cap reached: warehouse-service"),
            (WaitingReason.queued(WorkflowPriority.NORMAL, by_slack=False), WaitKind.QUEUED,
             "queued: batch full (NORMAL priority)"),
            (WaitingReason.queued(WorkflowPriority.HIGH, by_slack=True), WaitKind.QUEUED,
             "queued: batch full (HIGH priority, by slack to cut-off)"),
            (WaitingReason.release_paused("service error rate >= 0.5"),
             WaitKind.RELEASE_PAUSED, "release paused: service error rate >= 0.5"),
        ]
        for reason, kind, text in cases:
            assert reason == text and str(reason) == text and type(str(reason)) is str
            assert reason.kind is kind

    def test_a_copy_keeps_the_kind(self):
        reason = WaitingReason.cap_reached("warehouse-service")
        for copied in (copy.copy(reason), copy.deepcopy(reason),
                       pickle.loads(pickle.dumps(reason))):
            assert copied == reason and copied.kind is WaitKind.CAP_REACHED

    def test_a_workflow_records_the_plain_text(self):
        wf = pending_workflow()
        assert wf.note_waiting(NOW, WaitingReason.cap_reached("warehouse-service"))
        event = wf.collect_events()[-1]
        assert type(event.reason) is str and event.reason == "cap reached: warehouse-service"
        assert type(wf.waiting_reason) is str
        assert not wf.note_waiting(NOW, WaitingReason.cap_reached("warehouse-service"))


class TestHeldBackOnlyByCaps:
    def test_true_when_every_waiting_one_waits_for_a_cap(self):
        plan = plan_batch([candidate(service="warehouse-service")], T0,
                          in_flight={"warehouse-service": 1}, wip_caps={"warehouse-service": 1})
        assert plan.held_back_only_by_caps

    def test_false_when_one_waits_for_a_full_batch(self):
        plan = plan_batch([candidate(service="warehouse-service"), candidate(), candidate()],
                          T0, batch_size=1, in_flight={"warehouse-service": 1},
                          wip_caps={"warehouse-service": 1})
        kinds = {reason.kind for reason in plan.waiting.values()}
        assert kinds == {WaitKind.CAP_REACHED, WaitKind.QUEUED}
        assert not plan.held_back_only_by_caps

    def test_false_when_release_is_paused_or_nothing_waits(self):
        paused = plan_batch([candidate()], T0, load_score=99)
        assert paused.paused_reason is not None
        assert paused.paused_reason.kind is WaitKind.RELEASE_PAUSED
        assert not paused.held_back_only_by_caps
        assert not plan_batch([candidate()], T0).held_back_only_by_caps

