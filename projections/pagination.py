"""Pages and opaque keyset cursors shared by the read models' list queries."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from domain.exceptions import InvalidValue

T = TypeVar("T")
MAX_LIMIT = 500


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list; pass `next_cursor` back to get the next (None: no more)."""

    items: tuple[T, ...]
    next_cursor: str | None


def check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidValue("limit", limit, f"must be an integer from 1 to {MAX_LIMIT}")
    return limit


def encode_cursor(kind: str, key: Mapping[str, Any]) -> str:
    """An opaque cursor: the query it belongs to and the last row's sort key."""
    raw = json.dumps({"k": kind, **key}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str, expected: Mapping[str, Any]) -> dict[str, Any]:
    """The key inside a cursor; InvalidValue if it is malformed or from another query."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidValue("cursor", cursor, "is not a cursor this API issued") from None
    if not isinstance(data, dict) or data.get("k") != kind \
            or any(data.get(k) != v for k, v in expected.items()):
        raise InvalidValue("cursor", cursor, "belongs to a different query")
    return data
