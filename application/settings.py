"""Settings from the environment (API.md "Configuration"), read once, at start-up.

`Settings` is one pydantic-settings class: every field names its environment variable
(`validation_alias`), and the groups a part needs are views of it (`api`, `relay`, `pool`,
`breaker`, `whatif`, `waveless`), so an entrypoint reads the environment once and hands
the parts their section. An invalid value is a `ConfigurationError` with one line naming
the variable (`wes` prints it and exits non-zero).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from application.engine.ports import DEFAULT_MAX_OUTPUT_BYTES
from application.errors import ConfigurationError
from application.pool import (
    DEFAULT_MAX_IDLE_SECONDS,
    DEFAULT_MAX_OVERFLOW,
    DEFAULT_POOL_SIZE,
    DEFAULT_START_WAIT_SECONDS,
    PoolBudget,
)
from domain.circuit_breaker import BreakerConfig
from domain.exceptions import InvalidValue
from domain.waveless import MIN_INTERVAL_MS

if TYPE_CHECKING:
    from application.waveless import WavelessSettings
    from application.whatif.service import WhatIfSettings

# Request bodies above this get a 413 before they are read (`WES_MAX_BODY_BYTES`).
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_WHATIF_TIME_LIMIT_S = 60.0
RETENTIONS = ("limits", "interest", "workqueue")  # JetStream's retention policies
_BREAKER = BreakerConfig()


@dataclass(frozen=True)
class ApiConfig:
    """Tunables of the HTTP layer (`Settings.api`)."""

    min_position_timeout: float = 5.0
    ready_max_lag_events: int = 10_000
    ready_max_lag_seconds: float = 60.0
    feed_buffer: int = 10_000
    sse_ping_seconds: float = 15.0
    sse_idle_check_seconds: float = 1.0
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES


@dataclass(frozen=True)
class RelaySettings:
    """`wes relay` (API.md "Event relay"): where the events go and how they are named."""

    nats_url: str = "nats://127.0.0.1:4222"
    stream: str = "ORCHESTRATION"
    subject_prefix: str = "orchestration.workflow.events"
    retention: str = "limits"  # JetStream's limits | interest | workqueue
    replicas: int = 1
    type_prefix: str = "com.paklog.wes.orchestration"  # the seed's CloudEvents types
    source: str = "/wes-orchestrator"
    batch_size: int = 500
    max_backoff_seconds: float = 10.0


_RELAY = RelaySettings()


def _env(name: str, default: Any, **constraints: Any) -> Any:
    """A field read from the environment variable `name`."""
    return Field(default, validation_alias=name, **constraints)

# Set while `Settings.from_env(environ)` reads a given mapping: then that mapping is the only
# source, the process's environment is not read at all.
_ONLY_GIVEN: ContextVar[bool] = ContextVar("_ONLY_GIVEN", default=False)


class Settings(BaseSettings):
    """Everything the composition root needs; nothing connects at import time."""

    model_config = SettingsConfigDict(case_sensitive=True, env_ignore_empty=True,
                                      extra="ignore", frozen=True, populate_by_name=True)

    database_url: str | None = _env("DATABASE_URL", None)
    db_schema: str = _env("WES_SCHEMA", "public")
    services: Annotated[dict[str, list[str]] | None, NoDecode] = _env("WES_SERVICES", None)
    api_keys: str | None = _env("WES_API_KEYS", None)
    log_json: bool = _env("WES_LOG_JSON", False)
    log_level: str = _env("WES_LOG_LEVEL", "INFO")
    # The engine.
    worker_lease_seconds: float = _env("WES_WORKER_LEASE_SECONDS", 3.0)
    worker_poll_seconds: float = _env("WES_WORKER_POLL_SECONDS", 0.5)
    max_output_bytes: int = _env("WES_MAX_OUTPUT_BYTES", DEFAULT_MAX_OUTPUT_BYTES, ge=1)
    wip_caps: Annotated[dict[str, int], NoDecode] = _env("WES_WIP_CAPS", {})
    # Waveless release (README "Waveless release rules").
    waveless_batch_size: int = _env("WES_WAVELESS_BATCH_SIZE", 10)
    waveless_interval_ms: int = _env("WES_WAVELESS_INTERVAL_MS", 1000)
    waveless_ageing_ms: int = _env("WES_WAVELESS_AGEING_MS", 60_000)
    waveless_cutoff_urgency_ms: int | None = _env("WES_WAVELESS_CUTOFF_URGENCY_MS", None, ge=0)
    # The per-instance circuit breaker (defaults from the seed facts).
    breaker_window: int = _env("WES_BREAKER_WINDOW", _BREAKER.window)
    breaker_min_calls: int = _env("WES_BREAKER_MIN_CALLS", _BREAKER.minimum_calls)
    breaker_failure_rate: float = _env("WES_BREAKER_FAILURE_RATE",
                                       _BREAKER.failure_rate_threshold)
    breaker_open_seconds: float = _env("WES_BREAKER_OPEN_SECONDS", _BREAKER.open_seconds)
    breaker_half_open_calls: int = _env("WES_BREAKER_HALF_OPEN_CALLS", _BREAKER.half_open_calls)
    # Scaling (API.md "Scaling settings"; docs/scaling.md).
    read_model_database_url: str | None = _env("WES_READ_MODEL_DATABASE_URL", None)
    query_database_urls: Annotated[tuple[str, ...], NoDecode] = _env("WES_QUERY_DATABASE_URLS",
                                                                      ())
    query_max_lag_events: int = _env("WES_QUERY_MAX_LAG_EVENTS", 1000)
    query_replica_wait_seconds: float = _env("WES_QUERY_REPLICA_WAIT_SECONDS", 1.0)
    db_pool_size: int = _env("WES_DB_POOL_SIZE", DEFAULT_POOL_SIZE)
    db_max_overflow: int = _env("WES_DB_MAX_OVERFLOW", DEFAULT_MAX_OVERFLOW)
    db_max_idle_seconds: float = _env("WES_DB_MAX_IDLE_SECONDS", DEFAULT_MAX_IDLE_SECONDS)
    db_start_wait_seconds: float = _env("WES_DB_START_WAIT_SECONDS", DEFAULT_START_WAIT_SECONDS)
    # The HTTP API.
    min_position_timeout: float = _env("WES_MIN_POSITION_TIMEOUT", 5.0)
    ready_max_lag_events: int = _env("WES_READY_MAX_LAG_EVENTS", 10_000)
    ready_max_lag_seconds: float = _env("WES_READY_MAX_LAG_SECONDS", 60.0)
    sse_ping_seconds: float = _env("WES_SSE_PING_SECONDS", 15.0)
    max_body_bytes: int = _env("WES_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, ge=1)
    # The event relay.
    nats_url: str = _env("WES_NATS_URL", _RELAY.nats_url)
    nats_stream: str = _env("WES_NATS_STREAM", _RELAY.stream)
    nats_subject_prefix: str = _env("WES_NATS_SUBJECT_PREFIX", _RELAY.subject_prefix)
    nats_retention: str = _env("WES_NATS_RETENTION", _RELAY.retention)
    nats_replicas: int = _env("WES_NATS_REPLICAS", _RELAY.replicas)
    relay_type_prefix: str = _env("WES_RELAY_TYPE_PREFIX", _RELAY.type_prefix)
    relay_source: str = _env("WES_RELAY_SOURCE", _RELAY.source)
    relay_batch_size: int = _env("WES_RELAY_BATCH_SIZE", _RELAY.batch_size)
    relay_max_backoff_seconds: float = _env("WES_RELAY_MAX_BACKOFF_SECONDS",
                                            _RELAY.max_backoff_seconds)
    # What-if runs.
    whatif_time_limit_seconds: float = _env("WES_WHATIF_TIME_LIMIT_SECONDS",
                                            DEFAULT_WHATIF_TIME_LIMIT_S)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings of the process's environment, or of `environ` alone (tests); an
        invalid value is one `ConfigurationError` naming its variable."""
        try:
            if environ is None:
                return cls()
            # The same validation as the environment's, on the given variables only (an
            # empty one is unset, as in the environment).
            token = _ONLY_GIVEN.set(True)
            try:
                return cls.model_validate({k: v for k, v in environ.items() if v != ""})
            finally:
                _ONLY_GIVEN.reset(token)
        except ValidationError as e:
            raise ConfigurationError(_first_error(e)) from None

    @classmethod
    def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """pydantic-settings' documented hook: a given mapping alone, else the library's
        sources (the environment)."""
        if _ONLY_GIVEN.get():
            return (init_settings,)
        return init_settings, env_settings, dotenv_settings, file_secret_settings

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (already valid values: they are not checked)."""
        return self.model_copy(update=changes)

    # ------------------------------------------------------------------ parsing

    @field_validator("services", mode="before")
    @classmethod
    def _services(cls, raw: Any) -> Any:
        return parse_services(raw) if isinstance(raw, str) else raw

    @field_validator("wip_caps", mode="before")
    @classmethod
    def _wip_caps(cls, raw: Any) -> Any:
        return _caps(raw) if isinstance(raw, str) else raw

    @field_validator("query_database_urls", mode="before")
    @classmethod
    def _urls(cls, raw: Any) -> Any:
        if isinstance(raw, str):
            return tuple(u.strip() for u in raw.split(",") if u.strip())
        return raw

    @field_validator("log_json", mode="before")
    @classmethod
    def _truthy(cls, raw: Any) -> Any:
        # Anything but these words is off, as it always was (no error for "no" or "0").
        return raw.lower() in ("1", "true", "yes", "y") if isinstance(raw, str) else raw

    @field_validator("log_level", "nats_retention", mode="before")
    @classmethod
    def _case(cls, raw: Any, info: Any) -> Any:
        if not isinstance(raw, str):
            return raw
        return raw.upper() if info.field_name == "log_level" else raw.lower()

    @field_validator("nats_subject_prefix", "relay_type_prefix", mode="before")
    @classmethod
    def _no_trailing_dot(cls, raw: Any) -> Any:
        return raw.rstrip(".") if isinstance(raw, str) else raw

    @model_validator(mode="after")
    def _groups_hold(self) -> Settings:
        """The rules across fields, checked once at start (the groups are built on use)."""
        if self.db_pool_size < 1 or self.db_max_overflow < 0 or self.db_max_idle_seconds <= 0:
            raise ValueError(
                "WES_DB_POOL_SIZE must be >= 1, WES_DB_MAX_OVERFLOW >= 0 and "
                f"WES_DB_MAX_IDLE_SECONDS > 0, got {self.db_pool_size}, {self.db_max_overflow} "
                f"and {self.db_max_idle_seconds}")
        try:
            _ = self.breaker
        except InvalidValue as e:
            raise ValueError(f"circuit breaker settings: {e}") from None
        if self.waveless_batch_size < 1 or self.waveless_interval_ms < MIN_INTERVAL_MS:
            raise ValueError(
                f"WES_WAVELESS_BATCH_SIZE must be >= 1 and WES_WAVELESS_INTERVAL_MS >= "
                f"{MIN_INTERVAL_MS}, got {self.waveless_batch_size} and "
                f"{self.waveless_interval_ms}")
        if self.nats_retention not in RETENTIONS:
            raise ValueError(f"WES_NATS_RETENTION must be limits, interest or workqueue, "
                             f"got {self.nats_retention!r}")
        if self.nats_replicas < 1 or self.relay_batch_size < 1:
            raise ValueError("WES_NATS_REPLICAS and WES_RELAY_BATCH_SIZE must be >= 1")
        return self

    # ------------------------------------------------------------------ the groups

    @property
    def api(self) -> ApiConfig:
        return ApiConfig(min_position_timeout=self.min_position_timeout,
                         ready_max_lag_events=self.ready_max_lag_events,
                         ready_max_lag_seconds=self.ready_max_lag_seconds,
                         sse_ping_seconds=self.sse_ping_seconds,
                         max_body_bytes=self.max_body_bytes)

    @property
    def relay(self) -> RelaySettings:
        return RelaySettings(
            nats_url=self.nats_url, stream=self.nats_stream,
            subject_prefix=self.nats_subject_prefix, retention=self.nats_retention,
            replicas=self.nats_replicas, type_prefix=self.relay_type_prefix,
            source=self.relay_source, batch_size=self.relay_batch_size,
            max_backoff_seconds=self.relay_max_backoff_seconds)

    @property
    def pool(self) -> PoolBudget:
        """Connections per datastore of one process (API.md "Scaling settings")."""
        return PoolBudget(self.db_pool_size, self.db_max_overflow, self.db_max_idle_seconds)

    @property
    def pool_configured(self) -> bool:
        """Whether the environment set a budget (else the defaults apply)."""
        return bool({"db_pool_size", "db_max_overflow"} & self.model_fields_set)

    @property
    def breaker(self) -> BreakerConfig:
        return BreakerConfig(window=self.breaker_window, minimum_calls=self.breaker_min_calls,
                             failure_rate_threshold=self.breaker_failure_rate,
                             open_seconds=self.breaker_open_seconds,
                             half_open_calls=self.breaker_half_open_calls)

    @property
    def waveless(self) -> WavelessSettings:
        """The release loop's settings."""
        from application.waveless import WavelessSettings

        return WavelessSettings(batch_size=self.waveless_batch_size,
                                interval_ms=self.waveless_interval_ms,
                                ageing_ms=self.waveless_ageing_ms, wip_caps=self.wip_caps,
                                cutoff_urgency_ms=self.waveless_cutoff_urgency_ms)

    @property
    def waveless_defaults(self) -> tuple[int, int]:
        """(batch size, interval ms) recorded for a workflow enabled without settings of its
        own (`Workflows.waveless_defaults`)."""
        return self.waveless_batch_size, self.waveless_interval_ms

    @property
    def whatif(self) -> WhatIfSettings:
        """What the running engine's settings say the actual policy was, and a run's bound."""
        from application.whatif.service import WhatIfSettings

        return WhatIfSettings(dict(self.wip_caps), self.waveless_ageing_ms,
                              self.whatif_time_limit_seconds, self.waveless_cutoff_urgency_ms)


