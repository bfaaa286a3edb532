"""Read-model queries from hot standbys (`WES_QUERY_DATABASE_URLS`), the primary as fallback.

Each replica is a streaming standby of the read-model server: the same tables, the same
tracking positions, a little later. A health check (once a second) reads every replica's
applied tracking positions and the primary's; a replica that does not answer, or whose
slowest projection is more than `max_lag_events` behind the primary's, is skipped until a
later check finds it well again. Queries go round-robin to the replicas that are well, and
to the primary when none is (or when a replica fails the query itself).

`min_position` (read your writes) waits on the *replica's own* applied position: a row is
only read from a server that has applied the position asked for. A replica gets
`replica_wait_seconds` of the wait; past that (replay paused, a lag spike) the wait goes on
at the primary and the query follows it there. The request's chosen server is kept in a
context variable from the wait to the query.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg

from api.query_side import AsyncProgressQueries
from application.pool import UNAVAILABLE
from projections.read_models import PROJECTION_NAMES, ProjectionViews

log = logging.getLogger(__name__)

_ASYNC_UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError, OSError)


@dataclass(eq=False)
class QueryTarget:
    """One server the read models can be queried on."""

    name: str
    models: ProjectionViews
    primary: bool
    healthy: bool = True
    lag_events: int | None = 0
    fast: AsyncProgressQueries | None = field(default=None, repr=False)


_pinned: contextvars.ContextVar[QueryTarget | None] = contextvars.ContextVar(
    "wes_query_target", default=None)


class QueryRouter:
    """Chooses the server for each read-model query; runs the health checks."""

    def __init__(self, primary: ProjectionViews, replicas: Sequence[tuple[str, ProjectionViews]], *,
                 max_lag_events: int = 1000, replica_wait_seconds: float = 1.0,
                 check_seconds: float = 1.0) -> None:
        self.primary = QueryTarget("primary", primary, primary=True)
        self.replicas = [QueryTarget(name, models, primary=False) for name, models in replicas]
        self.max_lag_events = max_lag_events
        self.replica_wait_seconds = replica_wait_seconds
        self.check_seconds = check_seconds
        self._turn = itertools.count()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._async_lock = threading.Lock()
        self.served: dict[str, int] = {}  # server name -> queries answered (for tests, docs)

    # ------------------------------------------------------------------ health

    def start(self) -> None:
        self.check()
        self._thread = threading.Thread(target=self._check_loop, name="wes-replica-check",
                                        daemon=True)
        self._thread.start()

    def _check_loop(self) -> None:
        while not self._stop.wait(self.check_seconds):
            try:
                self.check()
            except Exception:  # the check must keep running; a failed one skips replicas
                log.exception("replica health check failed")

    def check(self) -> None:
        """Measures every replica's lag behind the primary, in events; skips the unwell."""
        try:
            head = self._position(self.primary)
        except UNAVAILABLE as e:
            log.warning("replica check: the primary read-model server is unavailable: %s",
                        " ".join(str(e).split())[:200])
            return
        for replica in self.replicas:
            try:
                lag: int | None = max(head - self._position(replica), 0)
            except UNAVAILABLE:
                lag = None
            healthy = lag is not None and lag <= self.max_lag_events
            if healthy != replica.healthy:
                log.warning("query replica %s is %s", replica.name,
                            "back" if healthy else
                            ("unavailable" if lag is None else f"{lag} events behind: skipped"))
            replica.healthy, replica.lag_events = healthy, lag

    def _position(self, target: QueryTarget) -> int:
        """The slowest projection's applied position on that server."""
        app = target.models.app.name
        return min((target.models.view(name).max_tracking_id(app) or 0)
                   for name in PROJECTION_NAMES)

    def mark_down(self, target: QueryTarget, error: BaseException) -> None:
        if not target.primary and target.healthy:
            log.warning("query replica %s failed, using another server until it is well: %s",
                        target.name, " ".join(str(error).split())[:200])
        target.healthy = False

    # ------------------------------------------------------------------ choosing

    def choose(self) -> QueryTarget:
        """A well replica, in turn; the primary when none is."""
        well = [r for r in self.replicas if r.healthy]
        if not well:
            return self.primary
        return well[next(self._turn) % len(well)]

    def pin(self, target: QueryTarget | None) -> None:
        """Sends this request's later queries to `target` (None: any)."""
        _pinned.set(target)

    def _target(self) -> QueryTarget:
        pinned = _pinned.get()
        return pinned if pinned is not None and (pinned.primary or pinned.healthy) \
            else (self.primary if pinned is not None else self.choose())

    def run(self, call: Callable[[ProjectionViews], Any]) -> Any:
        """`call(models)` on this request's server; on the primary if a replica fails."""
        target = self._target()
        if not target.primary:
            try:
                result = call(target.models)
            except UNAVAILABLE as e:
                self.mark_down(target, e)
            else:
                self._count(target)
                return result
        result = call(self.primary.models)
        self._count(self.primary)
        return result

    def _count(self, target: QueryTarget) -> None:
        self.served[target.name] = self.served.get(target.name, 0) + 1

    def wait(self, names: Sequence[str], position: int, timeout: float
             ) -> tuple[int | None, QueryTarget]:
        """Waits until a server has applied `position` for every named projection:
        a replica first (up to `replica_wait_seconds`), then the primary. Returns the
        lowest position reached and the server the request's queries must go to."""
        deadline = time.monotonic() + timeout
        target = self.choose()
        if not target.primary:
            try:
                target.models.wait(position, min(self.replica_wait_seconds, timeout), names)
                return position, target
            except TimeoutError:
                pass
            except UNAVAILABLE as e:
                self.mark_down(target, e)
        try:
            self.primary.models.wait(position, max(deadline - time.monotonic(), 0.0), names)
        except TimeoutError:
            reached = [s.position for s in self.primary.models.status(names)]
            return min(reached, default=None), self.primary
        return position, self.primary

    # ------------------------------------------------------------------ async

    async def progress_json(self, workflow_id: UUID) -> str | None:
        """`GET /v1/workflows/{id}`'s row, on the event loop, on this request's server."""
        target = self._target()
        if not target.primary:
            try:
                found = await (await self._fast(target)).progress_json(workflow_id)
            except _ASYNC_UNAVAILABLE as e:
                self.mark_down(target, e)
            else:
                self._count(target)
                return found
        found = await (await self._fast(self.primary)).progress_json(workflow_id)
        self._count(self.primary)
        return found

    async def _fast(self, target: QueryTarget) -> AsyncProgressQueries:
        if target.fast is None:
            target.fast = await AsyncProgressQueries.open(target.models.progress)
        return target.fast

    async def close_async(self) -> None:
        for target in [self.primary, *self.replicas]:
            if target.fast is not None:
                fast, target.fast = target.fast, None
                await fast.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        for replica in self.replicas:
            replica.models.close()


class RoutedQueries:
    """One view's queries (`progress`, `audit` or `load`) as the router sends them."""

    def __init__(self, router: QueryRouter, view: str) -> None:
        self._router = router
        self._view = view

    def __getattr__(self, method: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            return self._router.run(
                lambda models: getattr(getattr(models, self._view), method)(*args, **kwargs))

        return call


class RoutedAsyncQueries:
    """`AsyncQueries` over the router (opened in the app's event loop, closed with it)."""

    def __init__(self, router: QueryRouter) -> None:
        self._router = router

    async def progress_json(self, workflow_id: UUID) -> str | None:
        return await self._router.progress_json(workflow_id)

    async def close(self) -> None:
        await self._router.close_async()
