"""The audit row's data written by orjson equals `event_data` written by `json.dumps`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import pytest

from application.workflows import event_data
from domain.enums import StepStatus
from domain.workflow import Workflow
from projections.audit import event_json
from tests.unit.sagas import ASSIGN, NOW, PICK, RESERVE, order_fulfillment_steps, run_step, unrecoverable


def fields(**values: Any) -> SimpleNamespace:
    base = {"originator_id": uuid4(), "originator_version": 3,
            "timestamp": datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
            "originator_topic": "domain.workflow:Workflow"}
    return SimpleNamespace(**base, **values)


def as_before(event: Any) -> Any:
    return json.loads(json.dumps(event_data(event)))


@pytest.mark.parametrize("value", [
    None, True, 0, -7, 2**63 - 1, 1.5, 1e-300, "plain", "ünïcødé \u2028 \"quoted\" \\ \n\t",
    datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),  # no microseconds
    datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(2025, 1, 2, 3, 4, 5, 7),  # naive
    datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(seconds=3725))),
    UUID("12345678-1234-5678-1234-567812345678"),
    StepStatus.COMPLETED,
    (1, "two", (3.0, None)),
    {"nested": [{"at": datetime(2025, 1, 1, tzinfo=UTC), "id": uuid4()}], "empty": {}},
    {1: "int key", 2.5: "float key", None: "none key", False: "bool key"},
    2**70,
])
def test_any_field_value_is_written_as_event_data_writes_it(value: Any) -> None:
    event = fields(value=value, other="x")
    assert json.loads(event_json(event)) == as_before(event)


def test_a_value_json_cannot_write_still_fails() -> None:
    for value in (Decimal("1.5"), {1, 2}, object()):
        with pytest.raises(TypeError):
            event_json(fields(value=value))


def saga_events() -> list[Any]:
    """A saga's events from creation through a failure and its compensation."""
    wf = Workflow.create(steps=order_fulfillment_steps(), now=NOW, definition_id="order",
                         input={"orderId": "ORD-1", "items": [{"sku": "A", "qty": 1}]})
    wf.start(NOW)
    run_step(wf, RESERVE)
    run_step(wf, ASSIGN)
    wf.start_step(PICK, NOW)
    wf.fail(unrecoverable(PICK), NOW)
    return list(wf.collect_events())


def test_every_event_of_a_real_saga_is_written_as_before() -> None:
    events = saga_events()
    assert len(events) > 8
    for event in events:
        assert json.loads(event_json(event)) == as_before(event)
