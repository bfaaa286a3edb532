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
from projections.read_models import ProjectionViews

PENDING_PAGE = 500
MIN_CALLS = 5


def waveless_signals(models: ProjectionViews) -> LoadSignals:
    """LoadSignals backed by the progress and load read models."""
    signals = _ReadModelSignals(models)
    return LoadSignals(pending=signals.pending, in_flight=signals.in_flight,
                       step_estimate_ms=signals.step_estimate_ms, load=signals.load)


class _ReadModelSignals:
    def __init__(self, models: ProjectionViews) -> None:
        self.models = models

    def pending(self) -> list[UUID]:
        """Waiting waveless workflows: the oldest (for ageing and first come, first served)
        and the highest priority, so a long queue cannot hide urgent work."""
        ids: dict[UUID, None] = {}
        for sort, descending in (("created_at", False), ("priority", True)):
            self._waiting(sort, descending, ids)
        return list(ids)

    def _waiting(self, sort: str, descending: bool, ids: dict[UUID, None]) -> None:
        """Adds to `ids` the waveless workflows among the first pages of PENDING ones."""
        cursor = None
        taken = 0
        while taken < 5 * PENDING_PAGE:
            page = self.models.progress.list(status="PENDING", sort=sort,
                                             descending=descending, limit=PENDING_PAGE,
                                             cursor=cursor)
            # A dict keeps the first place of an id seen twice.
            ids.update((row.id, None) for row in page.items if row.waveless)
            taken += len(page.items)
            cursor = page.next_cursor
            if cursor is None:
                return

    def in_flight(self) -> Mapping[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for row in self.models.load.list():
            counts[row.service] += row.in_flight
        return counts

    def step_estimate_ms(self, service: str) -> float | None:
        durations = [row.avg_duration_ms for row in self.models.load.list()
                     if row.service == service and row.avg_duration_ms is not None]
        return max(durations) if durations else None

    def load(self) -> tuple[float | None, float | None]:
        """The worst service's best instance: release pauses only when every instance of
        some service is overloaded or failing, since new work is routed to the best one.
        Only real instances with enough recent calls count (a row named after its service
        holds failures that never reached an instance, such as unresolvable input)."""
        scores: dict[str, list[float]] = defaultdict(list)
        errors: dict[str, list[float]] = defaultdict(list)
        for row in self.models.load.list():
            if row.instance == row.service:
                continue
            if row.load_score is not None:
                scores[row.service].append(row.load_score)
            if row.error_rate is not None and row.completed + row.failed >= MIN_CALLS:
                errors[row.service].append(row.error_rate)
        worst_score = max((min(v) for v in scores.values()), default=None)
        worst_errors = max((min(v) for v in errors.values()), default=None)
        return worst_score, worst_errors
