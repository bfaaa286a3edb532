"""The service registry: which instances serve each warehouse service, and which one to call."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Protocol

from application.engine.ports import ReportsBackpressure
from application.errors import ApplicationError, ConfigurationError
from application.settings import Settings

# The services the simulator hosts (API.md "Simulated warehouse services").
SIMULATED_SERVICES: tuple[str, ...] = (
    "inventory-service",
    "robotics-service",
    "warehouse-service",
    "packing-service",
)


class UnknownService(ApplicationError, LookupError):
    """No instances are registered for this service."""

    def __init__(self, service: str, known: Sequence[str]) -> None:
        self.service = service
        super().__init__(f"no instances registered for service {service!r}; "
                         f"known services: {', '.join(sorted(known)) or 'none'}")


class InstanceSelector(Protocol):
    """Picks the instance to call among a service's instances (never an empty list)."""

    def __call__(self, service: str, instances: Sequence[str]) -> str: ...


class RoundRobin:
    """Takes a service's instances in turn; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next: dict[str, int] = {}

    def __call__(self, service: str, instances: Sequence[str]) -> str:
        with self._lock:
            turn = self._next.get(service, 0)
            self._next[service] = turn + 1
        return instances[turn % len(instances)]


class ServiceRegistry:
    """Service name -> instance base URLs (a step calls `POST {base_url}/{operation}`)."""

    def __init__(self, services: Mapping[str, Sequence[str]],
                 selector: InstanceSelector | None = None) -> None:
        self._services: dict[str, tuple[str, ...]] = {}
        for name, urls in services.items():
            if isinstance(urls, str) or not urls:
                raise ConfigurationError(f"service {name!r} needs a non-empty list of URLs")
            self._services[name] = tuple(u.rstrip("/") for u in urls)
        self.use_selector(selector or RoundRobin())

    @classmethod
    def simulated(cls, base_url: str, selector: InstanceSelector | None = None
                  ) -> ServiceRegistry:
        """Every simulated service on the one simulator at `base_url`."""
        root = base_url.rstrip("/")
        return cls({name: [f"{root}/{name}"] for name in SIMULATED_SERVICES}, selector)

    @classmethod
    def from_settings(cls, settings: Settings, simulator_url: str | None = None,
                      selector: InstanceSelector | None = None) -> ServiceRegistry:
        """`WES_SERVICES` when configured, otherwise the simulator at `simulator_url`."""
        if settings.services:
            return cls(settings.services, selector)
        if simulator_url is None:
            raise ConfigurationError(
                "WES_SERVICES is not set and no simulated services are running")
        return cls.simulated(simulator_url, selector)

    @property
    def services(self) -> tuple[str, ...]:
        """The registered service names."""
        return tuple(self._services)

    def instances(self, service: str) -> list[str]:
        """The base URLs of a service's instances; UnknownService when none are registered."""
        try:
            return list(self._services[service])
        except KeyError:
            raise UnknownService(service, tuple(self._services)) from None

    def select(self, service: str) -> str:
        """The instance to call next, as the selector decides (round-robin by default)."""
        return self._selector(service, self.instances(service))

    def unavailable_for(self, service: str) -> float | None:
        """Seconds until some instance of `service` may take work, when the selector knows
        none can now (load-aware routing); None when a call can go ahead."""
        if self._backpressure is None or service not in self._services:
            return None
        return self._backpressure.unavailable_for(service)

    def use_selector(self, selector: InstanceSelector) -> None:
        """Replaces the selection policy (e.g. with load-aware routing, which also knows
        when no instance can take work: `ReportsBackpressure`)."""
        self._selector: InstanceSelector = selector
        self._backpressure = selector if isinstance(selector, ReportsBackpressure) else None

    def to_dict(self) -> dict[str, list[str]]:
        return {name: list(urls) for name, urls in self._services.items()}
