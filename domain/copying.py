"""Fast deep copies of aggregate state.

The aggregate cache hands out a deep copy of a workflow on every load (a command mutates
what it gets; the cache must not see that until it is saved). `copy.deepcopy` spent most of
a command's copy walking values that cannot change in place (strings, times, enums, the
immutable step specs). `copy_value` shares those, copies dicts and lists itself and leaves
anything else to `copy.deepcopy`, so a field of a new type is copied by default.
Unlike `copy.deepcopy`, two references to one dict or list become two copies: aggregate
state holds no such aliases that it relies on.
"""

from __future__ import annotations

from copy import deepcopy
from datetime import datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

# Types whose values never change in place; subclasses (enums) are found on first sight.
_IMMUTABLE: set[type] = {str, int, float, bool, type(None), bytes, datetime, timedelta, UUID,
                         Decimal, frozenset}


def share(*types: type) -> None:
    """Declares types whose values a copy may share (frozen, holding only such values)."""
    _IMMUTABLE.update(types)


def is_immutable(value: Any) -> bool:
    """Whether `value` can be shared by copies (its type never changes in place)."""
    kind = type(value)
    return kind in _IMMUTABLE or issubclass(kind, Enum)


def copy_value(value: Any, memo: dict[int, Any]) -> Any:
    kind = type(value)
    if kind in _IMMUTABLE:
        return value
    if kind is dict:
        return {k: copy_value(v, memo) for k, v in value.items()}
    if kind is list:
        return [copy_value(v, memo) for v in value]
    if issubclass(kind, Enum):
        _IMMUTABLE.add(kind)
        return value
    return deepcopy(value, memo)
