"""A what-if run: the window's events -> observations -> the actual policy simulated
(calibration) and each policy asked about, side by side with what actually happened.

Bounded in time and memory: a window of at most `MAX_WINDOW`, at most `MAX_WORKFLOWS`
workflows, `MAX_POLICIES` policies, and a wall-clock limit on the whole run.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from application.errors import ApplicationError
from application.settings import DEFAULT_WHATIF_TIME_LIMIT_S
from application.whatif.history import Recorded, extract
from application.whatif.store import stored_events
from application.workflows import Workflows
from domain.simulation.kpis import calibration, kpis, wip_series
from domain.simulation.model import Policy
from domain.simulation.run import SimulationLimit, simulate

log = logging.getLogger(__name__)

MAX_WINDOW = timedelta(days=2)
MAX_WORKFLOWS = 50_000
MAX_POLICIES = 4

SIMULATED_EVENTS_PER_WORKFLOW = 2_000  # a workflow's calls, retries and waits, generously
ACTUAL = "actual"
MAX_REPLICATIONS = 5
REPLICATED_ARRIVALS = 10_000  # replications x arrivals stays below this (one at least)


class WhatIfError(ApplicationError):
    """A what-if that cannot run; `status` is the HTTP status it means (422 or 413)."""

    def __init__(self, message: str, status: int = 422, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


@dataclass(frozen=True)
class WhatIfRequest:
    """A window, the policies to try and the seed of the run's random draws."""

    start: datetime
    end: datetime
    policies: Sequence[Policy] = ()
    seed: int = 0
    actual: Policy | None = None  # what ran, where the settings do not say it (caps, ageing)


@dataclass
class WhatIfSettings:
    """What the running engine's settings say the actual policy was (`Settings.whatif`:
    `WES_WIP_CAPS`, `WES_WAVELESS_AGEING_MS`, `WES_WAVELESS_CUTOFF_URGENCY_MS`), and a run's
    wall-clock bound (`WES_WHATIF_TIME_LIMIT_SECONDS`, default 60)."""

    wip_caps: Mapping[str, int] = field(default_factory=dict)
    ageing_ms: int | None = None
    time_limit_s: float = DEFAULT_WHATIF_TIME_LIMIT_S
    cutoff_urgency_ms: int | None = None


def check(request: WhatIfRequest) -> None:
    """Refuses a request before any work: window order, zones and size, policy count."""
    for name, value in (("from", request.start), ("to", request.end)):
        if value.tzinfo is None:
            raise WhatIfError(f"{name} must carry a time zone", field=name)
    if request.end <= request.start:
        raise WhatIfError("to must be after from", field="to")
    if request.end - request.start > MAX_WINDOW:
        raise WhatIfError(f"the window is longer than {MAX_WINDOW.total_seconds() / 3600:g} h",
                          status=413, field="to")
    if len(request.policies) > MAX_POLICIES:
        raise WhatIfError(f"at most {MAX_POLICIES} policies per run", status=413,
                          field="policies")
    names = [p.name for p in request.policies]
    if len(set(names)) != len(names) or ACTUAL in names:
        raise WhatIfError(f"policy names must be distinct and not {ACTUAL!r}", field="policies")


