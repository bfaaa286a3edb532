"""Shapes shared by every resource: bounded scalars, pages, command answers."""

from __future__ import annotations

import math
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

T = TypeVar("T")

# PostgreSQL text cannot hold NUL; refusing it here keeps such input from ever reaching
# an event (where a projector could not store it).
NO_NUL = r"^[^\x00]*$"
Text = Annotated[str, StringConstraints(pattern=NO_NUL, max_length=2000)]
ShortText = Annotated[str, StringConstraints(pattern=NO_NUL, max_length=200)]
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]+$", min_length=1,
                                        max_length=100)]
Identifier = Annotated[str, StringConstraints(pattern=r"^[^\x00]+$", min_length=1,
                                              max_length=200)]
EventTypeName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.]+$", min_length=1,
                                                 max_length=100)]
INT32 = 2_147_483_647
INT64 = 9_223_372_036_854_775_807
Position = Annotated[int, Field(ge=0, le=INT64)]
MAX_JSON_DEPTH = 32


def _clean_json(value: Any, depth: int = 0) -> Any:
    """`value` if every part of it is storable JSON (PostgreSQL's jsonb and our events)."""
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        _clean_string(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _clean_json(key, depth + 1)
            _clean_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _clean_json(item, depth + 1)
    else:
        _clean_number(value)
    return value


def _clean_string(value: str) -> None:
    if "\x00" in value:
        raise ValueError("strings must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("strings must be valid Unicode (no lone surrogates)") from None


def _clean_number(value: Any) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT64:
        raise ValueError("integers must fit in 64 bits")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("NaN and infinities are not JSON numbers")


JsonObject = Annotated[dict[str, Any], AfterValidator(_clean_json)]


class Page(BaseModel, Generic[T]):
    """A page of a list; pass `next_cursor` as `?cursor=` for the next page."""

    items: list[T]
    next_cursor: str | None = Field(
        None, description="Cursor of the next page; null on the last page.")


class CommandAccepted(BaseModel):
    """A command's answer: the global position of its last event (for `?min_position=`)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"position": 1042}]})

    position: int | None = Field(
        description="Global position of the command's last event; null if it recorded none.")
