"""Domain events as CloudEvents 1.0 in structured JSON mode (`application/cloudevents+json`).

Names: a stored event's topic `domain.workflow:Workflow.StepExecuted` becomes the aggregate
`workflow` and the event type `step_executed` (CamelCase split at each capital, lower-case,
joined by `_`), hence the subject `<prefix>.workflow.step_executed` and the type
`<type prefix>.workflow.step_executed`. The id is derived from the aggregate id and version,
so the same event always gets the same id, whoever relays it and however often.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from application.workflows import event_data

CONTENT_TYPE = JSONFormat.CONTENT_TYPE  # application/cloudevents+json
_EVENT_IDS = uuid.uuid5(uuid.NAMESPACE_URL, "urn:wes-orchestrator:event")
_FORMAT = JSONFormat()
_ACRONYM = re.compile(r"([A-Z]+)([A-Z][a-z])")
_WORD = re.compile(r"([a-z0-9])([A-Z])")


@dataclass(frozen=True, slots=True)
class Naming:
    """How events are named on the wire."""

    subject_prefix: str = "orchestration.workflow.events"
    type_prefix: str = "com.paklog.wes.orchestration"
    source: str = "/wes-orchestrator"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One event ready for a sink: its position, id, subject and CloudEvent body."""

    position: int
    event_id: str
    subject: str
    body: bytes


def snake(name: str) -> str:
    """`StepExecuted` -> `step_executed`, `SystemLoadRebalanced` -> `system_load_rebalanced`."""
    return _WORD.sub(r"\1_\2", _ACRONYM.sub(r"\1_\2", name)).lower()


def names(topic: str) -> tuple[str, str]:
    """(aggregate, event type) of a stored event's topic, both snake_case."""
    qualname = topic.split(":", 1)[-1]
    aggregate, _, event = qualname.rpartition(".")
    return snake(aggregate or event), snake(event)


def event_id(aggregate_id: UUID, version: int) -> str:
    """The event's id: stable, unique per (aggregate, version)."""
    return str(uuid.uuid5(_EVENT_IDS, f"{aggregate_id}/{version}"))


def envelope(event: Any, topic: str, position: int, naming: Naming) -> Outgoing:
    """The CloudEvent of one decoded domain event at a global position."""
    aggregate, event_type = names(topic)
    ident = event_id(event.originator_id, event.originator_version)
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": ident,
        "source": naming.source,
        "type": f"{naming.type_prefix}.{aggregate}.{event_type}",
        "time": _aware(event.timestamp),
        "subject": str(event.originator_id),
        "datacontenttype": "application/json",
        "position": position,
        "aggregateversion": event.originator_version,
    }
    correlation_id = getattr(event, "correlation_id", None)
    if correlation_id:
        attributes["correlationid"] = str(correlation_id)
    body = _FORMAT.write(CloudEvent(attributes, event_data(event)))
    return Outgoing(position, ident, f"{naming.subject_prefix}.{aggregate}.{event_type}", body)


def _aware(moment: datetime) -> datetime:
    # CloudEvents times are RFC 3339: a naive timestamp (none of ours are) would be ambiguous.
    if moment.tzinfo is None:
        raise ValueError(f"event timestamp {moment!r} has no time zone")
    return moment
