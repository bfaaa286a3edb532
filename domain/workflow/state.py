"""The workflow's state fields, each declared once on the aggregate with `state_field(...)`:
its type (the annotation), how a snapshot keeps it (its codec) and what a new workflow
starts with. The Created event and the snapshot codec iterate over the declarations, so a
new field is one line on the aggregate (plus the event that changes it)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from functools import cache
from typing import Any, TypeVar

from domain.copying import copy_value, is_immutable
from domain.step import StepExecution
from domain.workflow_error import WorkflowError

A = TypeVar("A")


def _same(value: Any) -> Any:
    return value


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _dt(value: Any) -> Any:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


@dataclass(frozen=True, slots=True)
class Codec:
    """How a snapshot keeps a field: `encode` makes it JSON-able, `decode` restores it."""

    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


PLAIN = Codec(_same, _same)
TIME = Codec(_iso, _dt)
LIST = Codec(list, list)
DICT = Codec(_same, dict)
STEPS = Codec(lambda steps: [s.to_dict() for s in steps.values()],
              lambda data: {d["spec"]["step_id"]: StepExecution.from_dict(d) for d in data})
ERROR = Codec(lambda error: error.to_dict() if error is not None else None,
              lambda data: WorkflowError.from_dict(data) if data else None)
ERRORS = Codec(lambda errors: [e.to_dict() for e in errors],
               lambda data: [WorkflowError.from_dict(e) for e in data])


def enum_codec(kind: type[Enum]) -> Codec:
    """A snapshot keeps an enum by its value."""
    return Codec(lambda member: member.value, kind)


class _Given:
    def __repr__(self) -> str:
        return "GIVEN"


# The value of a field the Created event gives (it has no initial value of its own).
GIVEN: Any = _Given()


@dataclass(frozen=True, slots=True, eq=False)
class StateField:
    """One field of the aggregate's state; its name is the attribute it is declared as."""

    codec: Codec
    initial: Any
    name: str = ""

    def __set_name__(self, owner: type, name: str) -> None:
        object.__setattr__(self, "name", name)

    def fresh(self) -> Any:
        """The initial value, a copy of its own (a new workflow's lists are its own)."""
        return copy_value(self.initial, {})


def state_field(codec: Codec = PLAIN, *, initial: Any = GIVEN) -> Any:
    """Declares a state field of the aggregate: `status: WorkflowStatus =
    state_field(enum_codec(WorkflowStatus), initial=WorkflowStatus.PENDING)`. Without
    `initial`, the Created event gives the value."""
    return StateField(codec, initial)


@cache
def state_fields(cls: type) -> tuple[StateField, ...]:
    """The state fields `cls` declares, in declaration order."""
    found: dict[str, StateField] = {}
    for klass in reversed(cls.__mro__):
        found.update({name: value for name, value in vars(klass).items()
                      if isinstance(value, StateField)})
    return tuple(found.values())


@cache
def _start_plan(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    """(name, initial value, whether a new aggregate needs a copy of it) of each field."""
    return tuple((f.name, f.initial, f.initial is not GIVEN and not is_immutable(f.initial))
                 for f in state_fields(cls))


def start_state(aggregate: Any, given: Mapping[str, Any]) -> None:
    """Sets every field of a new aggregate, in declaration order: the `given` ones from the
    Created event, the others to their initial values (shared when immutable).

    Written into the instance's `__dict__`, as `setattr` would (a `StateField` is not a
    data descriptor, and the aggregate has no `__setattr__`): the read models fold a
    Created event for every workflow, and 32 `setattr` calls were a third of it."""
    state = vars(aggregate)
    for name, initial, copy in _start_plan(type(aggregate)):
        if initial is GIVEN:
            state[name] = given[name]
        else:
            state[name] = copy_value(initial, {}) if copy else initial


def encode_state(aggregate: Any) -> dict[str, Any]:
    """The whole state as JSON-able data (what a snapshot stores)."""
    state = {f.name: f.codec.encode(getattr(aggregate, f.name))
             for f in state_fields(type(aggregate))}
    state["modified_on"] = _iso(aggregate.modified_on)
    return state


def decode_state(cls: type[A], aggregate_id: uuid.UUID, version: int,
                 state: Mapping[str, Any]) -> A:
    """The aggregate `encode_state` gave `state` for. A field missing from a snapshot taken
    before the field existed starts at its initial value (one the Created event gives
    cannot be missing)."""
    aggregate: Any = object.__new__(cls)
    # The private attributes the library's Created event sets (tests/unit/test_library_pins).
    aggregate.__base_init__(aggregate_id, version, _dt(state["created_at"]))
    aggregate.modified_on = _dt(state["modified_on"])
    for f in state_fields(cls):
        if f.name in state or f.initial is GIVEN:
            setattr(aggregate, f.name, f.codec.decode(state[f.name]))
        else:
            setattr(aggregate, f.name, f.fresh())
    return aggregate
