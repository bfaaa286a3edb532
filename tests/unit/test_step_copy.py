"""A workflow's deep copy (the aggregate cache hands one out per load) is independent."""

from __future__ import annotations

import copy
import uuid
from datetime import datetime
from enum import Enum
from typing import Any

from domain.step import StepExecution, StepSpec
from domain.workflow import Workflow
from domain.workflow_error import WorkflowError
from tests.unit.sagas import ASSIGN, NOW, PICK, RESERVE, completed_through, ms, unrecoverable


def _execution() -> StepExecution:
    spec = StepSpec.from_dict({"step_id": "pick", "service": "warehouse-service",
                               "operation": "pick", "input": {"sku": "A"}})
    return StepExecution(spec, input_data={"sku": "A", "qty": [1]}, output={"pickId": "p-1"})


def test_a_copied_execution_shares_its_immutable_spec_but_not_its_dicts() -> None:
    original = _execution()
    copied = copy.deepcopy(original)
    assert copied == original and copied is not original
    assert copied.spec is original.spec
    assert copied.input_data is not original.input_data and copied.output is not original.output
    copied.input_data["qty"].append(2)  # type: ignore[index]
    copied.output["pickId"] = "p-2"  # type: ignore[index]
    copied.attempts = 3
    assert original.input_data == {"sku": "A", "qty": [1]}
    assert original.output == {"pickId": "p-1"} and original.attempts == 0


def _mutable_ids(value: Any, found: set[int] | None = None) -> set[int]:
    """Ids of every object reachable from `value` that could change in place."""
    found = set() if found is None else found
    if isinstance(value, _IMMUTABLE_LEAVES) or id(value) in found:
        return found
    if isinstance(value, StepSpec | WorkflowError | Enum):
        return found  # frozen, immutable through and through
    found.add(id(value))
    if isinstance(value, dict):
        for k, v in value.items():
            _mutable_ids(k, found)
            _mutable_ids(v, found)
    elif isinstance(value, list | tuple | set):
        for v in value:
            _mutable_ids(v, found)
    elif hasattr(value, "__dict__") or hasattr(value, "__slots__"):
        names = list(getattr(value, "__dict__", {})) or [
            n for c in type(value).__mro__ for n in getattr(c, "__slots__", ())]
        for name in names:
            _mutable_ids(getattr(value, name, None), found)
    return found


_IMMUTABLE_LEAVES = (str, int, float, bytes, type(None), datetime, uuid.UUID)


def _busy_workflow() -> Workflow:
    """A workflow with every kind of state set: outputs, an error, a compensation."""
    wf = completed_through(RESERVE, ASSIGN, input={"orderId": "o-1", "items": [{"sku": "A"}]})
    wf.start_step(PICK, NOW + ms(4000))
    wf.handle_step_failure(PICK, unrecoverable(PICK), NOW + ms(5000))
    wf.collect_events()
    return wf


def test_a_copied_workflow_equals_the_original_and_shares_nothing_that_can_change() -> None:
    original = _busy_workflow()
    assert original.errors and original.compensation_queue  # the state this test is about
    copied = copy.deepcopy(original)
    assert copied.snapshot_state() == original.snapshot_state()
    assert vars(copied).keys() == vars(original).keys()
    assert _mutable_ids(original).isdisjoint(_mutable_ids(copied))


def test_changing_a_copy_leaves_the_original_as_it_was() -> None:
    original = _busy_workflow()
    before = original.snapshot_state()
    copied = copy.deepcopy(original)
    copied.input["items"][0]["sku"] = "B"
    copied.steps[RESERVE].output["extra"] = 1  # type: ignore[index]
    copied.compensation_queue.clear()
    copied.errors.append(unrecoverable(ASSIGN))
    copied.steps[PICK].attempts += 5
    assert original.snapshot_state() == before
