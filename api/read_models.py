"""Adapts `projections/` to the API's ports: the views, status, waits, rebuilds, the runner."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from api.batching import Coalescer
from api.errors import ApiProblem
from api.ports import ReadModels as ReadModelPorts
from application import database
from application.database import READ_MODELS_ENV_PREFIX, Database, parse_url
from application.pool import until_available
from application.workflows import Workflows
from projections.async_reads import AsyncReadPool
from projections.progress import PostgresProgressView
from projections.read_models import PROJECTION_NAMES, ReadModels
from projections.rebuild import RebuildInProgress, rebuild
from projections.runner import ProjectorRunner

if TYPE_CHECKING:
    from api.query_routing import QueryRouter, RoutedAsyncQueries
    from application.container import Container
    from application.settings import Settings

log = logging.getLogger(__name__)


class ProjectionsControl:
    """Status, read-your-writes waits and background rebuilds of the projections."""

    def __init__(self, models: ReadModels) -> None:
        self.models = models
        self._rebuilds: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def names(self) -> Sequence[str]:
        return PROJECTION_NAMES

    def statuses(self) -> Sequence[Any]:
        return self.models.status()

    def wait(self, names: Sequence[str], position: int, timeout: float) -> int | None:
        try:
            self.models.wait(position, timeout, names)
        except TimeoutError:
            reached = [s.position for s in self.models.status(names)]
            return min(reached, default=None)
        return position

    def rebuild(self, name: str) -> None:
        """Starts a blue/green rebuild in a background thread; 409 while one runs (here or
        in another process: its status then says "rebuilding")."""
        with self._lock:
            running = self._rebuilds.get(name)
            elsewhere = any(s.state == "rebuilding" for s in self.models.status([name]))
            if (running is not None and running.is_alive()) or elsewhere:
                raise ApiProblem(409, "rebuild-in-progress", "Rebuild in progress",
                                 f"projection {name!r} is already being rebuilt")
            thread = threading.Thread(target=self._rebuild, args=(name,),
                                      name=f"wes-rebuild-{name}", daemon=True)
            self._rebuilds[name] = thread
            thread.start()

    def _rebuild(self, name: str) -> None:
        try:
            for report in rebuild(self.models, [name]):
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


class ReadModelSet:
    """The read models of one database, the API's ports over them, and their runner; with
    query replicas, the ports send queries through a `QueryRouter`."""

    def __init__(self, models: ReadModels, router: QueryRouter | None = None) -> None:
        self.models = models
        self.router = router
        self.control = ProjectionsControl(models)
        if router is None:
            self.ports = ReadModelPorts(progress=models.progress, audit=models.audit,
                                        load=models.load, projections=self.control,
                                        open_async=self.open_async)
        else:
            from api.query_routing import RoutedQueries

            self.ports = ReadModelPorts(
                progress=RoutedQueries(router, "progress"), audit=RoutedQueries(router, "audit"),
                load=RoutedQueries(router, "load"), projections=self.control,
                open_async=self.open_routed, routing=router)

    @classmethod
    def build(cls, workflows: Workflows, db: Database,
              extra_env: Mapping[str, str] | None = None) -> ReadModelSet:
        return cls(ReadModels({**db.env(), **(extra_env or {})}, app=workflows))

    @classmethod
    def for_container(cls, container: Container) -> ReadModelSet:
        """The read models where the container's settings put them (`from_settings`)."""
        return cls.from_settings(container.workflows, container.db, container.read_db,
                                 container.settings)

    @classmethod
    def from_settings(cls, workflows: Workflows, db: Database, read_db: Database | None,
                      settings: Settings) -> ReadModelSet:
        """The read models on `read_db` (`WES_READ_MODEL_DATABASE_URL`; None: the event
        store's server), queried on the hot standbys of `WES_QUERY_DATABASE_URLS` when
        there are any."""
        from api.query_routing import QueryRouter

        models = until_available("read models", lambda: ReadModels(
            {**database.read_models_env(db, read_db, settings.pool), **settings.extra_env},
            app=workflows))
        if not settings.query_database_urls:
            return cls(models)
        replicas = []
        for url in settings.query_database_urls:
            replica = parse_url(url).with_schema(settings.schema)
            # A standby is read-only: nothing to create there; and a dead one must be given
            # up on quickly, the primary answers meanwhile.
            env = {**database.read_models_env(db, replica, settings.pool),
                   **settings.extra_env, f"{READ_MODELS_ENV_PREFIX}CREATE_TABLE": "n",
                   f"{READ_MODELS_ENV_PREFIX}POSTGRES_CONNECT_TIMEOUT": "2"}
            replicas.append((replica.url, ReadModels(env, app=workflows)))
        router = QueryRouter(models, replicas, max_lag_events=settings.query_max_lag_events,
                             replica_wait_seconds=settings.query_replica_wait_seconds)
        router.start()
        return cls(models, router)

    async def open_async(self) -> AsyncProgressQueries:
        return await AsyncProgressQueries.open(self.models.progress)

    async def open_routed(self) -> RoutedAsyncQueries:
        from api.query_routing import RoutedAsyncQueries

        assert self.router is not None
        return RoutedAsyncQueries(self.router)

    def runner(self) -> ProjectorRunner:
        """The projectors, to run in threads of this process (`start()` / `stop()`)."""
        return ProjectorRunner(read_models=self.models)

    def close(self) -> None:
        self.control.join(30)
        if self.router is not None:
            self.router.close()
        self.models.close()
