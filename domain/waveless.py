"""Waveless processing (seed section 6): priority-ordered dynamic batches, released
continuously instead of in fixed waves.

Release order (README "Waveless release rules"):
1. a workflow that has waited longer than the ageing limit (60 s) goes first, oldest first,
   whatever its priority, so LOW work cannot starve under a constant HIGH stream;
2. with a cut-off urgency set (`cutoff_urgency_ms`, default off): a workflow that can still
   make its cut-off but has less slack than that goes next, least slack first, whatever its
   priority, so a NORMAL order about to miss its truck does not wait behind every HIGH one;
   one that cannot make it any more (slack < 0) keeps its priority place: moving it up would
   take the slot of work that still can;
3. then HIGH, NORMAL, LOW;
4. within a priority, the least slack first: slack = cut-off - now - expected remaining
   processing time; workflows without a cut-off have unlimited slack;
5. then first come, first served.
A batch is cut short by work-in-progress caps: a workflow whose first service is at its
cap of steps in flight waits (and says so), later ones for other services may still go.
Batch size and interval adapt to load and queue depth (SEED-FACTS), and release pauses
while the services are overloaded (load score >= 95 or error rate >= 0.5).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Protocol
from uuid import UUID

from domain.enums import WorkflowPriority, WorkflowStatus, WorkflowType
from domain.exceptions import InvalidValue

DEFAULT_BATCH_SIZE = 10
DEFAULT_INTERVAL_MS = 1000
DEFAULT_AGEING_MS = 60_000
# The shortest interval between two batches of a lane: a release round loads every waiting
# workflow, and the in-flight counts it reads need time to show the last batch.
MIN_INTERVAL_MS = 50
PAUSE_LOAD_SCORE = 95.0
PAUSE_ERROR_RATE = 0.5


class HasWavelessFields(Protocol):
    """What `can_transition_to_waveless` needs (a Workflow has these)."""

    workflow_type: WorkflowType
    status: WorkflowStatus


def can_transition_to_waveless(workflow: HasWavelessFields) -> bool:
    """A waveless-capable type that is PENDING or EXECUTING, of any priority."""
    return workflow.workflow_type.is_waveless_capable and workflow.status in (
        WorkflowStatus.PENDING, WorkflowStatus.EXECUTING)


class WaitKind(Enum):
    """Why a waiting workflow is not released yet."""

    CAP_REACHED = "cap reached"  # its first service is at its cap of steps in flight
    QUEUED = "queued"  # the batch is full
    RELEASE_PAUSED = "release paused"  # the services are overloaded or failing


class WaitingReason(str):
    """Why a waiting workflow is not released yet: the text a workflow records (and the
    read models show), typed by its kind so that no caller recognises a reason by its
    wording. Being a str, it compares, prints and is recorded as the text it always was."""

    kind: WaitKind

    def __new__(cls, kind: WaitKind, text: str) -> WaitingReason:
        reason = super().__new__(cls, text)
        reason.kind = kind
        return reason

    def __getnewargs__(self) -> tuple[WaitKind, str]:  # type: ignore[override]
        # Copies and pickles rebuild it with its kind (str's own gives only the text).
        return (self.kind, str(self))

    @classmethod
    def cap_reached(cls, service: str) -> WaitingReason:
        return cls(WaitKind.CAP_REACHED, f"cap reached: {service}")

    @classmethod
    def queued(cls, priority: WorkflowPriority, by_slack: bool) -> WaitingReason:
        # Reasons carry no changing numbers: a workflow records a new reason only on change.
        order = ", by slack to cut-off" if by_slack else ""
        return cls(WaitKind.QUEUED, f"queued: batch full ({priority} priority{order})")

    @classmethod
    def release_paused(cls, why: str) -> WaitingReason:
        return cls(WaitKind.RELEASE_PAUSED, f"release paused: {why}")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A PENDING waveless workflow waiting to be released."""

    workflow_id: UUID
    priority: WorkflowPriority
    waiting_since: datetime
    first_service: str | None = None
    cut_off: datetime | None = None
    expected_remaining_ms: float = 0.0

    def slack_ms(self, now: datetime) -> float | None:
        if self.cut_off is None:
            return None
        return (self.cut_off - now).total_seconds() * 1000 - self.expected_remaining_ms

    def is_aged(self, now: datetime, ageing_ms: int) -> bool:
        return now - self.waiting_since >= timedelta(milliseconds=ageing_ms)


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """One release decision: who goes now, and why each of the others waits."""

    released: tuple[Candidate, ...]
    waiting: Mapping[UUID, WaitingReason]
    late: tuple[Candidate, ...]
    batch_size: int
    interval_ms: int
    paused_reason: WaitingReason | None = None
    order: tuple[UUID, ...] = field(default=())

    @property
    def held_back_only_by_caps(self) -> bool:
        """Whether WIP caps alone held work back (every waiting one waits for a cap)."""
        return bool(self.waiting) and all(reason.kind is WaitKind.CAP_REACHED
                                          for reason in self.waiting.values())


