"""Figures `engine_split` and `api_standby`: the read models on a server of their own.

`engine_split` is the engine figure's run (same sagas, same worker, projector in its own
process) with the read models on a second PostgreSQL (`WES_READ_MODEL_DATABASE_URL`),
beside the engine figure itself (everything on one server). `api_standby` is the api
figure's load on those sagas with the read models queried on a hot standby of that second
server (`WES_QUERY_DATABASE_URLS`), beside the same load on its primary. The second server
and its standby are clusters this run makes on the same machine (`bench.clusters`), with
the main server's commit settings: they share its cores and disk, so the figures show
what the split costs or saves in the software, not what a second machine would add.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg

from application import database
from application.database import Database
from bench import api, clusters, engine, pg
from bench.report import Figure, median, ratio

ENGINE_SPLIT_TARGET = 1.0  # read models elsewhere must not slow the engine
API_STANDBY_TARGET = 0.8  # a standby answers about as fast as the primary


def unavailable(reason: str) -> tuple[Figure, Figure]:
    return (Figure.unavailable("engine_split", "sagas/s", _engine_target(), reason),
            Figure.unavailable("api_standby", "requests/s", _api_target(), reason))


def _engine_target() -> str:
    return f"ratio >= {ENGINE_SPLIT_TARGET}"


def _api_target() -> str:
    return f"ratio >= {API_STANDBY_TARGET}"


def measure(db: Database, *, sagas: int, seconds: float, rounds: int,
            single_server_rate: float | None,
            server_settings: dict[str, str]) -> tuple[Figure, Figure]:
    """Both figures; `single_server_rate` is the engine figure of this run (reported beside
    them), `server_settings` the main server's (copied to the clusters)."""
    reason = clusters.unavailable_reason()
    if reason is not None:
        return unavailable(reason)
    settings = {key: server_settings[key] for key in ("synchronous_commit", "fsync")
                if key in server_settings}
    with clusters.primary(settings=settings) as read_server:
        read_db = read_server.database("wes_bench").with_schema(db.schema)
        database.ensure_database(read_db)
        run = engine._run(db, sagas=sagas, concurrency=4, seconds=seconds,
                          projections="process", read_db=read_db)
        # The single-server run right after, same sizes: a pair of the same hour (the
        # engine figure of this run, minutes earlier, is kept in the details).
        alone = db.with_schema(f"{db.schema}_single")
        database.ensure_database(alone)
        single = engine._run(alone, sagas=sagas, concurrency=4, seconds=seconds,
                             projections="process")
        engine_figure, single_server_rate = single_server_rate, single.rate
        split = Figure(
            "engine_split", run.rate, "sagas/s", single_server_rate,
            ratio(run.rate, single_server_rate), _engine_target(),
            baseline_name="the engine's run with the read models on the event store's "
                          "server, right after",
            met=(r := ratio(run.rate, single_server_rate)) is not None
            and r >= ENGINE_SPLIT_TARGET and run.done == sagas,
            details={"sagas": sagas, "completed": run.done, "seconds": round(run.elapsed, 2),
                     "event_store_transactions_per_saga": round(run.commits_per_saga, 2),
                     "single_server_transactions_per_saga": round(single.commits_per_saga, 2),
                     "single_server_lag_p99_ms":
                         round(_p99(single.lags) * 1000, 2) if single.lags else None,
                     "engine_figure_of_this_run": engine_figure and round(engine_figure, 1),
                     "read_model_server": "a second cluster on this machine",
                     "lag_p99_ms": round(_p99(run.lags) * 1000, 2) if run.lags else None})
        standby_figure = _api_standby(db, read_server, read_db, run.ids, seconds, rounds,
                                      settings)
    return split, standby_figure


def _p99(values: list[float]) -> float:
    from bench.report import percentile

    return percentile(values, 99)


def _api_standby(db: Database, read_server: clusters.Cluster, read_db: Database,
                 ids: list[UUID], seconds: float, rounds: int,
                 settings: dict[str, str]) -> Figure:
    read_url = pg.database_url(read_db.with_schema("public"))
    with clusters.standby(read_server, settings=settings) as standby:
        clusters.wait_replayed(read_server, standby)
        standby_db = standby.database(read_db.dbname)
        # Rounds alternate between the two (one API process each), medians compared: the
        # machine's speed drifts within a run.
        primary_env = {"WES_READ_MODEL_DATABASE_URL": read_url}
        standby_env = {**primary_env, "WES_QUERY_DATABASE_URLS": pg.database_url(standby_db)}
        on_primary: list[Figure] = []
        on_standby: list[Figure] = []
        served = 0
        for _ in range(rounds):
            on_primary.append(api.measure(db, ids, seconds=seconds, rounds=1,
                                          extra_env=primary_env))
            before = _transactions(standby_db)
            on_standby.append(api.measure(db, ids, seconds=seconds, rounds=1,
                                          extra_env=standby_env))
            served += _transactions(standby_db) - before
    standby_rate = median([f.value or 0.0 for f in on_standby])
    primary_rate = median([f.value or 0.0 for f in on_primary])
    r = ratio(standby_rate, primary_rate)
    details: dict[str, Any] = {
        "p99_ms": median([f.details["p99_ms"] for f in on_standby]),
        "primary_p99_ms": median([f.details["p99_ms"] for f in on_primary]),
        "non_200_responses": sum(f.details["non_200_responses"] for f in on_standby),
        "standby_transactions": served, "clients": api.CLIENTS, "rounds": rounds,
        "standby_rates": [round(f.value or 0.0) for f in on_standby],
        "primary_rates": [round(f.value or 0.0) for f in on_primary]}
    return Figure(
        "api_standby", standby_rate, "requests/s", primary_rate, r, _api_target(),
        baseline_name="the same load with the read models queried on their primary, same run",
        met=r is not None and r >= API_STANDBY_TARGET and not details["non_200_responses"]
        and served > 0, details=details)


def _transactions(db: Database) -> int:
    """Transactions the server ran in that database (a standby counts its own reads)."""
    with psycopg.connect(db.conninfo, autocommit=True) as conn:
        row = conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database"
                           " WHERE datname = current_database()").fetchone()
    return int(row[0]) if row else 0
