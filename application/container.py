"""The composition root: builds every part from Settings; nothing connects at import time."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from application import database
from application.database import Database
from application.engine.dispatch import Dispatcher
from application.engine.handlers import PythonHandler
from application.engine.http_handler import HttpStepHandler
from application.engine.registry import ServiceRegistry
from application.engine.worker import Worker
from application.load_balancing import LoadBalancer
from application.persistence import LeaderLock
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
    workers: list[Worker] = field(default_factory=list)
    releasers: list[Releaser] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings | None = None, *, simulator_url: str | None = None,
              db: Database | None = None) -> Container:
        settings = settings or Settings.from_env()
        db = db or database.resolve(settings.database_url, settings.schema)
        env = {**db.env(), **settings.extra_env}
        workflows = Workflows(env=env)
        workflows.ensure_builtin_definitions()
        registry = ServiceRegistry.from_settings(settings, simulator_url or DEFAULT_SIMULATOR_URL)
        balancer = LoadBalancer(workflows, registry.to_dict(), breaker=settings.breaker)
        registry.use_selector(balancer)
        http_handler = HttpStepHandler(registry, observer=balancer.observe,
                                       max_output_bytes=settings.max_output_bytes)
        python_handlers = PythonHandler()
        dispatcher = Dispatcher(python_handlers, http_handler)
        workflows.use_services(EngineServices(registry, python_handlers))
        return cls(settings, db, workflows, python_handlers, dispatcher, registry, http_handler,
                   balancer)

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
            ageing_ms=self.settings.waveless_ageing_ms, wip_caps=self.settings.wip_caps)
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
        lock = LeaderLock(self.db.conninfo, f"wes-waveless-release:{self.db.schema}")
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
