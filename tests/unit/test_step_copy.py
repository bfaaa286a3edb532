"""A workflow's deep copy (the aggregate cache hands one out per load) is independent."""

from __future__ import annotations

import copy

from domain.step import StepExecution, StepSpec


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
