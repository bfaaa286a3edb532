"""The composition root: builds every part from Settings; nothing connects at import time."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from application import database
from application.database import Database
from application.engine.dispatch import Dispatcher
from application.engine.http_handler import HttpStepHandler
from application.engine.python_handler import PythonHandler
from application.engine.registry import ServiceRegistry
from application.engine.worker import Worker
from application.load_balancing import LoadBalancer
from application.locks import LeaderLock
from application.pool import PoolBudget, name_process, process_name, until_available
from application.settings import Settings
from application.waveless import LoadSignals, Releaser, WavelessSettings
from application.wip import WipGate
from application.workflows import Workflows

log = logging.getLogger(__name__)

DEFAULT_SIMULATOR_URL = "http://127.0.0.1:8000/sim"


@dataclass(frozen=True)
class EngineServices:
    """The services a definition may name: the registry's and the Python handlers'."""

    registry: ServiceRegistry
    python: PythonHandler

    def knows(self, service: str, operation: str) -> bool:
        return service in self.registry.services or self.python.handles(service, operation)

    def names(self) -> list[str]:
        return list(self.registry.services)


@dataclass
class Container:
    """The built system: database, application, handlers; workers are made on demand."""

    settings: Settings
    db: Database
    workflows: Workflows
    python_handlers: PythonHandler
    dispatcher: Dispatcher
    registry: ServiceRegistry
    http_handler: HttpStepHandler
    balancer: LoadBalancer
    read_db: Database | None = None
    """The read models' server (WES_READ_MODEL_DATABASE_URL); None: the event store's."""
    workers: list[Worker] = field(default_factory=list)
    releasers: list[Releaser] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings | None = None, *, simulator_url: str | None = None,
              db: Database | None = None, kind: str | None = None) -> Container:
        """Builds everything; `kind` names this process's connections (`wes-<kind>-<id>`).
        While the database gives no connection (a full server, a restart) it waits and
        retries, saying so in one line each time, instead of dying."""
        settings = settings or Settings.from_env()
        if kind is not None:
            name_process(kind)
        else:
            process_name("app")  # named, if nothing named it yet
        db = db or until_available("event store", lambda: database.resolve(
            settings.database_url, settings.schema))
        read_db = None
        if settings.read_model_database_url:
            read_db = until_available("read-model database", lambda: database.resolve(
                settings.read_model_database_url, settings.schema))
        env = {**db.env(settings.pool), **settings.extra_env}
        workflows = until_available("event store", lambda: _open_workflows(env))
        registry = ServiceRegistry.from_settings(settings, simulator_url or DEFAULT_SIMULATOR_URL)
        balancer = LoadBalancer(workflows, registry.to_dict(), breaker=settings.breaker)
        registry.use_selector(balancer)
        http_handler = HttpStepHandler(registry, observer=balancer.observe,
                                       max_output_bytes=settings.max_output_bytes)
        python_handlers = PythonHandler()
        dispatcher = Dispatcher(python_handlers, http_handler)
        workflows.use_services(EngineServices(registry, python_handlers))
        return cls(settings, db, workflows, python_handlers, dispatcher, registry, http_handler,
                   balancer, read_db)

    def read_models_env(self, budget: PoolBudget | None = None) -> dict[str, str]:
        """The configuration `ReadModels` takes: events from the event store, rows and
        tracking on the read models' server (with `budget` for its pool, when given)."""
        return {**database.read_models_env(self.db, self.read_db, budget or self.settings.pool),
                **self.settings.extra_env}

    def reads_only_budget(self) -> PoolBudget:
        """One connection: for read models a process only reads now and then (a worker's
        waveless signals, read by the one worker leading the release loop), given back
        after 1 s unused: the other workers used it only to create the tables at start,
        and twenty of them holding it for the default period were twenty connections."""
        return PoolBudget(1, 0, min(self.settings.pool.max_idle_seconds, 1.0))

    def worker(self, concurrency: int = 4, worker_id: str | None = None) -> Worker:
        wip = WipGate(self.workflows.store, self.settings.wip_caps,
                      lease_seconds=self.settings.worker_lease_seconds) \
            if self.settings.wip_caps else None
        worker = Worker(self.workflows, self.dispatcher, worker_id=worker_id,
                        concurrency=concurrency, lease_seconds=self.settings.worker_lease_seconds,
                        poll_seconds=self.settings.worker_poll_seconds,
                        max_output_bytes=self.settings.max_output_bytes, wip=wip)
        self.workers.append(worker)
        return worker

    def releaser(self, signals: LoadSignals) -> Releaser:
        """The waveless release loop (one active across all processes: advisory lock)."""
        settings = WavelessSettings(
            batch_size=self.settings.waveless_batch_size,
            interval_ms=self.settings.waveless_interval_ms,
            ageing_ms=self.settings.waveless_ageing_ms, wip_caps=self.settings.wip_caps,
            cutoff_urgency_ms=self.settings.waveless_cutoff_urgency_ms)
        if self.settings.wip_caps:
            # Release admits by the first service's cap; the slots say exactly what is in
            # flight now, where the load read model may lag behind.
            gate = WipGate(self.workflows.store, self.settings.wip_caps)
            observed = signals.in_flight

            def in_flight() -> dict[str, int]:
                counts = dict(observed())
                for service, held in gate.in_flight().items():
                    counts[service] = max(counts.get(service, 0), held)
                return counts

            signals = replace(signals, in_flight=in_flight)
        lock = LeaderLock(self.db.conninfo, f"wes-waveless-release:{self.db.schema}",
                          retry_seconds=2.0)
        releaser = Releaser(self.workflows, signals, settings, leader_lock=lock)
        self.releasers.append(releaser)
        return releaser

    def close(self) -> None:
        for releaser in self.releasers:
            releaser.stop()
        for worker in self.workers:
            worker.stop()
        self.dispatcher.close()
        self.http_handler.close()
        self.workflows.close()


def _open_workflows(env: dict[str, str]) -> Workflows:
    """The application with its built-in definitions; closed again if that fails."""
    workflows = Workflows(env=env)
    try:
        workflows.ensure_builtin_definitions()
    except BaseException:
        workflows.close()
        raise
    return workflows


def read_models_env(settings: Settings, *,
                    deadline_seconds: float | None = None) -> dict[str, str]:
    """`Container.read_models_env` for a process without a container (`wes projections`):
    both servers resolved, waiting (up to `deadline_seconds`) while they give no
    connection."""
    db = until_available("event store", lambda: database.resolve(
        settings.database_url, settings.schema), deadline_seconds=deadline_seconds)
    read_db = None
    if settings.read_model_database_url:
        read_db = until_available("read-model database", lambda: database.resolve(
            settings.read_model_database_url, settings.schema),
            deadline_seconds=deadline_seconds)
    return {**database.read_models_env(db, read_db, settings.pool), **settings.extra_env}