def _first_error(error: ValidationError) -> str:
    """The first problem as one line naming the variable, as the hand-written parsing said."""
    problem = error.errors()[0]
    name = ".".join(str(part) for part in problem["loc"])
    given = problem.get("input")
    kind = problem["type"]
    if kind == "value_error":
        return str(problem["ctx"]["error"])
    if kind in ("int_parsing", "int_from_float"):
        return f"{name} must be an integer, got {given!r}"
    if kind in ("float_parsing", "float_type"):
        return f"{name} must be a number, got {given!r}"
    if kind == "greater_than_equal":
        return f"{name} must be >= {problem['ctx']['ge']}, got {given}"
    return f"{name}: {problem['msg']}, got {given!r}"


def _caps(raw: str) -> dict[str, int]:
    """`WES_WIP_CAPS`: JSON object of service name -> most steps in flight at once."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"WES_WIP_CAPS is not valid JSON: {e}") from None
    if not isinstance(data, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in data.values()):
        raise ValueError("WES_WIP_CAPS must map service names to integers >= 0")
    return {str(k): int(v) for k, v in data.items()}


def parse_services(raw: str) -> dict[str, list[str]]:
    """`WES_SERVICES`: a JSON object of service name -> list of base URLs (or a file path)."""
    text = raw
    if not raw.lstrip().startswith("{") and Path(raw).is_file():
        text = Path(raw).read_text()
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"WES_SERVICES is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError("WES_SERVICES must be a JSON object of name -> [base URLs]")
    services: dict[str, list[str]] = {}
    for name, urls in data.items():
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
            raise ValueError(f"WES_SERVICES[{name!r}] must be a non-empty list of URLs")
        services[name] = [u.rstrip("/") for u in urls]
    return services
