"""Times from requests: ISO 8601 only; a time without a zone is taken as UTC; all become UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_8601_only(value: object) -> object:
    # pydantic would take `0` or `1.5` as a Unix timestamp; the schema promises ISO 8601.
    if isinstance(value, datetime) or (isinstance(value, str) and _ISO_DATE.match(value)):
        return value
    raise ValueError("expected an ISO 8601 time such as 2025-01-31T12:00:00Z")


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range") from None


Time = Annotated[datetime, BeforeValidator(_iso_8601_only), AfterValidator(_to_utc)]
