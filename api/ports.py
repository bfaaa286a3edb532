"""What the API needs from the read models (`projections/`), as protocols.

The API never runs SQL: queries go through these ports, which `projections/` implements
(`api.query_side` adapts it). Rows are the projections' frozen DTOs; the response
schemas read them by attribute.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from domain.load import LoadMetrics


class PageOf(Protocol):
    """One page of rows and the cursor of the next (None on the last page)."""

    @property
    def items(self) -> Sequence[Any]: ...

    @property
    def next_cursor(self) -> str | None: ...


class ProgressQueries(Protocol):
    """Progress rows: one per workflow."""

    def get(self, workflow_id: UUID) -> Any | None: ...

    def list(self, *, status: Sequence[str] | None = None, priority: Sequence[str] | None = None,
             type: Sequence[str] | None = None,
             definition: str | None = None, correlation_id: str | None = None,
             created_after: datetime | None = None, created_before: datetime | None = None,
             sort: str = "created_at", descending: bool = False, limit: int = 50,
             cursor: str | None = None) -> PageOf: ...


class AsyncQueries(Protocol):
    """The hottest queries on the event loop, so a request needs no worker thread. An app
    opens them in its lifespan (in its own event loop) and closes them at shutdown."""

    async def progress_json(self, workflow_id: UUID) -> str | None:
        """`ProgressQueries.get`'s row as a JSON object, awaited (None: no such workflow)."""
        ...

    async def close(self) -> None: ...


class AuditQueries(Protocol):
    """Audit rows: one per workflow event."""

    def for_workflow(self, workflow_id: UUID, limit: int = 50,
                     cursor: str | None = None) -> PageOf: ...

    def search(self, *, workflow_id: UUID | None = None, correlation_id: str | None = None,
               event_type: Sequence[str] | None = None, after: datetime | None = None,
               before: datetime | None = None, limit: int = 50,
               cursor: str | None = None, descending: bool = False) -> PageOf: ...

    def counts(self, event_types: Sequence[str], after: datetime, before: datetime,
               bucket_seconds: int) -> Any:
        """Events per type and epoch-aligned bucket (`projections.audit.AuditCounts`:
        `buckets()` every bucket with zeros, `totals()`); InvalidValue for a window, bucket
        width or event type it does not take."""
        ...


class LoadQueries(Protocol):
    """Load rows: one per service instance."""

    def list(self, window_seconds: float = 300.0) -> Sequence[Any]: ...


class ProjectionControl(Protocol):
    """Status, read-your-writes waits and rebuilds of the projections."""

    def names(self) -> Sequence[str]: ...

    def statuses(self) -> Sequence[Any]: ...

    def wait(self, names: Sequence[str], position: int, timeout: float) -> int | None:
        """Blocks until every named projection has applied `position`; returns the lowest
        position reached (>= `position` on success; less, or None, on time-out)."""
        ...

    def rebuild(self, name: str) -> Any: ...


class QueryRouting(Protocol):
    """Read-model queries spread over hot standbys (`api.query_routing.QueryRouter`)."""

    def wait(self, names: Sequence[str], position: int, timeout: float
             ) -> tuple[int | None, Any]:
        """As `ProjectionControl.wait`, on some server; returns the lowest position reached
        and that server, for `pin`."""
        ...

    def pin(self, target: Any) -> None:
        """Sends the current request's queries to `target` (None: any well server)."""
        ...


class LoadCommands(Protocol):
    """Load metrics reported by services, and manual rebalancing (seed section 7);
    `application.load_balancing.LoadBalancer` is one."""

    def report_metrics(self, metrics: LoadMetrics) -> int | None: ...

    def rebalance(self, actor: str = "operator"
                  ) -> Sequence[tuple[str, Mapping[str, float], int | None]]: ...


@dataclass(frozen=True)
class QueryPorts:
    """Everything the query side of the API reads from."""

    progress: ProgressQueries
    audit: AuditQueries
    load: LoadQueries
    projections: ProjectionControl
    open_async: Callable[[], Awaitable[AsyncQueries]] | None = None
    """Opens `AsyncQueries` in the running event loop; without it every query runs in a
    worker thread."""
    routing: QueryRouting | None = None
    """With query replicas: where a request's `min_position` wait and queries go."""
