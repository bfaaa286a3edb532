"""Settings from the environment (API.md "Configuration"); read once, at start-up."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from application.engine.ports import DEFAULT_MAX_OUTPUT_BYTES
from application.errors import ConfigurationError
from application.pool import PoolBudget
from domain.circuit_breaker import BreakerConfig
from domain.exceptions import InvalidValue
from domain.waveless import MIN_INTERVAL_MS

# Request bodies above this get a 413 before they are read (`WES_MAX_BODY_BYTES`).
DEFAULT_MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """Everything the composition root needs; nothing connects at import time."""

    database_url: str | None = None
    schema: str = "public"
    services: dict[str, list[str]] | None = None
    api_keys: str | None = None
    log_json: bool = False
    log_level: str = "INFO"
    worker_lease_seconds: float = 3.0
    worker_poll_seconds: float = 0.5
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    waveless_batch_size: int = 10
    waveless_interval_ms: int = 1000
    waveless_ageing_ms: int = 60_000
    waveless_cutoff_urgency_ms: int | None = None
    wip_caps: dict[str, int] = field(default_factory=dict)
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    extra_env: dict[str, str] = field(default_factory=dict)
    # Scaling (API.md "Scaling settings"; docs/scaling.md).
    read_model_database_url: str | None = None
    query_database_urls: tuple[str, ...] = ()
    query_max_lag_events: int = 1000
    query_replica_wait_seconds: float = 1.0
    pool: PoolBudget = field(default_factory=PoolBudget)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        services_raw = env.get("WES_SERVICES")
        services = parse_services(services_raw) if services_raw else None
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            schema=env.get("WES_SCHEMA", "public"),
            services=services,
            api_keys=env.get("WES_API_KEYS") or None,
            log_json=env.get("WES_LOG_JSON", "").lower() in ("1", "true", "yes", "y"),
            log_level=env.get("WES_LOG_LEVEL", "INFO").upper(),
            worker_lease_seconds=float(env.get("WES_WORKER_LEASE_SECONDS", "3")),
            worker_poll_seconds=float(env.get("WES_WORKER_POLL_SECONDS", "0.5")),
            max_output_bytes=_positive(env, "WES_MAX_OUTPUT_BYTES", DEFAULT_MAX_OUTPUT_BYTES),
            waveless_batch_size=_int(env, "WES_WAVELESS_BATCH_SIZE", 10),
            waveless_interval_ms=_int(env, "WES_WAVELESS_INTERVAL_MS", 1000),
            waveless_ageing_ms=_int(env, "WES_WAVELESS_AGEING_MS", 60_000),
            waveless_cutoff_urgency_ms=_cutoff_urgency(env),
            wip_caps=_caps(env.get("WES_WIP_CAPS")),
            breaker=_breaker(env),
            read_model_database_url=env.get("WES_READ_MODEL_DATABASE_URL") or None,
            query_database_urls=tuple(
                u.strip() for u in env.get("WES_QUERY_DATABASE_URLS", "").split(",") if u.strip()),
            query_max_lag_events=_int(env, "WES_QUERY_MAX_LAG_EVENTS", 1000),
            query_replica_wait_seconds=_float(env, "WES_QUERY_REPLICA_WAIT_SECONDS", 1.0),
            pool=PoolBudget.from_env(env),
        )


def max_body_bytes(env: Mapping[str, str]) -> int:
    """`WES_MAX_BODY_BYTES`: the largest request body the API reads (default 1 MiB)."""
    limit = _int(env, "WES_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)
    if limit < 1:
        raise ConfigurationError(f"WES_MAX_BODY_BYTES must be >= 1, got {limit}")
    return limit


def waveless_defaults(env: Mapping[str, str]) -> tuple[int, int]:
    """(batch size, interval ms) recorded for a workflow enabled without its own settings:
    `WES_WAVELESS_BATCH_SIZE`, `WES_WAVELESS_INTERVAL_MS` (seed: 10 and 1000)."""
    size = _int(env, "WES_WAVELESS_BATCH_SIZE", 10)
    interval = _int(env, "WES_WAVELESS_INTERVAL_MS", 1000)
    if size < 1 or interval < MIN_INTERVAL_MS:
        raise ConfigurationError(f"WES_WAVELESS_BATCH_SIZE must be >= 1 and WES_WAVELESS_INTERVAL_MS"
                                 f" >= {MIN_INTERVAL_MS}, got {size} and {interval}")
    return size, interval


def _cutoff_urgency(env: Mapping[str, str]) -> int | None:
    """`WES_WAVELESS_CUTOFF_URGENCY_MS`: unset or empty is off (today's order)."""
    if not env.get("WES_WAVELESS_CUTOFF_URGENCY_MS"):
        return None
    value = _int(env, "WES_WAVELESS_CUTOFF_URGENCY_MS", 0)
    if value < 0:
        raise ConfigurationError(f"WES_WAVELESS_CUTOFF_URGENCY_MS must be >= 0, got {value}")
    return value


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from None


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    value = _int(env, name, default)
    if value < 1:
        raise ConfigurationError(f"{name} must be >= 1, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None


def _breaker(env: dict[str, str]) -> BreakerConfig:
    """`WES_BREAKER_*`: the per-instance circuit breaker (defaults from the seed facts)."""
    default = BreakerConfig()
    try:
        return BreakerConfig(
            window=_int(env, "WES_BREAKER_WINDOW", default.window),
            minimum_calls=_int(env, "WES_BREAKER_MIN_CALLS", default.minimum_calls),
            failure_rate_threshold=float(env.get("WES_BREAKER_FAILURE_RATE",
                                                 default.failure_rate_threshold)),
            open_seconds=float(env.get("WES_BREAKER_OPEN_SECONDS", default.open_seconds)),
            half_open_calls=_int(env, "WES_BREAKER_HALF_OPEN_CALLS", default.half_open_calls),
        )
    except (InvalidValue, ValueError) as e:
        raise ConfigurationError(f"circuit breaker settings: {e}") from None


def _caps(raw: str | None) -> dict[str, int]:
    """`WES_WIP_CAPS`: JSON object of service name -> most steps in flight at once."""
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigurationError(f"WES_WIP_CAPS is not valid JSON: {e}") from None
    if not isinstance(data, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in data.values()):
        raise ConfigurationError("WES_WIP_CAPS must map service names to integers >= 0")
    return {str(k): int(v) for k, v in data.items()}


def parse_services(raw: str) -> dict[str, list[str]]:
    """`WES_SERVICES`: a JSON object of service name -> list of base URLs (or a file path)."""
    text = raw
    if not raw.lstrip().startswith("{") and Path(raw).is_file():
        text = Path(raw).read_text()
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigurationError(f"WES_SERVICES is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ConfigurationError("WES_SERVICES must be a JSON object of name -> [base URLs]")
    services: dict[str, list[str]] = {}
    for name, urls in data.items():
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
            raise ConfigurationError(f"WES_SERVICES[{name!r}] must be a non-empty list of URLs")
        services[name] = [u.rstrip("/") for u in urls]
    return services


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

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RelaySettings:
        env = os.environ if environ is None else environ
        default = cls()
        retention = env.get("WES_NATS_RETENTION", default.retention).lower()
        if retention not in ("limits", "interest", "workqueue"):
            raise ConfigurationError(
                f"WES_NATS_RETENTION must be limits, interest or workqueue, got {retention!r}")
        replicas = _int(env, "WES_NATS_REPLICAS", default.replicas)
        batch_size = _int(env, "WES_RELAY_BATCH_SIZE", default.batch_size)
        if replicas < 1 or batch_size < 1:
            raise ConfigurationError("WES_NATS_REPLICAS and WES_RELAY_BATCH_SIZE must be >= 1")
        return cls(
            nats_url=env.get("WES_NATS_URL") or default.nats_url,
            stream=env.get("WES_NATS_STREAM") or default.stream,
            subject_prefix=(env.get("WES_NATS_SUBJECT_PREFIX") or default.subject_prefix
                            ).rstrip("."),
            retention=retention, replicas=replicas,
            type_prefix=(env.get("WES_RELAY_TYPE_PREFIX") or default.type_prefix).rstrip("."),
            source=env.get("WES_RELAY_SOURCE") or default.source,
            batch_size=batch_size,
            max_backoff_seconds=float(env.get("WES_RELAY_MAX_BACKOFF_SECONDS",
                                              default.max_backoff_seconds)),
        )
