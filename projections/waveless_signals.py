"""What the waveless release loop reads, served from the read models.

The release loop is a process manager: it queries read models (which workflows wait,
how busy each service is, how long its steps take) and issues commands on aggregates,
which remain the source of truth (a release re-checks each workflow's events).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from uuid import UUID

from application.waveless import LoadSignals
from projections.read_models import ReadModels

PENDING_PAGE = 500


def waveless_signals(models: ReadModels) -> LoadSignals:
    """LoadSignals backed by the progress and load read models."""

    def pending() -> list[UUID]:
        ids: list[UUID] = []
        cursor = None
        while True:
            page = models.progress.list(status="PENDING", sort="created_at", descending=False,
                                        limit=PENDING_PAGE, cursor=cursor)
            ids.extend(row.id for row in page.items if row.waveless)
            cursor = page.next_cursor
            if cursor is None or len(ids) >= 5 * PENDING_PAGE:
                return ids

    def in_flight() -> Mapping[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for row in models.load.list():
            counts[row.service] += row.in_flight
        return counts

    def step_estimate_ms(service: str) -> float | None:
        durations = [row.avg_duration_ms for row in models.load.list()
                     if row.service == service and row.avg_duration_ms is not None]
        return max(durations) if durations else None

    def load() -> tuple[float | None, float | None]:
        rows = models.load.list()
        scores = [row.load_score for row in rows if row.load_score is not None]
        errors = [row.error_rate for row in rows if row.error_rate is not None]
        # Release pauses only when every instance of some service is in trouble: the
        # least-loaded instance is what new work would be routed to.
        by_service: dict[str, list[float]] = defaultdict(list)
        for row in rows:
            if row.load_score is not None:
                by_service[row.service].append(row.load_score)
        worst_best = max((min(v) for v in by_service.values()), default=None)
        return (worst_best if scores else None, max(errors) if errors else None)

    return LoadSignals(pending=pending, in_flight=in_flight, step_estimate_ms=step_estimate_ms,
                       load=load)
