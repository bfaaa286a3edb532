"""The workflow's state fields are declared once (`state_field` on the aggregate): a new
workflow sets each of them, a snapshot keeps each of them, and one taken before a field
existed restores that field at its initial value."""

from __future__ import annotations

import pytest

from domain.workflow import Workflow
from domain.workflow.state import GIVEN, state_fields
from tests.unit.sagas import NOW, executing_workflow, pending_workflow


def _declared() -> list[str]:
    return [f.name for f in state_fields(Workflow)]


class TestStateDeclaration:
    def test_every_annotated_attribute_of_the_aggregate_is_a_declared_state_field(self):
        # An annotation without `state_field` would be state no snapshot keeps.
        annotated = [name for name in Workflow.__annotations__ if name != "TOPIC_NAME"]
        assert annotated == _declared()

    def test_a_new_workflow_has_every_field_in_declaration_order(self):
        wf = pending_workflow()
        assert [name for name in vars(wf) if not name.startswith("_")] == _declared()

    def test_a_new_workflow_gets_lists_of_its_own(self):
        first, second = pending_workflow(), pending_workflow()
        first.executed_steps.append("x")
        assert second.executed_steps == []

    def test_a_snapshot_keeps_every_field_and_the_modification_time(self):
        assert set(executing_workflow().snapshot_state()) == {*_declared(), "modified_on"}


class TestOlderSnapshots:
    @pytest.mark.parametrize("name", [f.name for f in state_fields(Workflow)
                                      if f.initial is not GIVEN])
    def test_a_field_missing_from_an_older_snapshot_restores_at_its_initial_value(self, name):
        wf = pending_workflow()
        state = wf.snapshot_state()
        del state[name]
        restored = Workflow.from_snapshot_state(wf.id, wf.version, state)
        assert getattr(restored, name) == getattr(pending_workflow(), name)

    def test_a_field_the_created_event_gives_must_be_in_a_snapshot(self):
        wf = pending_workflow()
        state = wf.snapshot_state()
        del state["definition_id"]
        with pytest.raises(KeyError):
            Workflow.from_snapshot_state(wf.id, wf.version, state)

    def test_a_restored_workflow_takes_commands(self):
        wf = pending_workflow()
        restored = Workflow.from_snapshot_state(wf.id, wf.version, wf.snapshot_state())
        restored.start(NOW)
        assert restored.snapshot_state()["status"] == "EXECUTING"
