"""The read models of one database, as the API and the CLI use them."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from eventsourcing.utils import Environment

from application.connection_check import check_now_and_then
from application.pool import BudgetedPostgresFactory
from application.workflows import Workflows
from projections.audit import AuditProjection, PostgresAuditView
from projections.base import BatchProjection
from projections.generations import GenerationalView
from projections.load import LoadProjection, PostgresLoadView
from projections.progress import PostgresProgressView, ProgressProjection
from projections.status import ProjectionStatus

PROJECTION_NAMES = ("progress", "load", "audit")
_CLASSES: Mapping[str, tuple[type[BatchProjection[Any]], type[GenerationalView[Any]]]] = {
    "progress": (ProgressProjection, PostgresProgressView),
    "load": (LoadProjection, PostgresLoadView),
    "audit": (AuditProjection, PostgresAuditView),
}


class UnknownProjection(LookupError):
    """A projection name that is not one of PROJECTION_NAMES."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no projection {name!r}; the projections are "
                         f"{', '.join(PROJECTION_NAMES)}")


class ProjectionViews:
    """The progress, load and audit views on one database (sharing one connection pool),
    their status, and read-your-writes waits.

    `env` is the library's configuration (`Database.env()`, or `database.read_models_env`
    for read models on a server of their own: its `WES_PROJECTIONS_POSTGRES_*` keys win
    here); `app` is the event store to measure positions against and to read events from
    (bootstrap.container opens it), closed with the views when they `owns_app`.
    """

    def __init__(self, env: Mapping[str, str], app: Workflows, *,
                 owns_app: bool = False) -> None:
        self._factory = BudgetedPostgresFactory(Environment("WES_PROJECTIONS", dict(env)))
        check_now_and_then(self._factory.datastore)
        self.progress: PostgresProgressView = self._factory.tracking_recorder(
            PostgresProgressView)
        self.load: PostgresLoadView = self._factory.tracking_recorder(PostgresLoadView)
        self.audit: PostgresAuditView = self._factory.tracking_recorder(PostgresAuditView)
        self._owns_app = owns_app
        self.app = app

    def view(self, name: str) -> GenerationalView[Any]:
        views: dict[str, GenerationalView[Any]] = {
            "progress": self.progress, "load": self.load, "audit": self.audit}
        try:
            return views[name]
        except KeyError:
            raise UnknownProjection(name) from None

    def projection(self, name: str) -> BatchProjection[Any]:
        """A projection writing to this view (for a runner or a rebuild)."""
        projection = _CLASSES[name][0](view=self.view(name))
        projection.use_event_store(self.app.events)
        return projection

    def status(self, names: Sequence[str] = PROJECTION_NAMES) -> list[ProjectionStatus]:
        """Position, head, lag and state of each projection."""
        return [self.view(name).status(self.app) for name in names]

    def wait(self, position: int, timeout: float = 5.0,
             names: Sequence[str] = PROJECTION_NAMES) -> None:
        """Blocks until every named projection has applied global `position` (read your
        writes); raises TimeoutError after `timeout` seconds. Works from any process."""
        deadline = time.monotonic() + timeout
        for name in names:
            self.view(name).wait_for(position, self.app.name,
                                     max(deadline - time.monotonic(), 0.0))

    def close(self) -> None:
        self._factory.close()
        if self._owns_app:
            self.app.close()
