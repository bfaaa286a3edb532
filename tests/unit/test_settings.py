"""Settings: every variable read once, from the environment or a given mapping alike, and
an invalid value refused with one line naming it."""

from __future__ import annotations

import pytest

from application.errors import ConfigurationError
from application.pool import PoolBudget
from application.settings import ApiConfig, RelaySettings, Settings
from domain.circuit_breaker import BreakerConfig

# Each variable with a value other than its default, and where that value shows.
VARIABLES = {
    "DATABASE_URL": ("postgresql://u@h/db", lambda s: s.database_url, "postgresql://u@h/db"),
    "WES_SCHEMA": ("other", lambda s: s.db_schema, "other"),
    "WES_SERVICES": ('{"a": "http://x/"}', lambda s: s.services, {"a": ["http://x"]}),
    "WES_API_KEYS": ("k:reader", lambda s: s.api_keys, "k:reader"),
    "WES_LOG_JSON": ("yes", lambda s: s.log_json, True),
    "WES_LOG_LEVEL": ("debug", lambda s: s.log_level, "DEBUG"),
    "WES_WORKER_LEASE_SECONDS": ("4.5", lambda s: s.worker_lease_seconds, 4.5),
    "WES_WORKER_POLL_SECONDS": ("0.25", lambda s: s.worker_poll_seconds, 0.25),
    "WES_MAX_OUTPUT_BYTES": ("99", lambda s: s.max_output_bytes, 99),
    "WES_WIP_CAPS": ('{"w": 2}', lambda s: s.wip_caps, {"w": 2}),
    "WES_WAVELESS_BATCH_SIZE": ("7", lambda s: s.waveless.batch_size, 7),
    "WES_WAVELESS_INTERVAL_MS": ("700", lambda s: s.waveless.interval_ms, 700),
    "WES_WAVELESS_AGEING_MS": ("5000", lambda s: s.whatif.ageing_ms, 5000),
    "WES_WAVELESS_CUTOFF_URGENCY_MS": ("9", lambda s: s.waveless.cutoff_urgency_ms, 9),
    "WES_BREAKER_WINDOW": ("20", lambda s: s.breaker.window, 20),
    "WES_BREAKER_MIN_CALLS": ("6", lambda s: s.breaker.minimum_calls, 6),
    "WES_BREAKER_FAILURE_RATE": ("0.7", lambda s: s.breaker.failure_rate_threshold, 0.7),
    "WES_BREAKER_OPEN_SECONDS": ("3", lambda s: s.breaker.open_seconds, 3.0),
    "WES_BREAKER_HALF_OPEN_CALLS": ("2", lambda s: s.breaker.half_open_calls, 2),
    "WES_READ_MODEL_DATABASE_URL": ("postgresql://rm/db", lambda s: s.read_model_database_url,
                                    "postgresql://rm/db"),
    "WES_QUERY_DATABASE_URLS": ("a, b", lambda s: s.query_database_urls, ("a", "b")),
    "WES_QUERY_MAX_LAG_EVENTS": ("5", lambda s: s.query_max_lag_events, 5),
    "WES_QUERY_REPLICA_WAIT_SECONDS": ("2", lambda s: s.query_replica_wait_seconds, 2.0),
    "WES_DB_POOL_SIZE": ("3", lambda s: s.pool.pool_size, 3),
    "WES_DB_MAX_OVERFLOW": ("0", lambda s: s.pool.max_overflow, 0),
    "WES_DB_MAX_IDLE_SECONDS": ("4", lambda s: s.pool.max_idle_seconds, 4.0),
    "WES_DB_START_WAIT_SECONDS": ("7", lambda s: s.db_start_wait_seconds, 7.0),
    "WES_MIN_POSITION_TIMEOUT": ("1.5", lambda s: s.api.min_position_timeout, 1.5),
    "WES_READY_MAX_LAG_EVENTS": ("10", lambda s: s.api.ready_max_lag_events, 10),
    "WES_READY_MAX_LAG_SECONDS": ("6", lambda s: s.api.ready_max_lag_seconds, 6.0),
    "WES_SSE_PING_SECONDS": ("2", lambda s: s.api.sse_ping_seconds, 2.0),
    "WES_MAX_BODY_BYTES": ("10", lambda s: s.api.max_body_bytes, 10),
    "WES_NATS_URL": ("nats://n:1", lambda s: s.relay.nats_url, "nats://n:1"),
    "WES_NATS_STREAM": ("S", lambda s: s.relay.stream, "S"),
    "WES_NATS_SUBJECT_PREFIX": ("p.q.", lambda s: s.relay.subject_prefix, "p.q"),
    "WES_NATS_RETENTION": ("Interest", lambda s: s.relay.retention, "interest"),
    "WES_NATS_REPLICAS": ("3", lambda s: s.relay.replicas, 3),
    "WES_RELAY_TYPE_PREFIX": ("t.", lambda s: s.relay.type_prefix, "t"),
    "WES_RELAY_SOURCE": ("/src", lambda s: s.relay.source, "/src"),
    "WES_RELAY_BATCH_SIZE": ("9", lambda s: s.relay.batch_size, 9),
    "WES_RELAY_MAX_BACKOFF_SECONDS": ("1", lambda s: s.relay.max_backoff_seconds, 1.0),
    "WES_WHATIF_TIME_LIMIT_SECONDS": ("5", lambda s: s.whatif.time_limit_s, 5.0),
}


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


