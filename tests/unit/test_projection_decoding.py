"""Projections decode stored events exactly as the library's mapper does, only faster."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
    Transcoding,
    UUIDAsHex,
)
from eventsourcing.utils import get_topic

from domain.workflow import Workflow
from projections.base import _decoder
from tests.unit.test_audit_event_json import saga_events


class Span:
    """A value whose transcoding nests another transcoded value (a datetime) in a dict."""

    def __init__(self, start: datetime, label: str) -> None:
        self.start = start
        self.label = label

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Span) and (other.start, other.label) == (self.start,
                                                                           self.label)


class SpanAsDict(Transcoding):
    type = Span
    name = "span"

    def encode(self, obj: Span) -> dict[str, Any]:
        return {"start": obj.start, "label": obj.label}

    def decode(self, data: dict[str, Any]) -> Span:
        return Span(data["start"], data["label"])


def mapper() -> Mapper[UUID]:
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO(), SpanAsDict()):
        transcoder.register(transcoding)
    return Mapper(transcoder)


def stored(state: bytes | str, cls: type = Workflow.Started, version: int = 2) -> StoredEvent:
    data = state.encode() if isinstance(state, str) else state
    return StoredEvent(uuid4(), version, get_topic(cls), data)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def assert_decodes_as_the_mapper(record: StoredEvent) -> None:
    m = mapper()
    expected = m.to_domain_event(record)
    event = _decoder(m)(record)
    assert type(event) is type(expected)
    assert same(vars(event), vars(expected))


def test_every_event_of_a_real_saga() -> None:
    m = mapper()
    for event in saga_events():
        assert_decodes_as_the_mapper(m.to_stored_event(event))


def test_plain_events_do_not_need_the_mappers_own_decoding() -> None:
    m = mapper()
    records = [m.to_stored_event(event) for event in saga_events()]

    def refuse(record: StoredEvent) -> Any:
        raise AssertionError(f"the mapper decoded {record.topic}")

    m.to_domain_event = refuse  # type: ignore[method-assign]
    decode = _decoder(m)
    assert [type(decode(record)).__name__ for record in records][:3] == [
        "Created", "Started", "StepStarted"]


TIMESTAMP = '{"_type_":"datetime_iso","_data_":"2025-01-02T03:04:05.000006+00:00"}'


@pytest.mark.parametrize("fields", [
    # transcoded values nested in lists and objects, and objects shaped like one
    '"ids":[{"_type_":"uuid_hex","_data_":"' + uuid4().hex + '"}],"at":{"x":' + TIMESTAMP + "}",
    '"price":{"_type_":"decimal_str","_data_":"1.50"}',
    '"span":{"_type_":"span","_data_":{"start":' + TIMESTAMP + ',"label":"a"}}',
    '"text":"\\"_type_\\" is just text","n":"_type_"',
    '"wrapper_like":{"_type_":"x","_data_":1,"more":2}',
    # numbers orjson reads differently from json, and literals it refuses
    f'"big":{2**70},"small":{-(2**63) - 1},"long":123456789012345678901234567890.5',
    '"nan":NaN,"inf":Infinity,"huge":1e400',
    '"surrogate":"\\ud800","emoji":"\\ud83d\\ude00"',
    '"dup":1,"dup":2',
])
def test_odd_states(fields: str) -> None:
    assert_decodes_as_the_mapper(stored('{"timestamp":' + TIMESTAMP + "," + fields + "}"))


def test_an_old_class_version_is_upcast() -> None:
    state = {"timestamp": json.loads(TIMESTAMP), "correlation_id": "c", "step_id": "s",
             "attempt": 1, "output": {}, "execution_time_ms": 5}
    record = stored(json.dumps(state), Workflow.StepExecuted)
    assert_decodes_as_the_mapper(record)
    assert _decoder(mapper())(record).instance is None  # type: ignore[attr-defined]


@pytest.mark.parametrize("event_class, fields", [
    (Workflow.StepStarted, {"input_data": {}, "deadline": json.loads(TIMESTAMP)}),
    (Workflow.StepCompensationStarted, {"operation": "undo", "deadline": json.loads(TIMESTAMP)}),
])
def test_a_start_recorded_before_routing_is_upcast_without_an_instance(
        event_class: type, fields: dict[str, Any]) -> None:
    state = {"timestamp": json.loads(TIMESTAMP), "correlation_id": "c", "step_id": "s",
             "attempt": 1, **fields}
    record = stored(json.dumps(state), event_class)
    assert_decodes_as_the_mapper(record)
    assert mapper().to_domain_event(record).instance is None  # type: ignore[attr-defined]
    assert _decoder(mapper())(record).instance is None  # type: ignore[attr-defined]


@pytest.mark.parametrize("state", [
    '{"timestamp":{"_type_":"unknown","_data_":"x"}}',
    '{"timestamp":' + TIMESTAMP + ',"nested":[{"_type_":"unknown","_data_":"x"}]}',
    '{"_type_":"uuid_hex","_data_":"' + uuid4().hex + '"}',
    "[1, 2]",
    "not json",
    b'{"bad utf-8":"\xff"}',
])
def test_what_the_mapper_cannot_decode_fails_as_the_mapper_fails(state: str | bytes) -> None:
    record = stored(state)
    with pytest.raises((MapperDeserialisationError, TypeError, AttributeError)) as expected:
        mapper().to_domain_event(record)
    with pytest.raises(type(expected.value)):
        _decoder(mapper())(record)


def test_a_mapper_with_a_compressor_decodes_itself() -> None:
    m = mapper()
    m.compressor = object()  # type: ignore[assignment]
    assert _decoder(m) == m.to_domain_event


def test_decimal_and_uuid_values_keep_their_types() -> None:
    m = mapper()
    event = Workflow.Started(originator_id=uuid4(), originator_version=2,
                             timestamp=datetime(2025, 1, 1, tzinfo=UTC), correlation_id="c",
                             actor="a")
    vars(event)["extra"] = [Decimal("2.5"), uuid4()]
    decoded = _decoder(m)(m.to_stored_event(event))
    assert vars(decoded) == vars(event)
