"""The connection budget's settings, lazy pools, LISTEN slots, names and start-up waits."""

from __future__ import annotations

import logging
import os

import psycopg
import pytest
from eventsourcing.postgres import PostgresDatastore

from application import pool
from application.database import Database, read_models_env
from application.errors import ConfigurationError
from application.pool import PoolBudget, listening, make_lazy, until_available
from application.settings import Settings


def datastore(pool_size: int = 1, max_overflow: int = 1) -> PostgresDatastore:
    # Never opened: nothing here connects.
    return PostgresDatastore("db", "127.0.0.1", 5432, "u", "", pool_size=pool_size,
                             max_overflow=max_overflow)


class TestBudgetSettings:
    def test_defaults_are_one_plus_one_connections_and_ten_idle_seconds(self):
        assert Settings.from_env({}).pool == PoolBudget(1, 1, 10.0) == PoolBudget()

    def test_reads_the_wes_db_variables(self):
        budget = Settings.from_env({"WES_DB_POOL_SIZE": "3", "WES_DB_MAX_OVERFLOW": "0",
                                    "WES_DB_MAX_IDLE_SECONDS": "2.5"}).pool
        assert budget == PoolBudget(3, 0, 2.5)

    @pytest.mark.parametrize("env", [{"WES_DB_POOL_SIZE": "0"}, {"WES_DB_MAX_OVERFLOW": "-1"},
                                     {"WES_DB_POOL_SIZE": "many"},
                                     {"WES_DB_MAX_IDLE_SECONDS": "0"}])
    def test_a_bad_value_is_a_configuration_error_naming_it(self, env):
        with pytest.raises(ConfigurationError, match="WES_DB_"):
            Settings.from_env(env)

    def test_the_library_keys_carry_the_budget_and_an_explicit_one_wins(self, monkeypatch):
        monkeypatch.delenv("POSTGRES_POOL_SIZE", raising=False)
        monkeypatch.delenv("POSTGRES_MAX_OVERFLOW", raising=False)
        env = PoolBudget(2, 3, 4.0).env()
        assert (env["POSTGRES_POOL_SIZE"], env["POSTGRES_MAX_OVERFLOW"]) == ("2", "3")
        monkeypatch.setenv("POSTGRES_POOL_SIZE", "9")
        assert PoolBudget(2, 3, 4.0).env()["POSTGRES_POOL_SIZE"] == "9"

    def test_one_process_doing_three_processes_work_gets_their_budget(self):
        assert PoolBudget(1, 1, 10.0).times(3) == PoolBudget(3, 3, 10.0)
        assert not Settings.from_env({}).pool_configured
        assert Settings.from_env({"WES_DB_MAX_OVERFLOW": "0"}).pool_configured

    def test_settings_read_the_scaling_variables(self):
        settings = Settings.from_env({
            "WES_READ_MODEL_DATABASE_URL": "postgresql://u@rm:5432/wes",
            "WES_QUERY_DATABASE_URLS": "postgresql://u@r1/wes, postgresql://u@r2/wes,",
            "WES_QUERY_MAX_LAG_EVENTS": "50", "WES_QUERY_REPLICA_WAIT_SECONDS": "0.5",
            "WES_DB_POOL_SIZE": "2"})
        assert settings.read_model_database_url == "postgresql://u@rm:5432/wes"
        assert settings.query_database_urls == ("postgresql://u@r1/wes", "postgresql://u@r2/wes")
        assert (settings.query_max_lag_events, settings.query_replica_wait_seconds) == (50, 0.5)
        assert settings.pool.pool_size == 2

    def test_without_scaling_variables_everything_is_on_one_server(self):
        settings = Settings.from_env({})
        assert settings.read_model_database_url is None and settings.query_database_urls == ()


class TestReadModelsEnv:
    def test_a_second_server_goes_under_the_read_models_prefix(self):
        events = Database("es", 5432, "u", "", "wes")
        rows = Database("rm", 6432, "u", "pw", "wes")
        env = read_models_env(events, rows, PoolBudget())
        assert env["POSTGRES_HOST"] == "es"
        assert (env["WES_PROJECTIONS_POSTGRES_HOST"], env["WES_PROJECTIONS_POSTGRES_PORT"]) == (
            "rm", "6432")
        assert env["WES_PROJECTIONS_POSTGRES_PASSWORD"] == "pw"

    def test_the_same_server_adds_nothing(self):
        events = Database("es", 5432, "u", "", "wes")
        assert not any(k.startswith("WES_PROJECTIONS_") for k in read_models_env(events, events))


class TestLazyPools:
    def test_a_pool_opens_nothing_at_start_and_keeps_its_ceiling(self):
        store = datastore(pool_size=3, max_overflow=2)
        make_lazy(store, 7.0)
        assert (store.pool.min_size, store.pool.max_size, store.pool.max_idle) == (0, 5, 7.0)

    def test_a_listen_holds_room_of_its_own_while_it_listens(self):
        store = datastore()
        make_lazy(store, 10.0)
        with listening(store):
            with listening(store):
                assert store.pool.max_size == 4
            assert store.pool.max_size == 3
        assert store.pool.max_size == 2


class TestNames:
    def test_a_process_is_named_by_kind_and_id_for_libpq(self, monkeypatch):
        monkeypatch.setattr(pool, "_name", None)
        monkeypatch.setenv("PGAPPNAME", "before")  # restored after the test
        monkeypatch.delenv("PGAPPNAME")
        name = pool.name_process("worker")
        assert name.startswith("wes-worker-") and len(name) == len("wes-worker-") + 6
        assert os.environ["PGAPPNAME"] == name == pool.process_name()

    def test_a_name_the_user_set_is_kept(self, monkeypatch):
        monkeypatch.setattr(pool, "_name", None)
        monkeypatch.setenv("PGAPPNAME", "site-7-worker")
        assert pool.process_name("app") == "site-7-worker"


class TestWaitingForAConnection:
    def test_retries_while_unavailable_one_line_per_try(self, monkeypatch, caplog):
        monkeypatch.setattr(pool.time, "sleep", lambda seconds: None)
        tries = []

        def action() -> str:
            tries.append(1)
            if len(tries) < 3:
                raise psycopg.OperationalError("FATAL:  sorry, too many clients already\n")
            return "ok"

        with caplog.at_level(logging.WARNING, logger="application.pool"):
            assert until_available("event store", action) == "ok"
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 2
        assert all("no database connection (FATAL: sorry, too many clients already)" in line
                   and "\n" not in line for line in lines)
        assert "retrying in 0.5 s" in lines[0] and "retrying in 1.0 s" in lines[1]

    def test_other_errors_are_not_retried(self):
        def action() -> None:
            raise ValueError("a bug")

        with pytest.raises(ValueError):
            until_available("event store", action)

    def test_a_refusal_waiting_cannot_cure_is_raised_at_once(self, monkeypatch):
        monkeypatch.setattr(pool.time, "sleep", lambda seconds: None)
        tries = []

        def action() -> None:
            tries.append(1)
            raise psycopg.OperationalError(
                'FATAL:  password authentication failed for user "wes"')

        with pytest.raises(psycopg.OperationalError):
            until_available("event store", action)
        assert len(tries) == 1

    def test_gives_up_past_its_deadline(self, monkeypatch):
        monkeypatch.setattr(pool.time, "sleep", lambda seconds: None)

        def action() -> None:
            raise psycopg.OperationalError("down")

        with pytest.raises(psycopg.OperationalError):
            until_available("event store", action, deadline_seconds=0)
