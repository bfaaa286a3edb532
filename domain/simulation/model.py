"""What a simulation replays: arrivals as they came, services as they were observed, and
the release policy to try."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.enums import ErrorType
from domain.exceptions import InvalidValue
from domain.waveless import MIN_INTERVAL_MS, check_cutoff_urgency

FORWARD = "step"
UNDO = "compensation"


@dataclass(frozen=True, slots=True)
class Outcome:
    """One observed call: how long the engine held it (start saved to outcome saved) and
    how it ended (None: it succeeded; else the error's code, type and recoverability)."""

    duration_ms: float
    error_code: str | None = None
    error_type: ErrorType | None = None
    recoverable: bool = False

    @property
    def ok(self) -> bool:
        return self.error_code is None


@dataclass
class OperationModel:
    """The empirical distribution of one operation's calls: a draw is one observed call,
    so durations and failures by kind keep their observed joint frequencies."""

    outcomes: list[Outcome] = field(default_factory=list)

    def draw(self, rng: random.Random) -> Outcome:
        return self.outcomes[int(rng.random() * len(self.outcomes))]

    def summary(self) -> dict[str, Any]:
        """Calls, mean/p50/p95 duration and failure rate by error kind."""
        durations = sorted(o.duration_ms for o in self.outcomes)
        failures: dict[str, int] = {}
        for o in self.outcomes:
            if not o.ok:
                kind = f"{o.error_type}{'' if o.recoverable else ' (unrecoverable)'}"
                failures[kind] = failures.get(kind, 0) + 1
        n = len(durations)
        return {
            "calls": n,
            "mean_ms": round(sum(durations) / n, 3) if n else None,
            "p50_ms": round(percentile(durations, 0.5), 3) if n else None,
            "p95_ms": round(percentile(durations, 0.95), 3) if n else None,
            "failure_rate": {k: round(v / n, 4) for k, v in sorted(failures.items())},
        }


@dataclass(frozen=True, slots=True)
class Arrival:
    """A workflow as it arrived: when, with what priority, type, cut-off and lane."""

    workflow_id: UUID
    at: datetime
    priority: str
    workflow_type: str
    definition_id: str
    steps: tuple[Mapping[str, Any], ...]
    input: Mapping[str, Any]
    cut_off: datetime | None = None
    lane: tuple[int, int] | None = None  # (batch size, interval ms) of a waveless workflow


@dataclass
class Observed:
    """What the engine saw in a window: the arrivals and how each service served calls."""

    start: datetime
    end: datetime
    arrivals: list[Arrival]
    operations: dict[tuple[str, str, str], OperationModel]  # (service, operation, kind)
    dispatch_ms: list[float]  # ready (started, outcome, retry due) -> next start saved
    engine_concurrency: int  # the most calls in flight at once, all services
    service_concurrency: dict[str, int]  # the most calls in flight at once, per service
    output_keys: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    handoff_ms: dict[str, list[float]] = field(default_factory=dict)  # capped: slot freed ->
    # the start of a call that waited for it
    first_release_s: float | None = None  # the first batch released in the window, seconds
    # from its start: the phase of the release loop, which ran before the window began
    release_dispatch_ms: list[float] = field(default_factory=list)  # a waveless release ->
    # its first start saved (a worker claims the released work); not in `dispatch_ms`

    def model(self, service: str, operation: str, kind: str = FORWARD) -> OperationModel | None:
        found = self.operations.get((service, operation, kind))
        if found is None or not found.outcomes:
            return None
        return found

    def mean_ms(self, service: str) -> float | None:
        """Mean step duration of a service (the release loop's estimate)."""
        durations = [o.duration_ms for (s, _, k), m in self.operations.items()
                     if s == service and k == FORWARD for o in m.outcomes]
        return sum(durations) / len(durations) if durations else None


@dataclass(frozen=True)
class Policy:
    """A release policy to try; a field left None keeps what actually ran."""

    name: str
    batch_size: int | None = None
    interval_ms: int | None = None
    wip_caps: Mapping[str, int] | None = None
    ageing_ms: int | None = None
    adaptive: bool = True
    cutoff_urgency_ms: int | None = None  # 0: off, even where the actual policy had it on

    def __post_init__(self) -> None:
        check_cutoff_urgency(self.cutoff_urgency_ms)
        if not isinstance(self.name, str) or not self.name.strip():
            raise InvalidValue("name", self.name, "must be a non-empty string")
        if self.batch_size is not None and (isinstance(self.batch_size, bool)
                                            or not isinstance(self.batch_size, int)
                                            or self.batch_size < 1):
            raise InvalidValue("batch_size", self.batch_size, "must be an integer >= 1")
        if self.interval_ms is not None and (isinstance(self.interval_ms, bool)
                                             or not isinstance(self.interval_ms, int)
                                             or self.interval_ms < MIN_INTERVAL_MS):
            raise InvalidValue("interval_ms", self.interval_ms,
                               f"must be an integer >= {MIN_INTERVAL_MS}")
        if self.ageing_ms is not None and (isinstance(self.ageing_ms, bool)
                                           or not isinstance(self.ageing_ms, int)
                                           or self.ageing_ms < 0):
            raise InvalidValue("ageing_ms", self.ageing_ms, "must be an integer >= 0")
        for service, cap in (self.wip_caps or {}).items():
            if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
                raise InvalidValue(f"wip_caps[{service}]", cap, "must be an integer >= 1")

    def over(self, actual: Policy) -> Policy:
        """This policy with what it leaves open taken from `actual`."""
        return Policy(
            self.name,
            self.batch_size if self.batch_size is not None else actual.batch_size,
            self.interval_ms if self.interval_ms is not None else actual.interval_ms,
            dict(self.wip_caps) if self.wip_caps is not None else dict(actual.wip_caps or {}),
            self.ageing_ms if self.ageing_ms is not None else actual.ageing_ms,
            self.adaptive,
            self.cutoff_urgency_ms if self.cutoff_urgency_ms is not None
            else actual.cutoff_urgency_ms,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "batch_size": self.batch_size,
                "interval_ms": self.interval_ms, "wip_caps": dict(self.wip_caps or {}),
                "ageing_ms": self.ageing_ms, "cutoff_urgency_ms": self.cutoff_urgency_ms}


def percentile(ordered: Sequence[float], q: float) -> float:
    """The q-quantile of sorted values, linearly interpolated."""
    if not ordered:
        return 0.0
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
