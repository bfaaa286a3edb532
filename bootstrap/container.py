"""The composition root: every process is built here, from `Settings` read once by its
entrypoint; nothing connects at import time.

- `Container.build`: the event store, `Workflows`, the engine (registry, load balancer,
  handlers, dispatcher) — with `worker()` and `releaser()` made on demand.
- `projection_views` / `Container.projection_views`: the read models' views.
- `query_side`: the API's query ports over those views (with query replicas, a router).
- `api_app`: `wes serve` — the API with the projectors, a worker and the simulated
  services beside it; `bench_api_app`: the API alone, for `wes bench`.
- `worker_process`, `projector_runner`, `relay_process`, `event_store`, `whatif_report`:
  `wes worker`, `wes projections run`, `wes relay`, `wes replay`, `wes whatif`.
- `open_workflows`, `read_model_views`, `engine_over`: the parts on a given database,
  each opened one way only; the functions above build from them.

The benchmark harnesses (`bench/`) and the tests' fixtures and support modules build
from here too: the application is `open_workflows(db)` (a harness's pool size or counting
recorder is an `env` override), an engine over in-process handlers is `engine_over`, the
read models are `read_model_views` with `projector_runner`. What they measure or test is
then wired as a process is, and a change of wiring is made once, here.

It is the one module that knows every layer: the API and the simulator are imported
inside the functions that build them, so a worker never loads FastAPI.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from application import database
from application.database import Database
from application.engine.dispatch import Dispatcher
from application.engine.http_handler import HttpStepHandler
from application.engine.ports import DEFAULT_MAX_OUTPUT_BYTES
from application.engine.python_handler import PythonHandler, PythonStep
from application.engine.registry import ServiceRegistry
from application.engine.worker import Worker
from application.load_balancing import LoadBalancer
from application.locks import LeaderLock
from application.pool import PoolBudget, name_process, process_name, until_available
from application.settings import RelaySettings, Settings
from application.waveless import LoadSignals, Releaser, WavelessSettings
from application.wip import WipGate
from application.workflows import DEFAULT_WAVELESS, Clock, Workflows, utc_now
from projections.read_models import ProjectionViews

if TYPE_CHECKING:
    from fastapi import FastAPI

    from api.auth import KeyRing
    from api.query_side import QuerySide
    from application.relay.relay import Relay
    from application.whatif.service import WhatIfRequest
    from projections.runner import ProjectorRunner

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
    engine: Engine
    """The handlers (Python, and HTTP to the registry's services) and the dispatcher; the
    workers and release loops made here are its, and stop with it."""
    registry: ServiceRegistry
    balancer: LoadBalancer
    read_db: Database | None = None
    """The read models' server (WES_READ_MODEL_DATABASE_URL); None: the event store's."""
    pool: PoolBudget = field(default_factory=PoolBudget)
    """This process's connections per datastore (`settings.pool`, times its parts)."""

    @classmethod
    def build(cls, settings: Settings | None = None, *, simulator_url: str | None = None,
              db: Database | None = None, kind: str | None = None,
              parts: int = 1) -> Container:
        """Builds everything; `kind` names this process's connections (`wes-<kind>-<id>`);
        a process doing the work of `parts` processes (`wes serve`: API, worker,
        projectors) gets their connection budgets, unless the environment sets one.
        While the database gives no connection (a full server, a restart) it waits and
        retries, saying so in one line each time, instead of dying."""
        settings = settings or Settings.from_env()
        budget = settings.pool
        if parts > 1 and not settings.pool_configured:
            budget = budget.times(parts)
        if kind is not None:
            name_process(kind)
        else:
            process_name("app")  # named, if nothing named it yet
        wait = settings.db_start_wait_seconds
        db = db or until_available("event store", lambda: database.resolve(
            settings.database_url, settings.db_schema), deadline_seconds=wait)
        read_db = None
        if settings.read_model_database_url:
            read_db = until_available("read-model database", lambda: database.resolve(
                settings.read_model_database_url, settings.db_schema), deadline_seconds=wait)
        workflows = until_available("event store", lambda: open_workflows(
            db, budget=budget, waveless_defaults=settings.waveless_defaults),
            deadline_seconds=wait)
        registry = ServiceRegistry.from_settings(settings, simulator_url or DEFAULT_SIMULATOR_URL)
        balancer = LoadBalancer(workflows, registry.to_dict(), breaker=settings.breaker)
        engine = engine_over(workflows, registry=registry, balancer=balancer,
                             max_output_bytes=settings.max_output_bytes)
        return cls(settings, db, workflows, engine, registry, balancer, read_db, budget)

    def projection_views(self, budget: PoolBudget | None = None) -> ProjectionViews:
        """The read models' views: events from the event store, rows and tracking on the
        read models' server (with `budget` for its pool, when given)."""
        return read_model_views(self.db, self.workflows, read_db=self.read_db,
                                budget=budget or self.pool)

    def query_side(self) -> QuerySide:
        """The API's query side where the settings put the read models (`query_side`)."""
        return query_side(self.workflows, self.db, self.read_db, self.settings, self.pool)

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
        return self.engine.worker(concurrency, worker_id=worker_id,
                                  lease_seconds=self.settings.worker_lease_seconds,
                                  poll_seconds=self.settings.worker_poll_seconds,
                                  max_output_bytes=self.settings.max_output_bytes, wip=wip)

    def releaser(self, signals: LoadSignals) -> Releaser:
        """The waveless release loop (one active across all processes: advisory lock)."""
        settings = self.settings.waveless
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
        return self.engine.releaser(signals, settings, leader_lock=lock)

    def close(self) -> None:
        self.engine.close()
        self.workflows.close()


def open_workflows(db: Database, *, env: Mapping[str, str] | None = None,
                   clock: Clock | None = None, builtin_definitions: bool = True,
                   budget: PoolBudget | None = None,
                   waveless_defaults: tuple[int, int] = DEFAULT_WAVELESS) -> Workflows:
    """The application on `db` (its connections: `budget`, default `WES_DB_*`), with the
    built-in definitions unless told not to (closed again if registering them fails).
    `env` overrides the library's settings (a pool size, a recorder topic); `clock`
    replaces the wall clock (tests); `waveless_defaults` are `Settings.waveless_defaults`."""
    workflows = Workflows(env={**db.env(budget), **(env or {})}, clock=clock or utc_now,
                          waveless_defaults=waveless_defaults)
    if not builtin_definitions:
        return workflows
    try:
        workflows.ensure_builtin_definitions()
    except BaseException:
        workflows.close()
        raise
    return workflows


def read_model_views(db: Database, workflows: Workflows | None = None, *,
                     read_db: Database | None = None, budget: PoolBudget | None = None,
                     env: Mapping[str, str] | None = None) -> ProjectionViews:
    """The read models' views: events from `db` (through `workflows`; None: an
    application of their own, closed with them), rows and tracking on `read_db` (None:
    `db`'s server); `env` overrides the library's settings (a standby's)."""
    settings = {**database.read_models_env(db, read_db, budget), **(env or {})}
    if workflows is not None:
        return ProjectionViews(settings, workflows)
    own = open_workflows(db, builtin_definitions=False, budget=budget)
    try:
        return ProjectionViews(settings, own, owns_app=True)
    except BaseException:
        own.close()
        raise


@dataclass
class Engine:
    """The engine's handlers: in-process Python ones, and a registry's services over HTTP
    when it has one; workers and release loops are made on demand and stop with it.
    `Container.build` makes a process's (tuned by its settings, through `Container.worker`
    and `Container.releaser`); a benchmark drives one with its no-op handlers, a test with
    its stand-in services, tuning the workers themselves."""

    workflows: Workflows
    python: PythonHandler
    """Register more handlers here (by operation, say) before a worker starts."""
    dispatcher: Dispatcher
    http_handler: HttpStepHandler | None = None
    workers: list[Worker] = field(default_factory=list)
    releasers: list[Releaser] = field(default_factory=list)

    def worker(self, concurrency: int = 4, **options: Any) -> Worker:
        """A worker over the handlers; `options` as `Worker` takes them (`poll_seconds`,
        `lease_seconds`, `worker_id`, `wip`, ...), its defaults otherwise."""
        worker = Worker(self.workflows, self.dispatcher, concurrency=concurrency, **options)
        self.workers.append(worker)
        return worker

    def releaser(self, signals: LoadSignals, settings: WavelessSettings, *,
                 leader_lock: LeaderLock | None = None) -> Releaser:
        """The waveless release loop with `settings`; without a `leader_lock` (as
        `Container.releaser` takes) it must be the only one on its schema."""
        releaser = Releaser(self.workflows, signals, settings, leader_lock=leader_lock)
        self.releasers.append(releaser)
        return releaser

    def close(self) -> None:
        """Stops the release loops and workers (a stopped one stays stopped) and the
        dispatcher's threads; the application is the caller's."""
        for releaser in self.releasers:
            releaser.stop()
        for worker in self.workers:
            worker.stop()
        self.dispatcher.close()
        if self.http_handler is not None:
            self.http_handler.close()


def engine_over(workflows: Workflows, handlers: Mapping[str, PythonStep] | None = None, *,
                local: bool = False, registry: ServiceRegistry | None = None,
                balancer: LoadBalancer | None = None,
                max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES) -> Engine:
    """An engine whose `handlers` serve their services in this process: as local
    activities when `local` (start and outcome saved together), else on the remote-call
    path (the start saved before the call). With a `registry`, its services are called
    over HTTP (routed and observed by `balancer`, if given; answers up to
    `max_output_bytes`) and `workflows` checks new workflows' services against both."""
    python = PythonHandler()
    for service, handler in (handlers or {}).items():
        python.register(service, handler, local=local)
    if registry is None:
        return Engine(workflows, python, Dispatcher(python))
    observer = None
    if balancer is not None:
        registry.use_selector(balancer)
        observer = balancer.observe
    http_handler = HttpStepHandler(registry, observer=observer, max_output_bytes=max_output_bytes)
    workflows.use_services(EngineServices(registry, python))
    return Engine(workflows, python, Dispatcher(python, http_handler), http_handler)


def _servers(settings: Settings, deadline_seconds: float
             ) -> tuple[Database, Database | None]:
    """The event store's server and the read models' (None: the same), waiting (up to
    `deadline_seconds`) while they give no connection."""
    db = until_available("event store", lambda: database.resolve(
        settings.database_url, settings.db_schema), deadline_seconds=deadline_seconds)
    read_db = None
    if settings.read_model_database_url:
        read_db = until_available("read-model database", lambda: database.resolve(
            settings.read_model_database_url, settings.db_schema),
            deadline_seconds=deadline_seconds)
    return db, read_db


def projection_views(settings: Settings, *,
                     deadline_seconds: float | None = None) -> ProjectionViews:
    """`wes projections`: the views on the configured servers, with an event store of
    their own; waiting (up to `deadline_seconds`, default `WES_DB_START_WAIT_SECONDS`)
    while the servers give no connection."""
    if deadline_seconds is None:
        deadline_seconds = settings.db_start_wait_seconds
    wait = deadline_seconds

    def views() -> ProjectionViews:
        db, read_db = _servers(settings, wait)
        return read_model_views(db, read_db=read_db, budget=settings.pool)

    return until_available("read models", views, deadline_seconds=wait)


def projector_runner(views: ProjectionViews, names: list[str] | None = None, *,
                     standby_poll_seconds: float | None = None) -> ProjectorRunner:
    """The projectors of `names` (default all), to run in threads of this process; one
    process is active per projection, others stand by (advisory locks), polling for the
    lead every `standby_poll_seconds` (default the runner's; tests take over sooner)."""
    from projections.runner import ProjectorRunner

    options: dict[str, Any] = {}
    if names is not None:
        options["names"] = names
    if standby_poll_seconds is not None:
        options["standby_poll_seconds"] = standby_poll_seconds
    return ProjectorRunner(read_models=views, **options)


def query_side(workflows: Workflows, db: Database, read_db: Database | None = None,
               settings: Settings | None = None, budget: PoolBudget | None = None
               ) -> QuerySide:
    """The API's query side: the views on `read_db` (`WES_READ_MODEL_DATABASE_URL`; None:
    the event store's server), queried on the hot standbys of `WES_QUERY_DATABASE_URLS`
    when there are any. Without `settings` (tests): the views on `db`, one server."""
    from api.query_routing import QueryRouter
    from api.query_side import QuerySide

    if settings is None:
        return QuerySide(read_model_views(db, workflows))
    budget = budget or settings.pool
    views = until_available(
        "read models", lambda: read_model_views(db, workflows, read_db=read_db, budget=budget),
        deadline_seconds=settings.db_start_wait_seconds)
    if not settings.query_database_urls:
        return QuerySide(views)
    replicas = []
    for url in settings.query_database_urls:
        replica = database.parse_url(url).with_schema(settings.db_schema)
        # A standby is read-only: nothing to create there; and a dead one must be given
        # up on quickly, the primary answers meanwhile.
        standby = {f"{database.READ_MODELS_ENV_PREFIX}CREATE_TABLE": "n",
                   f"{database.READ_MODELS_ENV_PREFIX}POSTGRES_CONNECT_TIMEOUT": "2"}
        replicas.append((replica.url, read_model_views(db, workflows, read_db=replica,
                                                       budget=budget, env=standby)))
    router = QueryRouter(views, replicas, max_lag_events=settings.query_max_lag_events,
                         replica_wait_seconds=settings.query_replica_wait_seconds)
    router.start()
    return QuerySide(views, router)


# ---------------------------------------------------------------------------- processes

SIMULATOR_PATH = "/sim"


def api_app(settings: Settings, *, keys: KeyRing, worker: bool, projections: bool,
            simulate: bool, concurrency: int) -> FastAPI:
    """`wes serve`: the API over the container (database, Workflows, engine, load
    balancer) and the query side, with the parts running beside it (projectors, a worker
    and the waveless release loop) and the simulated services mounted at `/sim`."""
    from api.app import Background, create_app

    container = Container.build(settings, kind="api", parts=1 + worker + projections)
    queries = container.query_side()
    # Stopped last (parts stop in reverse order): closes what everything else uses.
    background: list[Background] = [_Closing(queries.close, container.close)]
    if projections:
        background.append(queries.runner())
    if worker:
        from projections.waveless_signals import waveless_signals

        background.append(container.worker(concurrency=concurrency))
        background.append(container.releaser(waveless_signals(queries.views)))
    mounts: dict[str, Any] = {}
    if simulate:
        from simulator.server import create_app as create_simulator

        mounts[SIMULATOR_PATH] = create_simulator()
    return create_app(workflows=container.workflows, queries=queries.ports, keys=keys,
                      load_commands=container.balancer, config=settings.api,
                      whatif=settings.whatif, background=background, mounts=mounts)


def bench_api_app(settings: Settings) -> FastAPI:
    """The API alone on the benchmark's database (`wes bench`'s `api` figures): no
    projectors (the read models were brought up to date before), the default tunables."""
    from api.app import create_app
    from application.settings import ApiConfig

    db = database.parse_url(settings.database_url or "").with_schema(settings.db_schema)
    read_url = settings.read_model_database_url
    read_db = database.parse_url(read_url).with_schema(settings.db_schema) if read_url else None
    workflows = open_workflows(db, builtin_definitions=False, budget=settings.pool,
                               waveless_defaults=settings.waveless_defaults)
    queries = query_side(workflows, db, read_db, settings)
    return create_app(workflows=workflows, queries=queries.ports, config=ApiConfig(),
                      whatif=settings.whatif)


class _Closing:
    """Closes what the other parts use (the query side, the container) when they stopped."""

    def __init__(self, *closers: Callable[[], None]) -> None:
        self.closers = closers

    def start(self) -> None:
        """Everything was opened when it was built."""

    def stop(self) -> None:
        for close in self.closers:
            close()


@dataclass
class WorkerProcess:
    """`wes worker`: an engine worker and the waveless release loop (led by one worker of
    all), with the views the release reads."""

    container: Container
    engine: Worker
    releaser: Releaser
    views: ProjectionViews
    queue_rebuilt: int | None = None
    """How many workflows have work after `--rebuild-queue` (None: not rebuilt)."""

    def start(self) -> None:
        self.engine.start()
        self.releaser.start()

    def stop(self) -> None:
        self.container.close()
        self.views.close()


def worker_process(settings: Settings, *, concurrency: int, simulator_url: str | None = None,
                   rebuild_queue: bool = False) -> WorkerProcess:
    # A database that cannot be reached is an ApplicationError: `wes` prints it as one line.
    container = Container.build(settings, simulator_url=simulator_url, kind="worker")
    rebuilt = container.workflows.rebuild_work_queue() if rebuild_queue else None
    engine = container.worker(concurrency=concurrency)
    from projections.waveless_signals import waveless_signals

    views = container.projection_views(container.reads_only_budget())
    releaser = container.releaser(waveless_signals(views))
    return WorkerProcess(container, engine, releaser, views, rebuilt)


@dataclass
class RelayProcess:
    """`wes relay`: the event store's events to JetStream, one relay active of all."""

    db: Database
    workflows: Workflows
    relay: Relay
    sink_description: str

    def close(self) -> None:
        self.workflows.close()


def relay_process(settings: Settings) -> RelayProcess:
    name_process("relay")  # pg_stat_activity tells its connections apart
    db = database.resolve(settings.database_url, settings.db_schema)
    workflows = open_workflows(db, builtin_definitions=False, budget=settings.pool)
    relay = jetstream_relay(workflows, settings.relay)
    return RelayProcess(db, workflows, relay, relay.sink.describe())


def jetstream_relay(workflows: Workflows, settings: RelaySettings) -> Relay:
    """The relay of `workflows`' events to the JetStream stream of `settings`, named on the
    wire as they say (`wes relay`; the benchmark's catch-up run)."""
    from application.relay.envelope import Naming
    from application.relay.jetstream import NatsJetStreamSink
    from application.relay.relay import Relay

    naming = Naming(settings.subject_prefix, settings.type_prefix, settings.source)
    return Relay(workflows, NatsJetStreamSink(settings), naming, batch_size=settings.batch_size,
                 max_backoff=settings.max_backoff_seconds)


def event_store(settings: Settings) -> Workflows:
    """`wes replay`: the application on the configured event store, nothing else."""
    return open_workflows(database.resolve(settings.database_url, settings.db_schema),
                          builtin_definitions=False, budget=settings.pool)


def whatif_report(settings: Settings, request: WhatIfRequest) -> dict[str, Any]:
    """`wes whatif` without a server: the report from the configured database."""
    from application.whatif.service import progress_ids, run

    db = database.resolve(settings.database_url, settings.db_schema)
    workflows = open_workflows(db, builtin_definitions=False, budget=settings.pool)
    views = read_model_views(db, workflows, budget=settings.pool)
    try:
        return run(workflows, progress_ids(views.progress), request, settings.whatif)
    finally:
        views.close()
        workflows.close()
