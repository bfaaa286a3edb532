"""Query parameters shared by every list: `limit` and `cursor`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

Cursor = Annotated[str | None, Query(
    max_length=500, pattern=r"^[^\x00]*$",
    description="The `next_cursor` of the previous page; absent for the first page.")]
Limit = Annotated[int, Query(ge=1, le=500, description="Page size (default 50, max 500).")]


def offset_of(cursor: str | None) -> int | None:
    """The offset an in-memory list's cursor stands for, or None when it is not one."""
    if cursor is None:
        return 0
    return int(cursor) if cursor.isdigit() and len(cursor) < 10 else None