def check_cutoff_urgency(value: object) -> int | None:
    """`cutoff_urgency_ms` as given, refused unless None or an integer >= 0 (0: off)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value < 0):
        raise InvalidValue("cutoff_urgency_ms", value, "must be an integer >= 0 or null")
    return value


def release_order(pending: Iterable[Candidate], now: datetime,
                  ageing_ms: int = DEFAULT_AGEING_MS,
                  cutoff_urgency_ms: int | None = None) -> list[Candidate]:
    """Every candidate in the order it would be released."""
    urgency = check_cutoff_urgency(cutoff_urgency_ms)

    def key(c: Candidate) -> tuple[Any, ...]:
        if c.is_aged(now, ageing_ms):
            return (0, 0, 0.0, c.waiting_since, str(c.workflow_id))
        slack = c.slack_ms(now)
        if urgency and slack is not None and 0 <= slack < urgency:
            return (1, 0, slack, c.waiting_since, str(c.workflow_id))
        return (2, c.priority.rank, slack if slack is not None else float("inf"),
                c.waiting_since, str(c.workflow_id))

    return sorted(pending, key=key)


def create_dynamic_batch(pending: Sequence[Candidate], size: int, now: datetime,
                         ageing_ms: int = DEFAULT_AGEING_MS,
                         cutoff_urgency_ms: int | None = None) -> list[Candidate]:
    """Seed createDynamicBatch: at most `size` candidates, in release order."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InvalidValue("batch_size", size, "must be an integer >= 1")
    return release_order(pending, now, ageing_ms, cutoff_urgency_ms)[:size]


def adapt_batch_size(configured: int, load_score: float | None) -> int:
    """Seed: score >= 95 -> 2, >= 85 -> 5, < 50 -> 20, else 10; scaled to the configured
    size (the seed's numbers are for the default of 10)."""
    if load_score is None:
        return configured
    if load_score >= 95:
        factor = 0.2
    elif load_score >= 85:
        factor = 0.5
    elif load_score < 50:
        factor = 2.0
    else:
        factor = 1.0
    return max(1, round(configured * factor))


def adapt_interval(configured_ms: int, queue_depth: int) -> int:
    """Seed: depth > 100 -> 500 ms, > 50 -> 1000 ms, < 10 -> 2000 ms, else 1000 ms;
    scaled to the configured interval (the seed's numbers are for the default 1000 ms)."""
    if queue_depth > 100:
        factor = 0.5
    elif queue_depth > 50 or queue_depth >= 10:
        factor = 1.0
    else:
        factor = 2.0
    return max(1, round(configured_ms * factor))


def plan_batch(
    pending: Sequence[Candidate],
    now: datetime,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    interval_ms: int = DEFAULT_INTERVAL_MS,
    load_score: float | None = None,
    error_rate: float | None = None,
    in_flight: Mapping[str, int] | None = None,
    wip_caps: Mapping[str, int] | None = None,
    ageing_ms: int = DEFAULT_AGEING_MS,
    cutoff_urgency_ms: int | None = None,
) -> BatchPlan:
    """Decides one release: the batch, the reason each other candidate waits, and who is
    late (cannot make its cut-off any more)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidValue("batch_size", batch_size, "must be an integer >= 1")
    if isinstance(interval_ms, bool) or not isinstance(interval_ms, int) or interval_ms < 1:
        raise InvalidValue("interval_ms", interval_ms, "must be an integer >= 1")
    ordered = release_order(pending, now, ageing_ms, cutoff_urgency_ms)
    size = adapt_batch_size(batch_size, load_score)
    interval = adapt_interval(interval_ms, len(ordered))
    late = tuple(c for c in ordered if (s := c.slack_ms(now)) is not None and s < 0)
    paused = None
    if load_score is not None and load_score >= PAUSE_LOAD_SCORE:
        paused = WaitingReason.release_paused("services overloaded (load score >= 95)")
    elif error_rate is not None and error_rate >= PAUSE_ERROR_RATE:
        paused = WaitingReason.release_paused("service error rate >= 0.5")
    if paused:
        return BatchPlan((), {c.workflow_id: paused for c in ordered}, late, size, interval,
                         paused, tuple(c.workflow_id for c in ordered))
    capacity = {service: max(cap - (in_flight or {}).get(service, 0), 0)
                for service, cap in (wip_caps or {}).items()}
    released: list[Candidate] = []
    waiting: dict[UUID, WaitingReason] = {}
    for candidate in ordered:
        service = candidate.first_service
        if service is not None and service in capacity and capacity[service] <= 0:
            waiting[candidate.workflow_id] = WaitingReason.cap_reached(service)
            continue
        if len(released) >= size:
            waiting[candidate.workflow_id] = WaitingReason.queued(
                candidate.priority, by_slack=candidate.slack_ms(now) is not None)
            continue
        released.append(candidate)
        if service is not None and service in capacity:
            capacity[service] -= 1
    return BatchPlan(tuple(released), waiting, late, size, interval, None,
                     tuple(c.workflow_id for c in ordered))

