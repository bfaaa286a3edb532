"""Stored topics survive the split of domain/workflow.py into a package: events and snapshots
written by the code before it (the literals below, recorded with it) decode into today's
classes, and the same commands store the same bytes today, so a worker not yet upgraded
reads what an upgraded one writes, and the other way round."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic, resolve_topic

from application.workflows import Workflows
from domain.workflow import Workflow, events
from tests.support.override_history import workflow_event_classes

WORKFLOW_ID = uuid.UUID("00000000-0000-4000-8000-000000000015")
T0 = datetime(2025, 10, 22, 9, 0, tzinfo=UTC)

# (topic, state) as the single-module domain/workflow.py stored them for `_commands()`:
# three events (StepStarted at class_version 2), then a snapshot at version 3.
STORED_BEFORE_THE_SPLIT: list[tuple[str, str]] = [
    ('domain.workflow:Workflow.Created',
        '{"timestamp":{"_type_":"datetime_iso","_data_":"2025-10-22T09:00:00+00:00"},"originator_'
        'topic":"domain.workflow:Workflow","correlation_id":"wf-00000000-0000-4000-8000-000000000'
        '015","actor":null,"definition_id":"tiny","definition_version":1,"name":"tiny","workflow_'
        'type":"ORDER_FULFILLMENT","priority":"NORMAL","steps":[{"step_id":"reserve","name":"rese'
        'rve","service":"inventory-service","operation":"reserve","execution_order":1,"input":{},'
        '"timeout_ms":5000,"retry_policy":{"max_retries":3,"initial_delay_ms":1000,"max_delay_ms"'
        ':10000,"multiplier":2.0,"exponential":true},"compensation":null}],"input":{},"triggered_'
        'by":"oms","max_retries":3,"driven_by":"engine","timeout_ms":300000,"cut_off":null}'),
    ('domain.workflow:Workflow.Started',
        '{"timestamp":{"_type_":"datetime_iso","_data_":"2025-10-22T09:00:00.001000+00:00"},"corr'
        'elation_id":"wf-00000000-0000-4000-8000-000000000015","actor":"oms"}'),
    ('domain.workflow:Workflow.StepStarted',
        '{"timestamp":{"_type_":"datetime_iso","_data_":"2025-10-22T09:00:00.002000+00:00"},"corr'
        'elation_id":"wf-00000000-0000-4000-8000-000000000015","actor":null,"step_id":"reserve","'
        'attempt":1,"input_data":{},"deadline":{"_type_":"datetime_iso","_data_":"2025-10-22T09:0'
        '0:05.002000+00:00"},"instance":"inventory-1","class_version":2}'),
    ('domain.workflow:Workflow.Snapshot',
        '{"timestamp":{"_type_":"datetime_iso","_data_":"2025-10-22T09:00:00.002000+00:00"},"topi'
        'c":"domain.workflow:Workflow","state":{"definition_id":"tiny","definition_version":1,"na'
        'me":"tiny","workflow_type":"ORDER_FULFILLMENT","priority":"NORMAL","status":"EXECUTING",'
        '"steps":[{"spec":{"step_id":"reserve","name":"reserve","service":"inventory-service","op'
        'eration":"reserve","execution_order":1,"input":{},"timeout_ms":5000,"retry_policy":{"max'
        '_retries":3,"initial_delay_ms":1000,"max_delay_ms":10000,"multiplier":2.0,"exponential":'
        'true},"compensation":null},"status":"EXECUTING","attempts":1,"input_data":{},"output":nu'
        'll,"duration_ms":null,"started_at":"2025-10-22T09:00:00.002000+00:00","deadline":"2025-1'
        '0-22T09:00:05.002000+00:00","completed_at":null,"next_attempt_at":null,"last_error":null'
        ',"compensation_attempts":0,"compensation_deadline":null,"compensation_next_attempt_at":n'
        'ull,"compensation_output":null,"applied_in_run":null}],"input":{},"triggered_by":"oms","'
        'correlation_id":"wf-00000000-0000-4000-8000-000000000015","max_retries":3,"retry_count":'
        '0,"driven_by":"engine","timeout_ms":300000,"cut_off":null,"executed_steps":[],"compensat'
        'ed_steps":[],"compensation_queue":[],"errors":[],"created_at":"2025-10-22T09:00:00+00:00'
        '","started_at":"2025-10-22T09:00:00.001000+00:00","finished_at":null,"modified_on":"2025'
        '-10-22T09:00:00.002000+00:00","paused_reason":null,"cancel_reason":null,"cancel_compensa'
        'te":false,"waveless":null,"batch_id":null,"late":false,"waiting_reason":null}}'),
]


def _commands() -> Workflow:
    wf = Workflow.create(steps=[{"step_id": "reserve", "service": "inventory-service",
                                 "operation": "reserve"}],
                         now=T0, workflow_id=WORKFLOW_ID, definition_id="tiny",
                         triggered_by="oms")
    wf.start(T0 + timedelta(milliseconds=1), actor="oms")
    wf.start_step("reserve", T0 + timedelta(milliseconds=2), instance="inventory-1")
    return wf


@pytest.fixture(scope="module")
def mapper():
    return Workflows(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper


def _decode(mapper, version: int, topic: str, state: str):
    return mapper.to_domain_event(StoredEvent(originator_id=WORKFLOW_ID,
                                              originator_version=version, topic=topic,
                                              state=state.encode()))


class TestTopics:
    @pytest.mark.parametrize("cls", sorted(workflow_event_classes(), key=lambda c: c.__name__),
                             ids=lambda c: c.__name__)
    def test_every_event_is_stored_under_the_topic_it_always_had(self, cls):
        topic = f"domain.workflow:Workflow.{cls.__name__}"
        assert get_topic(cls) == topic
        assert resolve_topic(topic) is cls

    def test_every_event_of_the_events_module_is_named_on_the_aggregate(self):
        # One left out would be stored under `domain.workflow.events:<Name>` if triggered.
        defined = {name for name, value in vars(events).items() if isinstance(value, type)
                   and issubclass(value, events.WorkflowEvent)
                   and value is not events.WorkflowEvent}
        assert defined == {cls.__name__ for cls in workflow_event_classes()}
        for name in defined:
            assert issubclass(getattr(Workflow, name), getattr(events, name))

    def test_snapshots_keep_their_topic_and_name_the_aggregate_by_its_topic(self):
        assert get_topic(Workflow.Snapshot) == "domain.workflow:Workflow.Snapshot"
        assert get_topic(Workflow) == Workflow.TOPIC_NAME == "domain.workflow:Workflow"
        assert Workflow.Snapshot.take(_commands()).topic == "domain.workflow:Workflow"


class TestStoredBeforeTheSplit:
    def test_old_events_decode_into_todays_classes_and_fold_to_todays_state(self, mapper):
        stored_events = STORED_BEFORE_THE_SPLIT[:-1]
        decoded = [_decode(mapper, n, topic, state)
                   for n, (topic, state) in enumerate(stored_events, start=1)]
        assert [type(e) for e in decoded] == [Workflow.Created, Workflow.Started,
                                              Workflow.StepStarted]
        folded = None
        for event in decoded:
            folded = event.mutate(folded)
        assert folded.snapshot_state() == _commands().snapshot_state()

    def test_an_old_snapshot_restores_todays_state(self, mapper):
        topic, state = STORED_BEFORE_THE_SPLIT[-1]
        snapshot = _decode(mapper, 3, topic, state)
        assert type(snapshot) is Workflow.Snapshot
        restored = snapshot.mutate(None)
        today = _commands().snapshot_state()
        # A step's routed instance was added to the state after this snapshot was taken: a
        # field the snapshot lacks starts at its initial value; everything else is the same.
        for step in today["steps"]:
            assert step.pop("instance") is not None
        state = restored.snapshot_state()
        assert [step.pop("instance") for step in state["steps"]] == [None]
        assert state == today
        assert restored.version == 3

    def test_the_same_commands_store_the_same_events_byte_for_byte(self, mapper):
        wf = _commands()
        stored = [mapper.to_stored_event(e) for e in wf.collect_events()]
        assert [(s.topic, s.state.decode()) for s in stored] == STORED_BEFORE_THE_SPLIT[:-1]

    def test_a_snapshot_stores_the_same_state_as_before(self, mapper):
        # The same fields and values; only where `modified_on` sits in the JSON moved.
        stored = mapper.to_stored_event(Workflow.Snapshot.take(_commands()))
        topic, state = STORED_BEFORE_THE_SPLIT[-1]
        assert stored.topic == topic
        now, before = json.loads(stored.state), json.loads(state)
        # Added since: the routed instance of each step and the three errors the read
        # models show (none yet in this history).
        assert [step.pop("instance") for step in now["state"]["steps"]] == ["inventory-1"]
        assert {name: now["state"].pop(name)
                for name in ("current_error", "saga_error", "last_failure")} \
            == dict.fromkeys(("current_error", "saga_error", "last_failure"))
        assert now == before
