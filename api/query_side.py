"""The API's query side: `projections/` adapted to the API's ports (status, waits,
rebuilds, the async progress lookups) and the projectors' runner."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from api.batching import Coalescer
from api.errors import ApiProblem
from api.ports import QueryPorts
from projections.async_reads import AsyncReadPool
from projections.progress import PostgresProgressView
from projections.read_models import PROJECTION_NAMES, ProjectionViews
from projections.rebuild import RebuildInProgress, rebuild
from projections.runner import ProjectorRunner

if TYPE_CHECKING:
    from api.query_routing import QueryRouter, RoutedAsyncQueries

log = logging.getLogger(__name__)


class ProjectionsControl:
    """Status, read-your-writes waits and background rebuilds of the projections."""

    def __init__(self, views: ProjectionViews) -> None:
        self.views = views
        self._rebuilds: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def names(self) -> Sequence[str]:
        return PROJECTION_NAMES

    def statuses(self) -> Sequence[Any]:
        return self.views.status()

    def wait(self, names: Sequence[str], position: int, timeout: float) -> int | None:
        try:
            self.views.wait(position, timeout, names)
        except TimeoutError:
            reached = [s.position for s in self.views.status(names)]
            return min(reached, default=None)
        return position

    def rebuild(self, name: str) -> None:
        """Starts a blue/green rebuild in a background thread; 409 while one runs (here or
        in another process: its status then says "rebuilding")."""
        with self._lock:
            running = self._rebuilds.get(name)
            elsewhere = any(s.state == "rebuilding" for s in self.views.status([name]))
            if (running is not None and running.is_alive()) or elsewhere:
                raise ApiProblem(409, "rebuild-in-progress", "Rebuild in progress",
                                 f"projection {name!r} is already being rebuilt")
            thread = threading.Thread(target=self._rebuild, args=(name,),
                                      name=f"wes-rebuild-{name}", daemon=True)
            self._rebuilds[name] = thread
            thread.start()

    def _rebuild(self, name: str) -> None:
        try:
            for report in rebuild(self.views, [name]):
                log.info("rebuilt projection %s", name, extra={"report": str(report)})
        except RebuildInProgress:
            log.info("projection %s is being rebuilt by another process", name)
        except Exception:  # the projection's status reports a failed rebuild too
            log.exception("rebuild of %s failed", name)

    def join(self, timeout: float | None = None) -> None:
        for thread in list(self._rebuilds.values()):
            thread.join(timeout)


class AsyncProgressQueries:
    """`GET /v1/workflows/{id}` on the event loop: the progress view's statement on a pool of
    asyncio connections of its own (one per app, opened in the app's event loop), the
    lookups in flight together coalesced into one statement."""

    def __init__(self, view: PostgresProgressView, pool: AsyncReadPool) -> None:
        self.view = view
        self.pool = pool
        self._rows: Coalescer[UUID, str] = Coalescer(self._fetch)

    async def _fetch(self, workflow_ids: Sequence[UUID]) -> dict[UUID, str]:
        return await self.view.get_json_many(self.pool, workflow_ids)

    @classmethod
    async def open(cls, view: PostgresProgressView) -> AsyncProgressQueries:
        pool = AsyncReadPool(view.datastore)
        await pool.open()
        return cls(view, pool)

    async def progress_json(self, workflow_id: UUID) -> str | None:
        return await self._rows.get(workflow_id)

    async def close(self) -> None:
        await self.pool.close()


class QuerySide:
    """The API's query side on one set of projection views: the ports the routes read
    (`QueryPorts`), the projections' control, and the projectors' runner; with query
    replicas, the ports send queries through a `QueryRouter`. Built by the composition
    root (`bootstrap.container.query_side`)."""

    def __init__(self, views: ProjectionViews, router: QueryRouter | None = None) -> None:
        self.views = views
        self.router = router
        self.control = ProjectionsControl(views)
        if router is None:
            self.ports = QueryPorts(progress=views.progress, audit=views.audit,
                                    load=views.load, projections=self.control,
                                    open_async=self.open_async)
        else:
            from api.query_routing import RoutedQueries

            self.ports = QueryPorts(
                progress=RoutedQueries(router, "progress"), audit=RoutedQueries(router, "audit"),
                load=RoutedQueries(router, "load"), projections=self.control,
                open_async=self.open_routed, routing=router)

    async def open_async(self) -> AsyncProgressQueries:
        return await AsyncProgressQueries.open(self.views.progress)

    async def open_routed(self) -> RoutedAsyncQueries:
        from api.query_routing import RoutedAsyncQueries

        assert self.router is not None
        return RoutedAsyncQueries(self.router)

    def runner(self) -> ProjectorRunner:
        """The projectors, to run in threads of this process (`start()` / `stop()`)."""
        return ProjectorRunner(read_models=self.views)

    def close(self) -> None:
        self.control.join(30)
        if self.router is not None:
            self.router.close()
        self.views.close()