def run(app: Workflows, ids_in_window: Callable[[datetime, datetime, int], Sequence[UUID]],
        request: WhatIfRequest, settings: WhatIfSettings | None = None,
        timer: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """The report: what happened, the simulated actual policy (calibration) and each
    policy's simulated KPIs. `ids_in_window(start, end, limit)` lists the workflows
    created in the window (the progress read model)."""
    settings = settings or WhatIfSettings()
    check(request)
    began = timer()
    ids = ids_in_window(request.start, request.end, MAX_WORKFLOWS + 1)
    if not ids:
        raise WhatIfError("no workflows were created in the window", field="from")
    if len(ids) > MAX_WORKFLOWS:
        raise WhatIfError(f"more than {MAX_WORKFLOWS} workflows in the window; narrow it",
                          status=413, field="to")
    actual_policy = request.actual or Policy(ACTUAL, wip_caps=dict(settings.wip_caps),
                                             ageing_ms=settings.ageing_ms,
                                             cutoff_urgency_ms=settings.cutoff_urgency_ms)
    recorded = extract(stored_events(app, ids), request.start, request.end,
                       recorded_caps=actual_policy.wip_caps)
    if not recorded.observed.arrivals:
        raise WhatIfError("no engine-driven workflows were created in the window", field="from")
    if not recorded.waveless:
        raise WhatIfError("the window holds no waveless work: a release policy changes nothing",
                          field="from")
    extracted = timer() - began
    deadline = began + settings.time_limit_s
    bound = SIMULATED_EVENTS_PER_WORKFLOW * len(recorded.observed.arrivals)

    replications = replications_for(len(recorded.observed.arrivals))

    def simulated(policy: Policy) -> dict[str, Any]:
        # Every policy sees the same draws: one generator from the seed per policy run.
        rng = random.Random(request.seed)
        runs = []
        for _ in range(replications):
            try:
                runs.append(simulate(recorded.observed, policy,
                                     random.Random(rng.getrandbits(64)),
                                     recorded_caps=actual_policy.wip_caps, max_events=bound,
                                     deadline=lambda: timer() > deadline))
            except SimulationLimit as e:
                raise WhatIfError(f"policy {policy.name!r} did not finish within the run's "
                                  f"limits ({settings.time_limit_s:g} s): {e}",
                                  status=413) from None
        return {"policy": policy.to_dict(), "kpis": _mean([r.kpis for r in runs]),
                "wip": runs[0].wip, "replications": replications,
                "simulated_events": sum(r.events for r in runs)}

    actual = _actual(recorded)
    calibrated = simulated(actual_policy)
    report_calibration = {"policy": calibrated["policy"], "kpis": calibrated["kpis"],
                          "wip": calibrated["wip"],
                          **calibration(actual["kpis"], calibrated["kpis"])}
    results = [simulated(policy.over(actual_policy)) for policy in request.policies]
    log.info("what-if run", extra={"workflows": len(recorded.observed.arrivals),
                                   "policies": len(request.policies),
                                   "seconds": round(timer() - began, 3),
                                   "calibrated": report_calibration["within_tolerance"]})
    return {
        "from": request.start.isoformat(), "to": request.end.isoformat(), "seed": request.seed,
        "actual": actual["kpis"], "actual_wip": actual["wip"],
        "calibration": report_calibration, "results": results,
        "observed": _observed_summary(recorded),
        "run": {"extract_seconds": round(extracted, 3),
                "total_seconds": round(timer() - began, 3)},
    }


def replications_for(arrivals: int) -> int:
    """Independent runs averaged per policy: a small window's single run is noisy."""
    return max(1, min(MAX_REPLICATIONS, REPLICATED_ARRIVALS // max(arrivals, 1)))


def _mean(runs: list[dict[str, Any]]) -> dict[str, Any]:
    if len(runs) == 1:
        return runs[0]
    return {k: round(sum(r[k] for r in runs) / len(runs), 3) for k in runs[0]}


def progress_ids(progress: Any, page_size: int = 500
                 ) -> Callable[[datetime, datetime, int], list[UUID]]:
    """`ids_in_window` over the progress read model (oldest first; a workflow not yet
    projected is not seen)."""
    def ids(start: datetime, end: datetime, limit: int) -> list[UUID]:
        found: list[UUID] = []
        cursor = None
        while len(found) < limit:
            page = progress.list(created_after=start, created_before=end, sort="created_at",
                                 descending=False, limit=page_size, cursor=cursor)
            found.extend(row.id for row in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        return found[:limit]
    return ids


def _actual(recorded: Recorded) -> dict[str, Any]:
    observed = recorded.observed
    finished = [(r.finished - observed.start).total_seconds() for r in recorded.records
                if r.finished is not None]
    span = max([*finished, (observed.end - observed.start).total_seconds()])
    return {"kpis": kpis(recorded.records, observed.start),
            "wip": wip_series(recorded.spans, span)}


def _observed_summary(recorded: Recorded) -> dict[str, Any]:
    observed = recorded.observed
    operations = {f"{service}/{operation}" + ("" if kind == "step" else f" ({kind})"):
                  model.summary()
                  for (service, operation, kind), model in sorted(observed.operations.items())}
    gaps = sorted(observed.dispatch_ms)
    release_gaps = sorted(observed.release_dispatch_ms)
    return {
        "workflows": len(observed.arrivals), "waveless": recorded.waveless,
        "engine_concurrency": observed.engine_concurrency,
        "service_concurrency": dict(sorted(observed.service_concurrency.items())),
        "dispatch_p50_ms": round(gaps[len(gaps) // 2], 3) if gaps else None,
        "release_dispatch_p50_ms": (round(release_gaps[len(release_gaps) // 2], 3)
                                    if release_gaps else None),
        "operations": operations,
    }