class TestReading:
    def test_the_defaults_are_the_documented_ones(self) -> None:
        settings = Settings.from_env({})
        assert settings.database_url is None and settings.db_schema == "public"
        assert settings.services is None and settings.api_keys is None
        assert settings.api == ApiConfig() and settings.relay == RelaySettings()
        assert settings.pool == PoolBudget() and settings.breaker == BreakerConfig()
        assert not settings.pool_configured
        assert (settings.waveless_batch_size, settings.waveless_interval_ms) == (10, 1000)
        assert settings.whatif.time_limit_s == 60.0

    @pytest.mark.parametrize("name", sorted(VARIABLES))
    def test_each_variable_is_read_from_a_mapping(self, name: str) -> None:
        raw, read, expected = VARIABLES[name]
        assert read(Settings.from_env({name: raw})) == expected

    @pytest.mark.parametrize("name", sorted(VARIABLES))
    def test_each_variable_is_read_from_the_environment(
            self, name: str, clean_environment: pytest.MonkeyPatch) -> None:
        raw, read, expected = VARIABLES[name]
        clean_environment.setenv(name, raw)
        assert read(Settings.from_env()) == expected

    def test_an_empty_variable_is_unset(self, clean_environment: pytest.MonkeyPatch) -> None:
        clean_environment.setenv("WES_SCHEMA", "")
        assert Settings.from_env().db_schema == "public"
        assert Settings.from_env({"WES_SCHEMA": ""}).db_schema == "public"

    def test_names_are_case_sensitive(self, clean_environment: pytest.MonkeyPatch) -> None:
        clean_environment.setenv("wes_schema", "lower")
        assert Settings.from_env().db_schema == "public"

    def test_a_set_budget_is_configured(self) -> None:
        assert Settings.from_env({"WES_DB_MAX_OVERFLOW": "0"}).pool_configured


class TestRefusing:
    @pytest.mark.parametrize(("env", "message"), [
        ({"WES_MAX_BODY_BYTES": "0"}, "WES_MAX_BODY_BYTES must be >= 1, got 0"),
        ({"WES_MAX_OUTPUT_BYTES": "x"}, "WES_MAX_OUTPUT_BYTES must be an integer, got 'x'"),
        ({"WES_SSE_PING_SECONDS": "soon"}, "WES_SSE_PING_SECONDS must be a number, got 'soon'"),
        ({"WES_WIP_CAPS": '{"a": -1}'}, "WES_WIP_CAPS must map service names to integers >= 0"),
        ({"WES_SERVICES": "[1]"}, "WES_SERVICES must be a JSON object of name -> [base URLs]"),
        ({"WES_BREAKER_WINDOW": "0"}, "circuit breaker settings: invalid window=0"),
        ({"WES_NATS_RETENTION": "x"}, "WES_NATS_RETENTION must be limits, interest or workqueue"),
        ({"WES_RELAY_BATCH_SIZE": "0"}, "WES_NATS_REPLICAS and WES_RELAY_BATCH_SIZE must be >= 1"),
        ({"WES_DB_MAX_IDLE_SECONDS": "0"}, "WES_DB_MAX_IDLE_SECONDS > 0"),
    ])
    def test_an_invalid_value_is_one_line_naming_it(self, env: dict[str, str],
                                                     message: str) -> None:
        with pytest.raises(ConfigurationError) as raised:
            Settings.from_env(env)
        assert message in str(raised.value)
        assert "\n" not in str(raised.value)


class TestAGivenMapping:
    def test_a_given_mapping_is_read_alone_and_the_environment_is_not(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("DATABASE_URL", "postgresql://elsewhere/db")
        monkeypatch.setenv("WES_SCHEMA", "from_the_environment")
        assert Settings.from_env({}).database_url is None
        assert Settings.from_env({"WES_SCHEMA": "given"}).db_schema == "given"
        assert Settings.from_env().db_schema == "from_the_environment"
