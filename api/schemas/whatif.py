"""`POST /v1/whatif`: a recorded window replayed through release policies (API.md "What-if")."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import INT64, Identifier, ShortText
from api.timeutil import Time
from domain.waveless import MIN_INTERVAL_MS

Cap = Annotated[int, Field(ge=1, le=1_000_000)]


class PolicyIn(BaseModel):
    """A release policy; a field left out keeps what actually ran (the recorded lanes, the
    server's `WES_WIP_CAPS`, `WES_WAVELESS_AGEING_MS` and `WES_WAVELESS_CUTOFF_URGENCY_MS`)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "pick capped at 12", "batch_size": 10, "interval_ms": 1000,
         "wip_caps": {"warehouse-service": 12}, "ageing_ms": 60000}]})

    name: ShortText = Field(min_length=1, description="Names the policy in the answer.")
    batch_size: int | None = Field(None, ge=1, le=100_000,
                                   description="One lane of this size for all waveless work.")
    interval_ms: int | None = Field(None, ge=MIN_INTERVAL_MS, le=86_400_000,
                                    description="That lane's interval between batches.")
    wip_caps: dict[Identifier, Cap] | None = Field(
        None, max_length=100, description="Most steps in flight per service (every step).")
    ageing_ms: int | None = Field(None, ge=0, le=86_400_000,
                                  description="Waiting this long goes first, any priority.")
    adaptive: bool = Field(True, description="Adapt batch size and interval to load, "
                                             "as the release loop does.")
    cutoff_urgency_ms: int | None = Field(
        None, ge=0, le=86_400_000,
        description="Slack to cut-off below this goes ahead of priority (after aged work), "
                    "least slack first; 0: off (`WES_WAVELESS_CUTOFF_URGENCY_MS`).")


class WhatIfIn(BaseModel):
    """A window of recorded history and the policies to try on it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_extra={
        "examples": [{"from": "2026-12-01T08:00:00Z", "to": "2026-12-01T12:00:00Z",
                      "policies": [{"name": "pick capped at 12",
                                    "wip_caps": {"warehouse-service": 12}}],
                      "seed": 1}]})

    start: Time = Field(alias="from", description="Workflows created from this time...")
    end: Time = Field(alias="to", description="...until this time (exclusive).")
    policies: list[PolicyIn] = Field(default_factory=list, max_length=4)
    seed: int = Field(0, ge=0, le=INT64, description="Seeds the simulation's random draws.")
    actual: PolicyIn | None = Field(
        None, description="The policy that actually ran, where the server's settings do not "
                          "say it (its caps, ageing and cut-off urgency); default: the server's "
                          "settings.")


class Kpis(BaseModel):
    """The KPIs of one run (what happened, or a simulation)."""

    model_config = ConfigDict(extra="allow")

    arrived: float
    completed: float
    throughput_per_hour: float = Field(description="Completions per hour, from the window's "
                                                   "start to the last completion.")
    lead_time_p50_s: float = Field(description="Arrival to COMPLETED.")
    lead_time_p95_s: float
    missed_cutoffs: float
    compensated: float
    compensation_rate: float
    release_wait_p50_s: float = Field(description="Arrival to release (start).")
    release_wait_p95_s: float
    unfinished: float


class WipPoint(BaseModel):
    t: float = Field(description="Seconds from the window's start to the bucket's start.")
    in_flight: int = Field(description="The most calls in flight in the bucket.")


Wip = dict[str, list[WipPoint]]


class Check(BaseModel):
    actual: float
    simulated: float
    allowed: float
    ok: bool


class PolicyOut(BaseModel):
    name: str
    batch_size: int | None
    interval_ms: int | None
    wip_caps: dict[str, int]
    ageing_ms: int | None
    cutoff_urgency_ms: int | None = None


class Calibration(BaseModel):
    """The actual policy simulated, against what happened."""

    policy: PolicyOut
    kpis: Kpis
    wip: Wip
    within_tolerance: bool
    checks: dict[str, Check]
    tolerance: dict[str, float]


class PolicyResult(BaseModel):
    policy: PolicyOut
    kpis: Kpis
    wip: Wip
    replications: int
    simulated_events: int


class WhatIfOut(BaseModel):
    """What happened, the calibration and each policy's simulated KPIs."""

    start: str = Field(alias="from")
    end: str = Field(alias="to")
    seed: int
    actual: Kpis
    actual_wip: Wip
    calibration: Calibration
    results: list[PolicyResult]
    observed: dict[str, Any] = Field(description="What the simulation was built from: "
                                                 "per operation calls, durations, failure "
                                                 "rates by kind; concurrency seen.")
    run: dict[str, float]
