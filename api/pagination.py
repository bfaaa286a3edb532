"""Query parameters shared by every list (`limit`, `cursor`) and the numbers clients send in them."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Query

from api.errors import ApiProblem

Cursor = Annotated[str | None, Query(
    max_length=500, pattern=r"^[^\x00]*$",
    description="The `next_cursor` of the previous page; absent for the first page.")]
Limit = Annotated[int, Query(ge=1, le=500, description="Page size (default 50, max 500).")]

# ASCII digits only: `str.isdigit()` also accepts digits such as "²" that `int()` refuses.
_DECIMAL = re.compile(r"[0-9]{1,18}")


def decimal_of(text: str) -> int | None:
    """The integer a string of 1 to 18 ASCII digits stands for, or None when it is not one."""
    return int(text) if _DECIMAL.fullmatch(text) else None


def offset_of(cursor: str | None) -> int:
    """The offset an in-memory list's cursor stands for (0 without one); 422 when the cursor
    is not one this API issued."""
    if cursor is None:
        return 0
    offset = decimal_of(cursor)
    if offset is None:
        raise ApiProblem(422, "validation", "Invalid request", f"unknown cursor {cursor!r}",
                         field="cursor")
    return offset
