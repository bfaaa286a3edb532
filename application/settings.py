"""Settings from the environment (API.md "Configuration"); read once, at start-up."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from application.errors import ConfigurationError


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
    snapshot_interval: int = 50
    extra_env: dict[str, str] = field(default_factory=dict)

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
            snapshot_interval=int(env.get("WES_SNAPSHOT_INTERVAL", "50")),
        )


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
