"""What a run is judged by, computed the same way for what happened and for a simulation."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.simulation.model import percentile

COMPLETED = "COMPLETED"
COMPENSATED = "COMPENSATED"
SERIES_POINTS = 120
# Calibration: a KPI agrees when within RELATIVE of the recorded value, or within the
# absolute allowance for small values (seconds for times, workflows for counts).
RELATIVE = 0.2
ABSOLUTE_SECONDS = 0.5
ABSOLUTE_COUNT = 2


@dataclass(frozen=True, slots=True)
class Record:
    """How one workflow went: arrival, release (start), end and how it ended."""

    arrived: datetime
    started: datetime | None
    finished: datetime | None
    status: str
    cut_off: datetime | None = None


def kpis(records: Sequence[Record], start: datetime) -> dict[str, Any]:
    """Throughput (completions per hour from the window's start to the last completion),
    lead time arrival -> COMPLETED (p50/p95), missed cut-offs, compensations, the time
    waiting for release (arrival -> start) and the compensation rate."""
    done = [r for r in records if r.status == COMPLETED and r.finished is not None]
    lead = sorted((r.finished - r.arrived).total_seconds() for r in done)  # type: ignore[operator]
    waits = sorted((r.started - r.arrived).total_seconds() for r in records
                   if r.started is not None)
    last = max((r.finished for r in done), default=None)  # type: ignore[type-var]
    span_h = (last - start).total_seconds() / 3600 if last is not None else 0.0
    missed = sum(1 for r in records if r.cut_off is not None and (
        r.status != COMPLETED or r.finished is None or r.finished > r.cut_off))
    compensated = sum(1 for r in records if r.status == COMPENSATED)
    return {
        "arrived": len(records),
        "completed": len(done),
        "throughput_per_hour": round(len(done) / span_h, 3) if span_h > 0 else 0.0,
        "lead_time_p50_s": round(percentile(lead, 0.5), 3),
        "lead_time_p95_s": round(percentile(lead, 0.95), 3),
        "missed_cutoffs": missed,
        "compensated": compensated,
        "compensation_rate": round(compensated / len(records), 4) if records else 0.0,
        "release_wait_p50_s": round(percentile(waits, 0.5), 3),
        "release_wait_p95_s": round(percentile(waits, 0.95), 3),
        "unfinished": sum(1 for r in records if r.finished is None),
    }


def wip_series(intervals: Mapping[str, Iterable[tuple[float, float]]], span_s: float,
               points: int = SERIES_POINTS) -> dict[str, list[dict[str, float]]]:
    """Per service, the most calls in flight in each of `points` equal buckets of the run
    (`t`: seconds from its start to the bucket's start), from (start, end) offsets."""
    width = max(span_s, 1e-3) / points
    series: dict[str, list[dict[str, float]]] = {}
    for service, spans in sorted(intervals.items()):
        edges = sorted([(a, 1) for a, b in spans] + [(b, -1) for a, b in spans],
                       key=lambda e: (e[0], e[1]))
        peaks: list[int] = []
        level = j = 0
        for i in range(points):
            while j < len(edges) and edges[j][0] <= i * width and edges[j][1] < 0:
                level += edges[j][1]  # a call that ended as the bucket began is not in it
                j += 1
            end, peak = (i + 1) * width, level
            while j < len(edges) and edges[j][0] < end:
                level += edges[j][1]
                peak = max(peak, level)
                j += 1
            peaks.append(peak)
        series[service] = [{"t": round(i * width, 3), "in_flight": peaks[i]}
                           for i in range(points)]
    return series


def calibration(actual: Mapping[str, Any], simulated: Mapping[str, Any]) -> dict[str, Any]:
    """Whether the simulated actual policy reproduces the recorded KPIs, KPI by KPI."""
    checks: dict[str, dict[str, Any]] = {}
    for name in ("completed", "throughput_per_hour", "lead_time_p50_s", "lead_time_p95_s",
                 "missed_cutoffs", "compensated"):
        a, s = float(actual[name]), float(simulated[name])
        if name.endswith("_s"):
            allowed = max(RELATIVE * abs(a), ABSOLUTE_SECONDS)
        elif name == "throughput_per_hour":
            allowed = RELATIVE * abs(a)
        else:
            allowed = max(RELATIVE * abs(a), ABSOLUTE_COUNT)
        checks[name] = {"actual": a, "simulated": s, "allowed": round(allowed, 3),
                        "ok": abs(s - a) <= allowed + 1e-9}
    return {"within_tolerance": all(c["ok"] for c in checks.values()), "checks": checks,
            "tolerance": {"relative": RELATIVE, "absolute_seconds": ABSOLUTE_SECONDS,
                          "absolute_count": ABSOLUTE_COUNT}}
